//! The settings that whatever starts next takes, replaced by a reload: a connection
//! takes the `[mqtt]` or `[nats]` limits in force when it was accepted
//! ([`Settings::current`]) and keeps them for its life, so a packet never waits on a lock
//! for them; a new session takes its bounds (`max_queued`, `max_queued_bytes`,
//! `max_session_expiry`) the same way. Each protocol's listeners share their cap,
//! handshake deadline and WebSocket frame limit ([`ListenLimits`]), and the hub its
//! publisher stall: these hold from the reload on.
//!
//! Keys a running ferry cannot change (listener addresses, `[limits] memory`, the store)
//! are read from the config it started with, never from here.

use crate::config::Config;
use crate::transport::cap::ListenLimits;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// WebSocket frames may carry a whole packet plus framing slack.
const WS_FRAME_SLACK: usize = 64 * 1024;

pub struct Settings {
    current: RwLock<Arc<Config>>,
    /// Every MQTT listener's cap, handshake deadline and frame limit.
    pub mqtt: Arc<ListenLimits>,
    /// The NATS listener's.
    pub nats: Arc<ListenLimits>,
    /// `limits.publisher_stall` in milliseconds.
    stall_ms: AtomicU64,
}

impl Settings {
    pub fn new(config: Arc<Config>) -> Settings {
        let (m, n) = (&config.mqtt, &config.nats);
        Settings {
            mqtt: Arc::new(ListenLimits::new(
                m.max_connections,
                m.connect_timeout,
                ws_max_frame(&config),
            )),
            nats: Arc::new(ListenLimits::new(n.max_connections, n.connect_timeout, 0)),
            stall_ms: AtomicU64::new(millis(config.limits.publisher_stall)),
            current: RwLock::new(config),
        }
    }

    /// The configuration new connections and sessions take their limits from.
    pub fn current(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reload's configuration: for the connections and sessions that start from now
    /// on, and for the listeners' caps and the publisher stall at once.
    pub fn replace(&self, config: Arc<Config>) {
        let (m, n) = (&config.mqtt, &config.nats);
        self.mqtt
            .set(m.max_connections, m.connect_timeout, ws_max_frame(&config));
        self.nats.set(n.max_connections, n.connect_timeout, 0);
        self.stall_ms
            .store(millis(config.limits.publisher_stall), Ordering::Release);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// How long a publisher waits for subscribers past their high-water mark
    /// (`limits.publisher_stall`); zero: never.
    pub fn publisher_stall(&self) -> Duration {
        Duration::from_millis(self.stall_ms.load(Ordering::Acquire))
    }
}

fn ws_max_frame(config: &Config) -> usize {
    usize::try_from(config.mqtt.max_packet_size.0)
        .unwrap_or(usize::MAX)
        .saturating_add(WS_FRAME_SLACK)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
