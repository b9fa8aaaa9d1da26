//! Counters and gauges, and their Prometheus text exposition.
//!
//! Plain atomics rather than a metrics framework: every hot-path update is one relaxed
//! `fetch_add`, and the whole set is rendered on demand by [`Metrics::render`].

mod auth;
mod delivery;
mod integrity;
mod limits;
mod process;
mod registry;

pub use auth::{AuthFailure, AuthMetrics};
pub use delivery::DeliveryMetrics;
pub use integrity::IntegrityMetrics;
pub use limits::LimitMetrics;
use registry::{Family, Kind, Samples};
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

    fn samples(&self, s: &mut Samples<'_>) {
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            s.series(
                "_bucket",
                &format!("{{le=\"{bound}\"}}"),
                b.load(Ordering::Relaxed),
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        s.series("_bucket", "{le=\"+Inf\"}", count);
        s.series("_sum", "", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        s.series("_count", "", count);
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
    /// Commits that were fsynced (`store.fsync`, `store.max_fsyncs_per_sec`).
    pub store_fsyncs: Counter,
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

    /// The Prometheus text format (version 0.0.4): every component's families, in turn.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(8192);
        registry::render(Metrics::FAMILIES, self, &mut s);
        registry::render(AuthMetrics::FAMILIES, &self.auth, &mut s);
        registry::render(DeliveryMetrics::FAMILIES, &self.delivery, &mut s);
        registry::render(LimitMetrics::FAMILIES, &self.limits, &mut s);
        registry::render(IntegrityMetrics::FAMILIES, &self.integrity, &mut s);
        let upstreams = self
            .upstreams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        registry::render(UPSTREAM_FAMILIES, &upstreams, &mut s);
        registry::render(process::FAMILIES, &(), &mut s);
        s
    }

    const FAMILIES: &[Family<Metrics>] = &[
        Family {
            name: "ferry_connections",
            help: "Open client connections.",
            kind: Kind::Gauge,
            samples: |m, s| {
                s.labeled(&[("protocol", "mqtt")], m.connections_mqtt.get());
                s.labeled(&[("protocol", "nats")], m.connections_nats.get());
            },
        },
        Family {
            name: "ferry_connections_by_transport",
            help: "Open client connections by protocol and transport.",
            kind: Kind::Gauge,
            samples: |m, s| {
                for (t, g) in ["tcp", "tls", "ws", "wss"]
                    .iter()
                    .zip(&m.connections_mqtt_by)
                {
                    s.labeled(&[("protocol", "mqtt"), ("transport", t)], g.get());
                }
                let tls = m.connections_nats_tls.get();
                s.labeled(
                    &[("protocol", "nats"), ("transport", "tcp")],
                    m.connections_nats.get() - tls,
                );
                s.labeled(&[("protocol", "nats"), ("transport", "tls")], tls);
            },
        },
        Family {
            name: "ferry_connections_refused_total",
            help: "Connections refused at the connection limit.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.connections_refused.get()),
        },
        Family {
            name: "ferry_protocol_errors_total",
            help: "Connections closed for malformed or forbidden input.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.protocol_errors.get()),
        },
        Family {
            name: "ferry_config_reloads_total",
            help: "Config reloads (SIGHUP, ferry reload): applied (ok) or refused for an invalid file (error).",
            kind: Kind::Counter,
            samples: |m, s| {
                s.labeled(&[("result", "ok")], m.reloads_ok.get());
                s.labeled(&[("result", "error")], m.reloads_failed.get());
            },
        },
        Family {
            name: "ferry_events_received_total",
            help: "Events published by clients.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.events_received.get()),
        },
        Family {
            name: "ferry_events_stored_total",
            help: "Events committed to the store.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.events_stored.get()),
        },
        Family {
            name: "ferry_store_commits_total",
            help: "Store write transactions committed.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.store_commits.get()),
        },
        Family {
            name: "ferry_store_fsyncs_total",
            help: "Store commits made durable with an fsync (the SD card's wear: store.max_fsyncs_per_sec, store.fsync).",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.store_fsyncs.get()),
        },
        Family {
            name: "ferry_store_errors_total",
            help: "Store write transactions that failed.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.store_errors.get()),
        },
        Family {
            name: "ferry_store_corrupt_total",
            help: "Stored records that failed their checksum or did not decode: skipped, never forwarded.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.store_corrupt.get()),
        },
        Family {
            name: "ferry_store_queue",
            help: "Events waiting for the store writer.",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.store_queue.get()),
        },
        Family {
            name: "ferry_store_bytes",
            help: "Bytes of stored records and their keys: the log's events (no label), retained messages (table=\"retained\"), deliveries queued for persistent sessions (table=\"session_queue\").",
            kind: Kind::Gauge,
            samples: |m, s| {
                s.value(m.store_bytes.get());
                s.labeled(&[("table", "retained")], m.store_retained_bytes.get());
                s.labeled(&[("table", "session_queue")], m.store_queued_bytes.get());
            },
        },
        Family {
            name: "ferry_store_events",
            help: "Records in the store: the log's events (no label), retained messages (table=\"retained\"), deliveries queued for persistent sessions (table=\"session_queue\").",
            kind: Kind::Gauge,
            samples: |m, s| {
                s.value(m.store_events.get());
                s.labeled(&[("table", "retained")], m.store_retained.get());
                s.labeled(&[("table", "session_queue")], m.store_queued.get());
            },
        },
        Family {
            name: "ferry_store_file_bytes",
            help: "Size of the store file.",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.store_file_bytes.get()),
        },
        Family {
            name: "ferry_store_rejected_total",
            help: "Events refused by the store (full with reject_new, or a failed commit).",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.store_rejected.get()),
        },
        Family {
            name: "ferry_store_commit_seconds",
            help: "Store write transaction latency.",
            kind: Kind::Histogram,
            samples: |m, s| m.commit_seconds.samples(s),
        },
        Family {
            name: "ferry_deliveries_total",
            help: "Events queued to local subscribers.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.deliveries.get()),
        },
        Family {
            name: "ferry_events_dropped_total",
            help: "Events not delivered or not stored, by reason.",
            kind: Kind::Counter,
            samples: |m, s| {
                s.labeled(
                    &[("reason", "slow_subscriber")],
                    m.dropped_slow_subscriber.get(),
                );
                s.labeled(&[("reason", "offline_qos0")], m.dropped_offline_qos0.get());
                s.labeled(
                    &[("reason", "offline_overflow")],
                    m.dropped_offline_overflow.get(),
                );
            },
        },
        Family {
            name: "ferry_mqtt_sessions",
            help: "MQTT sessions held, online and offline.",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.sessions.get()),
        },
        Family {
            name: "ferry_retained_messages",
            help: "Retained messages held.",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.retained.get()),
        },
        Family {
            name: "ferry_retained_bytes",
            help: "What the retained messages held count against mqtt.max_retained_bytes (each at least its size in memory and in the store).",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.retained_bytes.get()),
        },
        Family {
            name: "ferry_retained_dropped_total",
            help: "Stored retained messages deleted at startup because they were beyond mqtt.max_retained or the retained byte limit (the limits were lowered).",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.retained_dropped.get()),
        },
        Family {
            name: "ferry_mqtt_sessions_expired_total",
            help: "Offline MQTT sessions that expired.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.sessions_expired.get()),
        },
        Family {
            name: "ferry_mqtt_sessions_evicted_total",
            help: "Offline MQTT sessions discarded (the least recently connected first) to make room for a new persistent session at mqtt.max_sessions, or for one more offline session in their part of the memory budget.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.sessions_evicted.get()),
        },
        Family {
            name: "ferry_memory_budget_bytes",
            help: "The [limits] memory budget, and its parts.",
            kind: Kind::Gauge,
            samples: |m, s| {
                let Some(b) = m.budget.get() else { return };
                for (part, v) in [
                    ("total", b.total),
                    ("store_cache", b.cache),
                    ("store_queue", b.ingest_limit),
                    ("subscriber_queues", b.outboxes.limit()),
                    ("offline_sessions", b.outboxes.offline_limit()),
                    ("client_state", b.state.limit()),
                    ("offline_session_state", b.state.offline_limit()),
                    ("retained", b.retained),
                    ("packets", b.packets.limit()),
                    ("connections", b.connections.limit()),
                ] {
                    s.labeled(&[("part", part)], v);
                }
            },
        },
        Family {
            name: "ferry_memory_used_bytes",
            help: "Budget in use, by part.",
            kind: Kind::Gauge,
            samples: |m, s| {
                let Some(b) = m.budget.get() else { return };
                let queued = b.ingest_limit.saturating_sub(b.ingest.available_permits());
                let retained = usize::try_from(m.retained_bytes.get()).unwrap_or(0);
                for (part, v) in [
                    ("store_queue", queued),
                    ("subscriber_queues", b.outboxes.used()),
                    ("offline_sessions", b.outboxes.offline_used()),
                    ("client_state", b.state.used()),
                    ("offline_session_state", b.state.offline_used()),
                    ("retained", retained),
                    ("packets", b.packets.used()),
                    ("connections", b.connections.used()),
                ] {
                    s.labeled(&[("part", part)], v);
                }
            },
        },
        Family {
            name: "ferry_nats_slow_consumers_total",
            help: "NATS connections cut off as slow consumers.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.nats_slow_consumers.get()),
        },
        Family {
            name: "ferry_nats_unmappable_total",
            help: "Events not delivered to a NATS subscriber: topic has no subject form.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.nats_unmappable.get()),
        },
        Family {
            name: "ferry_events_expired_total",
            help: "MQTT 5 messages dropped because their expiry passed.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.dropped_expired.get()),
        },
        Family {
            name: "ferry_deliveries_too_large_total",
            help: "Deliveries dropped: larger than the client's maximum packet size.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.dropped_too_large.get()),
        },
    ];
}

type Upstreams = Vec<Arc<UpstreamMetrics>>;

/// One sample per upstream of the figure `of`.
fn per_upstream(list: &Upstreams, s: &mut Samples<'_>, of: fn(&UpstreamMetrics) -> i64) {
    for m in list {
        s.labeled(&[("upstream", &m.name)], of(m));
    }
}

/// The upstreams' families, one sample per upstream (and reason or priority).
const UPSTREAM_FAMILIES: &[Family<Upstreams>] = &[
    Family {
        name: "ferry_upstream_connected",
        help: "1 while the upstream link is up.",
        kind: Kind::Gauge,
        samples: |l, s| per_upstream(l, s, |m| m.connected.get()),
    },
    Family {
        name: "ferry_upstream_forwarded_total",
        help: "Events acknowledged by the upstream.",
        kind: Kind::Counter,
        samples: |l, s| per_upstream(l, s, |m| m.forwarded.get() as i64),
    },
    Family {
        name: "ferry_upstream_connect_failures_total",
        help: "Failed or lost upstream connections.",
        kind: Kind::Counter,
        samples: |l, s| per_upstream(l, s, |m| m.connect_failures.get() as i64),
    },
    Family {
        name: "ferry_upstream_cursor",
        help: "Store sequence up to which the upstream has acknowledged.",
        kind: Kind::Gauge,
        samples: |l, s| per_upstream(l, s, |m| m.cursor.get()),
    },
    Family {
        name: "ferry_upstream_backlog_events",
        help: "Events stored after the upstream's cursor, not yet acknowledged (while it is down, events only other upstreams take count too, until its link passes them).",
        kind: Kind::Gauge,
        samples: |l, s| per_upstream(l, s, |m| m.backlog_events.get()),
    },
    Family {
        name: "ferry_upstream_backlog_bytes",
        help: "Bytes of the stored events not yet acknowledged by the upstream (events x mean stored record size).",
        kind: Kind::Gauge,
        samples: |l, s| per_upstream(l, s, |m| m.backlog_bytes.get()),
    },
    Family {
        name: "ferry_upstream_oldest_backlog_seconds",
        help: "Age of the oldest event not yet acknowledged by the upstream.",
        kind: Kind::Gauge,
        samples: |l, s| {
            for m in l {
                s.labeled(
                    &[("upstream", &m.name)],
                    m.oldest_backlog_ms.get() as f64 / 1000.0,
                );
            }
        },
    },
    Family {
        name: "ferry_upstream_refused_total",
        help: "Publishes the upstream refused (MQTT 5 PUBACK reason code, JetStream API error), resends included.",
        kind: Kind::Counter,
        samples: |l, s| per_upstream(l, s, |m| m.refused.get() as i64),
    },
    Family {
        name: "ferry_upstream_duplicates_total",
        help: "Resent events JetStream already had (dropped by its duplicate window on Nats-Msg-Id).",
        kind: Kind::Counter,
        samples: |l, s| per_upstream(l, s, |m| m.duplicates.get() as i64),
    },
    Family {
        name: "ferry_upstream_stalls_total",
        help: "Connections dropped and re-established because nothing was acknowledged for stall_timeout while publishes were in flight.",
        kind: Kind::Counter,
        samples: |l, s| per_upstream(l, s, |m| m.stalls.get() as i64),
    },
    Family {
        name: "ferry_upstream_dropped_total",
        help: "Stored events an upstream never got, dropped by retention.",
        kind: Kind::Counter,
        samples: |l, s| {
            for m in l {
                s.labeled(
                    &[("upstream", &m.name), ("reason", "full")],
                    m.dropped_full.get(),
                );
                s.labeled(
                    &[("upstream", &m.name), ("reason", "max_age")],
                    m.dropped_age.get(),
                );
            }
        },
    },
    Family {
        name: "ferry_upstream_priority_dropped_total",
        help: "Stored events an upstream never got because the store was full (on_full = \"drop_oldest\"), by the priority of its rule; only priorities that lost any.",
        kind: Kind::Counter,
        samples: |l, s| {
            for m in l {
                for (p, n) in m.dropped_full_by_priority.iter().enumerate() {
                    if n.get() > 0 {
                        s.labeled(
                            &[("upstream", &m.name), ("priority", &p.to_string())],
                            n.get(),
                        );
                    }
                }
            }
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family registered by every component, for the conventions test.
    fn every_family() -> Vec<(&'static str, Kind, &'static str)> {
        [
            registry::described(Metrics::FAMILIES),
            registry::described(AuthMetrics::FAMILIES),
            registry::described(DeliveryMetrics::FAMILIES),
            registry::described(LimitMetrics::FAMILIES),
            registry::described(IntegrityMetrics::FAMILIES),
            registry::described(UPSTREAM_FAMILIES),
            registry::described(process::FAMILIES),
        ]
        .concat()
    }

    /// Prometheus's conventions, over the registry: unique names of lower-case words, a
    /// `_total` suffix for every counter and for nothing else, help that is a sentence;
    /// and `/metrics` has each family's HELP and TYPE exactly once.
    #[test]
    fn every_registered_family_follows_the_conventions_and_is_rendered_once() {
        let families = every_family();
        assert!(families.len() >= 60, "{} families", families.len());
        let mut seen = std::collections::HashSet::new();
        for (name, kind, help) in &families {
            assert!(seen.insert(*name), "{name} registered twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(
                name.starts_with("ferry_") || name.starts_with("process_"),
                "{name}"
            );
            assert_eq!(name.ends_with("_total"), *kind == Kind::Counter, "{name}");
            assert!(help.ends_with('.') && help.len() > 10, "{name}: {help}");
        }
        let m = Metrics::default();
        m.watch_budget(Arc::new(crate::budget::Budget::new(32 << 20, 4 << 20)));
        m.upstream("cloud");
        let text = m.render();
        for (name, _, help) in &families {
            let line = format!("# HELP {name} {help}\n");
            assert_eq!(text.matches(&line).count(), 1, "{name}");
        }
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or_default());
            } else if !line.starts_with('#') {
                let series = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| series.strip_suffix(s).filter(|f| declared.contains(f)))
                    .unwrap_or(series);
                assert!(declared.contains(family), "{line}");
            }
        }
    }

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
