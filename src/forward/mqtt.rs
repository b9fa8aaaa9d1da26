//! One MQTT upstream link: read the backlog after the cursor, publish it with a window
//! in flight, fold PUBACKs into the cursor, persist it, and reconnect when the link drops.
//!
//! Each connection attempt gets a fresh rumqttc client and event loop. rumqttc would
//! otherwise replay (or, with a clean session, forget) its own unacked publishes; here the
//! store's cursor is the only truth, and after any drop the link resends from
//! `cursor + 1`.

use super::Route;
use super::backoff::Backoff;
use super::window::Window;
use crate::config::UpstreamConfig;
use crate::metrics::UpstreamMetrics;
use crate::store::{Store, StoredEvent};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing,
    Packet, QoS,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often an advanced cursor is handed to the store writer (also at once when a whole
/// window was acknowledged since the last time). Bounds the commit rate that acks cause
/// and, with the window, the duplicates a crash can cause: at most `2 * inflight`.
const CURSOR_FLUSH: Duration = Duration::from_millis(50);

pub(super) struct Link {
    pub config: UpstreamConfig,
    pub routes: Vec<Route>,
    pub store: Store,
    pub slot: usize,
    pub bit: u8,
    pub cursor: u64,
    pub metrics: Arc<UpstreamMetrics>,
    pub shutdown: watch::Receiver<bool>,
}

/// Why a connection ended.
enum End {
    Shutdown,
    Lost(String),
}

impl Link {
    pub async fn run(mut self) {
        let seed = crate::event::now_ms() ^ ((self.slot as u64) << 32);
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max, seed);
        let mut persisted = self.cursor;
        self.metrics.cursor.set(self.cursor as i64);
        let mut was_up = true; // so the first failure is logged
        loop {
            let mut window = Window::new(persisted);
            let end = self
                .connection(&mut window, &mut persisted, &mut backoff, &mut was_up)
                .await;
            self.persist(window.cursor(), &mut persisted).await;
            self.metrics.connected.set(0);
            match end {
                End::Shutdown => {
                    tracing::info!(upstream = %self.config.name, cursor = persisted, "upstream link stopped");
                    return;
                }
                End::Lost(reason) => {
                    self.metrics.connect_failures.inc();
                    let delay = backoff.next_delay();
                    if was_up {
                        tracing::warn!(upstream = %self.config.name, url = %self.config.url, %reason, retry_in = ?delay, "upstream down");
                        was_up = false;
                    } else {
                        tracing::debug!(upstream = %self.config.name, %reason, retry_in = ?delay, "upstream still down");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.changed() => {}
                    }
                    if *self.shutdown.borrow() {
                        tracing::info!(upstream = %self.config.name, cursor = persisted, "upstream link stopped");
                        return;
                    }
                }
            }
        }
    }

    /// A fresh client for one connection attempt; `Err` is a reason to retry later
    /// (e.g. an unreadable `ca_file`).
    fn client(&self) -> Result<(AsyncClient, EventLoop), String> {
        let c = &self.config;
        let mut opts = MqttOptions::new(c.client_id.clone(), c.url.host.clone(), c.url.port);
        opts.set_keep_alive(c.keep_alive);
        opts.set_clean_session(true);
        opts.set_inflight(c.inflight);
        opts.set_max_packet_size(1 << 20, 256 << 20);
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            opts.set_credentials(u.clone(), p.clone());
        } else if let Some(u) = &c.username {
            opts.set_credentials(u.clone(), String::new());
        }
        #[cfg(feature = "tls")]
        if c.url.scheme.is_tls() {
            let tls = super::tls::client_config(c.ca_file.as_deref()).map_err(|e| e.to_string())?;
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        // The request channel holds at most one window, so publishing never waits on it.
        let (client, mut eventloop) = AsyncClient::new(opts, usize::from(c.inflight) + 16);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(c.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(net);
        Ok((client, eventloop))
    }

    async fn connection(
        &mut self,
        window: &mut Window,
        persisted: &mut u64,
        backoff: &mut Backoff,
        was_up: &mut bool,
    ) -> End {
        let (client, mut eventloop) = match self.client() {
            Ok(c) => c,
            Err(reason) => return End::Lost(reason),
        };
        let mut committed = self.store.committed();
        let mut flush = tokio::time::interval(CURSOR_FLUSH);
        let capacity = usize::from(self.config.inflight);
        let mut connected = false;
        loop {
            if connected && window.len() < capacity && window.scanned() < *committed.borrow() {
                if let Err(reason) = self.send_batch(&client, window, capacity).await {
                    return End::Lost(reason);
                }
            }
            let more_to_send =
                connected && window.len() < capacity && window.scanned() < *committed.borrow();
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => {
                    let _ = client.try_disconnect();
                    return End::Shutdown;
                }
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if ack.code != ConnectReturnCode::Success {
                            return End::Lost(format!("connection refused: {:?}", ack.code));
                        }
                        connected = true;
                        *was_up = true;
                        backoff.reset();
                        self.metrics.connected.set(1);
                        tracing::info!(upstream = %self.config.name, url = %self.config.url,
                            client_id = %self.config.client_id, resume_after = window.cursor(), "upstream connected");
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => window.written(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if window.acked(ack.pkid) {
                            self.metrics.forwarded.inc();
                        }
                        // Never let more than one window of acknowledged events go
                        // unpersisted: that keeps duplicates after a crash within
                        // two windows (in flight + acknowledged since the last flush).
                        if window.cursor() >= *persisted + capacity as u64 {
                            self.persist(window.cursor(), persisted).await;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return End::Lost(e.to_string()),
                },
                _ = committed.changed() => {}
                _ = flush.tick() => {
                    self.persist(window.cursor(), persisted).await;
                    let backlog = committed.borrow().saturating_sub(*persisted);
                    self.metrics.backlog_events.set(backlog as i64);
                }
                _ = std::future::ready(()), if more_to_send => {}
            }
        }
    }

    /// Reads the next records after the window's scan position and hands them to the client.
    async fn send_batch(
        &self,
        client: &AsyncClient,
        window: &mut Window,
        capacity: usize,
    ) -> Result<(), String> {
        let room = (capacity - window.len()).min(self.config.batch);
        let store = self.store.clone();
        let (after, bit) = (window.scanned(), self.bit);
        let read = tokio::task::spawn_blocking(move || store.read_after(after, room, bit))
            .await
            .map_err(|e| format!("store read task failed: {e}"))?;
        let (records, last) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(upstream = %self.config.name, error = %e, "store read failed");
                return Err(format!("store read failed: {e}"));
            }
        };
        for rec in records {
            let Some(route) = self
                .routes
                .iter()
                .find(|r| crate::topic::matches(&r.filter, &rec.topic))
            else {
                // The rule that selected it is gone from the config: nothing to send.
                continue;
            };
            let qos = if route.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            let StoredEvent {
                seq,
                topic,
                payload,
                ..
            } = rec;
            client
                .publish_bytes(route.remote_topic(&topic), qos, false, payload)
                .await
                .map_err(|e| format!("client request failed: {e}"))?;
            window.push(seq, route.qos);
        }
        window.scanned_to(last);
        Ok(())
    }

    async fn persist(&self, cursor: u64, persisted: &mut u64) {
        if cursor > *persisted && self.store.advance_cursor(self.slot, cursor).await.is_ok() {
            *persisted = cursor;
            self.metrics.cursor.set(cursor as i64);
        }
    }
}
