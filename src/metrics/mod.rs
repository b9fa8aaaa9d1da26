//! Counters and gauges, and their Prometheus text exposition.
//!
//! Plain atomics rather than a metrics framework: every hot-path update is one relaxed
//! `fetch_add`, and the whole set is rendered on demand by [`Metrics::render`].

mod auth;
mod delivery;
mod integrity;
mod limits;
mod process;

pub use auth::{AuthFailure, AuthMetrics};
pub use delivery::DeliveryMetrics;
pub use integrity::IntegrityMetrics;
pub use limits::LimitMetrics;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A Prometheus histogram with fixed buckets (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in microseconds, so it stays an integer atomic.
    sum_us: AtomicU64,
}

const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds: COMMIT_BUCKETS,
            buckets: COMMIT_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            if seconds <= *bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            let _ = writeln!(
                s,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "{name}_count {count}");
    }
}

/// Per-upstream figures, registered once per `[[upstream]]`.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    pub name: String,
    pub connected: Gauge,
    pub forwarded: Counter,
    pub connect_failures: Counter,
    pub cursor: Gauge,
    pub backlog_events: Gauge,
    /// Bytes of that backlog, estimated as events x the mean stored record size (exact
    /// per-upstream bytes would mean reading the whole backlog).
    pub backlog_bytes: Gauge,
    /// Refusals by the upstream (MQTT 5 PUBACK failure code, JetStream API error), each
    /// resend's too.
    pub refused: Counter,
    /// Publishes JetStream acknowledged as duplicates (`Nats-Msg-Id` seen in the stream's
    /// duplicate window): resends of events it already had.
    pub duplicates: Counter,
    /// Age of the oldest event still owed to the upstream.
    pub oldest_backlog_ms: Gauge,
    /// Events this upstream never got because retention dropped them.
    pub dropped_full: Counter,
    /// `dropped_full` by the priority of the lane that lost the event.
    pub dropped_full_by_priority: [Counter; 10],
    pub dropped_age: Counter,
    /// Connections dropped by the progress watchdog (`stall_timeout`).
    pub stalls: Counter,
    /// Wall-clock ms of the last acknowledged progress (0: none since start), for
    /// `/health`'s `last_ack_age_seconds`.
    pub last_ack_ms: Gauge,
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_mqtt: Gauge,
    pub connections_nats: Gauge,
    /// MQTT connections by transport: tcp, tls, ws, wss (`Transport` order).
    pub connections_mqtt_by: [Gauge; 4],
    /// NATS connections that negotiated TLS (the rest are plain TCP).
    pub connections_nats_tls: Gauge,
    pub connections_refused: Counter,
    pub protocol_errors: Counter,
    pub events_received: Counter,
    pub events_stored: Counter,
    pub store_commits: Counter,
    pub store_errors: Counter,
    /// Stored records that failed their checksum or did not decode, skipped (each once).
    pub store_corrupt: Counter,
    pub store_queue: Gauge,
    pub store_bytes: Gauge,
    pub store_events: Gauge,
    pub store_file_bytes: Gauge,
    /// Bytes (records and keys) and messages in the store's `retained` table.
    pub store_retained_bytes: Gauge,
    pub store_retained: Gauge,
    /// Bytes (rows, keys, overhead) and deliveries in the store's `session_queue` table.
    pub store_queued_bytes: Gauge,
    pub store_queued: Gauge,
    pub store_rejected: Counter,
    pub commit_seconds: Histogram,
    pub dropped_slow_subscriber: Counter,
    pub dropped_offline_qos0: Counter,
    pub dropped_offline_overflow: Counter,
    pub sessions_expired: Counter,
    /// Offline persistent sessions discarded to make room under `mqtt.max_sessions`.
    pub sessions_evicted: Counter,
    pub sessions: Gauge,
    pub retained: Gauge,
    /// What the retained messages held count against the byte limit (their sizes).
    pub retained_bytes: Gauge,
    /// Stored retained messages deleted at startup: beyond the limits, which were lowered.
    pub retained_dropped: Counter,
    pub dropped_expired: Counter,
    pub nats_slow_consumers: Counter,
    pub nats_unmappable: Counter,
    pub dropped_too_large: Counter,
    pub deliveries: Counter,
    /// Config reloads applied, and refused (an invalid file: nothing changed).
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
    pub auth: AuthMetrics,
    pub delivery: DeliveryMetrics,
    pub limits: LimitMetrics,
    /// The quarantine and the dead-letter table.
    pub integrity: IntegrityMetrics,
    pub upstreams: Mutex<Vec<Arc<UpstreamMetrics>>>,
    budget: std::sync::OnceLock<Arc<crate::budget::Budget>>,
}

impl Metrics {
    /// Reports the memory budget and how much of it is in use.
    pub fn watch_budget(&self, budget: Arc<crate::budget::Budget>) {
        let _ = self.budget.set(budget);
    }

    pub fn upstream(&self, name: &str) -> Arc<UpstreamMetrics> {
        let mut list = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = list.iter().find(|m| m.name == name) {
            return m.clone();
        }
        let m = Arc::new(UpstreamMetrics {
            name: name.to_string(),
            ..UpstreamMetrics::default()
        });
        list.push(m.clone());
        m
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let g = |s: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let c = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(
            s,
            "# HELP ferry_connections Open client connections.\n# TYPE ferry_connections gauge\n\
             ferry_connections{{protocol=\"mqtt\"}} {}\nferry_connections{{protocol=\"nats\"}} {}",
            self.connections_mqtt.get(),
            self.connections_nats.get()
        );
        let _ = writeln!(
            s,
            "# HELP ferry_connections_by_transport Open client connections by protocol and transport.\n\
             # TYPE ferry_connections_by_transport gauge"
        );
        for (t, g) in ["tcp", "tls", "ws", "wss"]
            .iter()
            .zip(&self.connections_mqtt_by)
        {
            let _ = writeln!(
                s,
                "ferry_connections_by_transport{{protocol=\"mqtt\",transport=\"{t}\"}} {}",
                g.get()
            );
        }
        let nats_tls = self.connections_nats_tls.get();
        let _ = writeln!(
            s,
            "ferry_connections_by_transport{{protocol=\"nats\",transport=\"tcp\"}} {}\n\
             ferry_connections_by_transport{{protocol=\"nats\",transport=\"tls\"}} {nats_tls}",
            self.connections_nats.get() - nats_tls
        );
        c(
            &mut s,
            "ferry_connections_refused_total",
            "Connections refused at the connection limit.",
            self.connections_refused.get(),
        );
        c(
            &mut s,
            "ferry_protocol_errors_total",
            "Connections closed for malformed or forbidden input.",
            self.protocol_errors.get(),
        );
        let _ = writeln!(
            s,
            "# HELP ferry_config_reloads_total Config reloads (SIGHUP, ferry reload): applied (ok) or refused for an invalid file (error).\n\
             # TYPE ferry_config_reloads_total counter\n\
             ferry_config_reloads_total{{result=\"ok\"}} {}\nferry_config_reloads_total{{result=\"error\"}} {}",
            self.reloads_ok.get(),
            self.reloads_failed.get()
        );
        self.auth.render(&mut s);
        self.delivery.render(&mut s);
        self.limits.render(&mut s);
        self.integrity.render(&mut s);
        c(
            &mut s,
            "ferry_events_received_total",
            "Events published by clients.",
            self.events_received.get(),
        );
        c(
            &mut s,
            "ferry_events_stored_total",
            "Events committed to the store.",
            self.events_stored.get(),
        );
        c(
            &mut s,
            "ferry_store_commits_total",
            "Store write transactions committed.",
            self.store_commits.get(),
        );
        c(
            &mut s,
            "ferry_store_errors_total",
            "Store write transactions that failed.",
            self.store_errors.get(),
        );
        c(
            &mut s,
            "ferry_store_corrupt_total",
            "Stored records that failed their checksum or did not decode: skipped, never forwarded.",
            self.store_corrupt.get(),
        );
        g(
            &mut s,
            "ferry_store_queue",
            "Events waiting for the store writer.",
            self.store_queue.get(),
        );
        let _ = writeln!(
            s,
            "# HELP ferry_store_bytes Bytes of stored records and their keys: the log's events (no label), retained messages (table=\"retained\"), deliveries queued for persistent sessions (table=\"session_queue\").\n\
             # TYPE ferry_store_bytes gauge\n\
             ferry_store_bytes {}\n\
             ferry_store_bytes{{table=\"retained\"}} {}\n\
             ferry_store_bytes{{table=\"session_queue\"}} {}\n\
             # HELP ferry_store_events Records in the store: the log's events (no label), retained messages (table=\"retained\"), deliveries queued for persistent sessions (table=\"session_queue\").\n\
             # TYPE ferry_store_events gauge\n\
             ferry_store_events {}\n\
             ferry_store_events{{table=\"retained\"}} {}\n\
             ferry_store_events{{table=\"session_queue\"}} {}",
            self.store_bytes.get(),
            self.store_retained_bytes.get(),
            self.store_queued_bytes.get(),
            self.store_events.get(),
            self.store_retained.get(),
            self.store_queued.get()
        );
        g(
            &mut s,
            "ferry_store_file_bytes",
            "Size of the store file.",
            self.store_file_bytes.get(),
        );
        c(
            &mut s,
            "ferry_store_rejected_total",
            "Events refused by the store (full with reject_new, or a failed commit).",
            self.store_rejected.get(),
        );
        self.commit_seconds.render(
            &mut s,
            "ferry_store_commit_seconds",
            "Store write transaction latency.",
        );
        c(
            &mut s,
            "ferry_deliveries_total",
            "Events queued to local subscribers.",
            self.deliveries.get(),
        );
        let _ = writeln!(
            s,
            "# HELP ferry_events_dropped_total Events not delivered or not stored, by reason.\n\
             # TYPE ferry_events_dropped_total counter\n\
             ferry_events_dropped_total{{reason=\"slow_subscriber\"}} {}\n\
             ferry_events_dropped_total{{reason=\"offline_qos0\"}} {}\n\
             ferry_events_dropped_total{{reason=\"offline_overflow\"}} {}",
            self.dropped_slow_subscriber.get(),
            self.dropped_offline_qos0.get(),
            self.dropped_offline_overflow.get()
        );
        g(
            &mut s,
            "ferry_mqtt_sessions",
            "MQTT sessions held, online and offline.",
            self.sessions.get(),
        );
        g(
            &mut s,
            "ferry_retained_messages",
            "Retained messages held.",
            self.retained.get(),
        );
        g(
            &mut s,
            "ferry_retained_bytes",
            "What the retained messages held count against mqtt.max_retained_bytes (each at least its size in memory and in the store).",
            self.retained_bytes.get(),
        );
        c(
            &mut s,
            "ferry_retained_dropped_total",
            "Stored retained messages deleted at startup because they were beyond mqtt.max_retained or the retained byte limit (the limits were lowered).",
            self.retained_dropped.get(),
        );
        c(
            &mut s,
            "ferry_mqtt_sessions_expired_total",
            "Offline MQTT sessions that expired.",
            self.sessions_expired.get(),
        );
        c(
            &mut s,
            "ferry_mqtt_sessions_evicted_total",
            "Offline MQTT sessions discarded (the least recently connected first) to make room for a new persistent session at mqtt.max_sessions, or for one more offline session in their part of the memory budget.",
            self.sessions_evicted.get(),
        );
        if let Some(b) = self.budget.get() {
            let queued = b.ingest_limit.saturating_sub(b.ingest.available_permits());
            let _ = writeln!(
                s,
                "# HELP ferry_memory_budget_bytes The [limits] memory budget, and its parts.\n\
                 # TYPE ferry_memory_budget_bytes gauge\n\
                 ferry_memory_budget_bytes{{part=\"total\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"store_cache\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"store_queue\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"subscriber_queues\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"offline_sessions\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"client_state\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"offline_session_state\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"retained\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"packets\"}} {}\n\
                 ferry_memory_budget_bytes{{part=\"connections\"}} {}\n\
                 # HELP ferry_memory_used_bytes Budget in use, by part.\n\
                 # TYPE ferry_memory_used_bytes gauge\n\
                 ferry_memory_used_bytes{{part=\"store_queue\"}} {queued}\n\
                 ferry_memory_used_bytes{{part=\"subscriber_queues\"}} {}\n\
                 ferry_memory_used_bytes{{part=\"offline_sessions\"}} {}\n\
                 ferry_memory_used_bytes{{part=\"client_state\"}} {}\n\
                 ferry_memory_used_bytes{{part=\"offline_session_state\"}} {}\n\
                 ferry_memory_used_bytes{{part=\"retained\"}} {}\n\
                 ferry_memory_used_bytes{{part=\"packets\"}} {}\n\
                 ferry_memory_used_bytes{{part=\"connections\"}} {}",
                b.total,
                b.cache,
                b.ingest_limit,
                b.outboxes.limit(),
                b.outboxes.offline_limit(),
                b.state.limit(),
                b.state.offline_limit(),
                b.retained,
                b.packets.limit(),
                b.connections.limit(),
                b.outboxes.used(),
                b.outboxes.offline_used(),
                b.state.used(),
                b.state.offline_used(),
                self.retained_bytes.get(),
                b.packets.used(),
                b.connections.used()
            );
        }
        c(
            &mut s,
            "ferry_nats_slow_consumers_total",
            "NATS connections cut off as slow consumers.",
            self.nats_slow_consumers.get(),
        );
        c(
            &mut s,
            "ferry_nats_unmappable_total",
            "Events not delivered to a NATS subscriber: topic has no subject form.",
            self.nats_unmappable.get(),
        );
        c(
            &mut s,
            "ferry_events_expired_total",
            "MQTT 5 messages dropped because their expiry passed.",
            self.dropped_expired.get(),
        );
        c(
            &mut s,
            "ferry_deliveries_too_large_total",
            "Deliveries dropped: larger than the client's maximum packet size.",
            self.dropped_too_large.get(),
        );
        let list = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        for (name, help, kind) in [
            (
                "ferry_upstream_connected",
                "1 while the upstream link is up.",
                "gauge",
            ),
            (
                "ferry_upstream_forwarded_total",
                "Events acknowledged by the upstream.",
                "counter",
            ),
            (
                "ferry_upstream_connect_failures_total",
                "Failed or lost upstream connections.",
                "counter",
            ),
            (
                "ferry_upstream_cursor",
                "Store sequence up to which the upstream has acknowledged.",
                "gauge",
            ),
            (
                "ferry_upstream_backlog_events",
                "Events stored after the upstream's cursor, not yet acknowledged (while it is down, events only other upstreams take count too, until its link passes them).",
                "gauge",
            ),
            (
                "ferry_upstream_backlog_bytes",
                "Bytes of the stored events not yet acknowledged by the upstream (events x mean stored record size).",
                "gauge",
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for m in list.iter() {
                let v = match name {
                    "ferry_upstream_connected" => m.connected.get(),
                    "ferry_upstream_forwarded_total" => m.forwarded.get() as i64,
                    "ferry_upstream_connect_failures_total" => m.connect_failures.get() as i64,
                    "ferry_upstream_cursor" => m.cursor.get(),
                    "ferry_upstream_backlog_bytes" => m.backlog_bytes.get(),
                    _ => m.backlog_events.get(),
                };
                let _ = writeln!(s, "{name}{{upstream=\"{}\"}} {v}", m.name);
            }
        }
        let _ = writeln!(
            s,
            "# HELP ferry_upstream_oldest_backlog_seconds Age of the oldest event not yet acknowledged by the upstream.\n# TYPE ferry_upstream_oldest_backlog_seconds gauge"
        );
        for m in list.iter() {
            let _ = writeln!(
                s,
                "ferry_upstream_oldest_backlog_seconds{{upstream=\"{}\"}} {}",
                m.name,
                m.oldest_backlog_ms.get() as f64 / 1000.0
            );
        }
        let _ = writeln!(
            s,
            "# HELP ferry_upstream_refused_total Publishes the upstream refused (MQTT 5 PUBACK reason code, JetStream API error), resends included.\n# TYPE ferry_upstream_refused_total counter"
        );
        for m in list.iter() {
            let _ = writeln!(
                s,
                "ferry_upstream_refused_total{{upstream=\"{}\"}} {}",
                m.name,
                m.refused.get()
            );
        }
        let _ = writeln!(
            s,
            "# HELP ferry_upstream_duplicates_total Resent events JetStream already had (dropped by its duplicate window on Nats-Msg-Id).\n# TYPE ferry_upstream_duplicates_total counter"
        );
        for m in list.iter() {
            let _ = writeln!(
                s,
                "ferry_upstream_duplicates_total{{upstream=\"{}\"}} {}",
                m.name,
                m.duplicates.get()
            );
        }
        let _ = writeln!(
            s,
            "# HELP ferry_upstream_stalls_total Connections dropped and re-established because nothing was acknowledged for stall_timeout while publishes were in flight.\n# TYPE ferry_upstream_stalls_total counter"
        );
        for m in list.iter() {
            let _ = writeln!(
                s,
                "ferry_upstream_stalls_total{{upstream=\"{}\"}} {}",
                m.name,
                m.stalls.get()
            );
        }
        let _ = writeln!(
            s,
            "# HELP ferry_upstream_dropped_total Stored events an upstream never got, dropped by retention.\n\
             # TYPE ferry_upstream_dropped_total counter"
        );
        for m in list.iter() {
            let _ = writeln!(
                s,
                "ferry_upstream_dropped_total{{upstream=\"{}\",reason=\"full\"}} {}",
                m.name,
                m.dropped_full.get()
            );
            let _ = writeln!(
                s,
                "ferry_upstream_dropped_total{{upstream=\"{}\",reason=\"max_age\"}} {}",
                m.name,
                m.dropped_age.get()
            );
        }
        let _ = writeln!(
            s,
            "# HELP ferry_upstream_priority_dropped_total Stored events an upstream never got because the store was full (on_full = \"drop_oldest\"), by the priority of its rule; only priorities that lost any.\n\
             # TYPE ferry_upstream_priority_dropped_total counter"
        );
        for m in list.iter() {
            for (p, n) in m.dropped_full_by_priority.iter().enumerate() {
                if n.get() > 0 {
                    let _ = writeln!(
                        s,
                        "ferry_upstream_priority_dropped_total{{upstream=\"{}\",priority=\"{p}\"}} {}",
                        m.name,
                        n.get()
                    );
                }
            }
        }
        process::render(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_includes_upstreams() {
        let m = Metrics::default();
        m.events_received.add(3);
        m.upstream("cloud").forwarded.add(2);
        m.upstream("cloud").stalls.inc();
        let text = m.render();
        assert!(text.contains("ferry_upstream_stalls_total{upstream=\"cloud\"} 1\n"));
        assert!(text.contains("ferry_events_received_total 3\n"));
        assert!(text.contains("ferry_upstream_forwarded_total{upstream=\"cloud\"} 2\n"));
    }
}
