//! The `$SYS` topics: ferry's own figures, published every `[sys] interval` as retained
//! messages, for dashboards and scripts that subscribe to `$SYS/#` (NATS: `$SYS.>`).
//!
//! mosquitto's names where it has them (`$SYS/broker/version`, `/uptime`,
//! `/clients/connected`, `/messages/received`, `/messages/sent`,
//! `/load/messages/received/1min`, `/load/messages/sent/1min`, `/store/messages/count`),
//! and ferry's own per upstream: `$SYS/ferry/upstream/<name>/state` (`connected` or
//! `down`), `/backlog` (events) and `/oldest_age` (seconds).
//!
//! They go to local subscribers and the retained table only: never counted as received,
//! never stored, never forwarded ([`super::Hub::publish_status`]). The router applies the
//! ACL to every delivery, and a first-level `#` or `+` never matches a `$` topic.

use super::Hub;
use crate::admin::history::{History, Sample};
use crate::event::{Event, Origin};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Every `$SYS` message of one look at the figures: (topic, payload).
pub fn messages(
    hub: &Hub,
    history: &History,
    started: Instant,
    now_ms: u64,
) -> Vec<(String, String)> {
    let m = &hub.metrics;
    let now = Sample::take(m, now_ms);
    let (received, sent) = history.per_minute(&now);
    let mut out = vec![
        (
            "$SYS/broker/version".into(),
            format!("ferry {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime".into(),
            format!("{} seconds", started.elapsed().as_secs()),
        ),
        (
            "$SYS/broker/clients/connected".into(),
            (m.connections_mqtt.get() + m.connections_nats.get()).to_string(),
        ),
        (
            "$SYS/broker/messages/received".into(),
            now.received.to_string(),
        ),
        (
            "$SYS/broker/messages/sent".into(),
            now.delivered.to_string(),
        ),
        (
            "$SYS/broker/load/messages/received/1min".into(),
            format!("{received:.2}"),
        ),
        (
            "$SYS/broker/load/messages/sent/1min".into(),
            format!("{sent:.2}"),
        ),
        (
            "$SYS/broker/store/messages/count".into(),
            m.store_events.get().to_string(),
        ),
    ];
    let upstreams = m
        .upstreams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for u in upstreams {
        let state = if u.connected.get() == 1 {
            "connected"
        } else {
            "down"
        };
        let base = format!("$SYS/ferry/upstream/{}", u.name);
        out.push((format!("{base}/state"), state.into()));
        out.push((
            format!("{base}/backlog"),
            u.backlog_events.get().to_string(),
        ));
        out.push((
            format!("{base}/oldest_age"),
            format!("{:.1}", u.oldest_backlog_ms.get() as f64 / 1000.0),
        ));
    }
    out
}

/// The periodic chores, in one task (each task is code of its own in the binary): the
/// figures sampled every [`crate::admin::history::EVERY`], the `$SYS` topics published
/// every `interval` (zero: not at all, until a reload sets one), and the summary of log
/// lines suppressed in each window ([`crate::logging::flush_suppressed`]), until
/// `shutdown`.
pub async fn run(
    hub: Arc<Hub>,
    history: Arc<History>,
    mut interval: watch::Receiver<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::admin::history::{EVERY, Sample};
    let started = Instant::now();
    let mut sample = tokio::time::interval(EVERY);
    let mut flush = tokio::time::interval(Duration::from_secs(crate::logging::WINDOW_SECS));
    let mut next_sys = tokio::time::Instant::now();
    loop {
        let every = *interval.borrow();
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = interval.changed() => {
                if changed.is_err() {
                    return;
                }
                next_sys = tokio::time::Instant::now();
            }
            _ = sample.tick() => history.push(Sample::take(&hub.metrics, crate::event::now_ms())),
            _ = flush.tick() => crate::logging::flush_suppressed(),
            _ = tokio::time::sleep_until(next_sys), if !every.is_zero() => {
                for (topic, payload) in messages(&hub, &history, started, crate::event::now_ms()) {
                    let event = Event::new(topic.into(), Bytes::from(payload), 0, true, Origin::Mqtt);
                    hub.publish_status(Arc::new(event));
                }
                next_sys += every;
            }
        }
    }
}
