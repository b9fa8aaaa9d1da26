//! What `ferry status`, `GET /status.json` and the status page show: one snapshot built
//! from the metrics (so it costs no store transaction and never waits on a link), and its
//! human rendering.

use super::history::{History, Sample};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::inspect::{Obj, json_float as float, quote};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// Where a snapshot's figures come from.
pub struct Source {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub history: Arc<History>,
    pub gateway: String,
    pub board: Option<String>,
    pub started: Instant,
}

#[derive(Debug)]
pub struct Status {
    pub version: &'static str,
    pub gateway: String,
    pub board: Option<String>,
    pub uptime_seconds: u64,
    pub connections: Connections,
    pub events: Events,
    pub store: StoreStatus,
    pub upstreams: Vec<UpstreamStatus>,
}

#[derive(Debug)]
pub struct Connections {
    pub mqtt: MqttConnections,
    pub nats: NatsConnections,
}

#[derive(Debug)]
pub struct MqttConnections {
    pub tcp: i64,
    pub tls: i64,
    pub ws: i64,
    pub wss: i64,
}

#[derive(Debug)]
pub struct NatsConnections {
    pub tcp: i64,
    pub tls: i64,
}

#[derive(Debug)]
pub struct Events {
    pub received: u64,
    pub received_per_second: f64,
    pub delivered: u64,
    pub delivered_per_second: f64,
}

#[derive(Debug)]
pub struct StoreStatus {
    pub usable: bool,
    pub file_bytes: i64,
    pub events: i64,
    pub bytes: i64,
    pub dead_letters: i64,
    pub quarantined: i64,
}

#[derive(Debug)]
pub struct UpstreamStatus {
    pub name: String,
    /// "connected" or "down".
    pub state: &'static str,
    pub backlog_events: i64,
    pub backlog_bytes: i64,
    pub oldest_age_seconds: f64,
    pub drain_per_second: f64,
    pub forwarded: u64,
    /// None (null) when nothing was acknowledged since ferry started.
    pub last_ack_age_seconds: Option<f64>,
    pub dead_letters: u64,
    pub stalls: u64,
    /// The backlog over the last minutes: (seconds ago, events), oldest first.
    pub history: Vec<(f64, i64)>,
}

impl Source {
    pub fn snapshot(&self) -> Status {
        let m = &self.metrics;
        let now_ms = crate::event::now_ms();
        let now = Sample::take(m, now_ms);
        let rates = self.history.rates(&now);
        let upstreams = m
            .upstreams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let nats_tls = m.connections_nats_tls.get();
        let by = &m.connections_mqtt_by;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            gateway: self.gateway.clone(),
            board: self.board.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            connections: Connections {
                mqtt: MqttConnections {
                    tcp: by[0].get(),
                    tls: by[1].get(),
                    ws: by[2].get(),
                    wss: by[3].get(),
                },
                nats: NatsConnections {
                    tcp: m.connections_nats.get() - nats_tls,
                    tls: nats_tls,
                },
            },
            events: Events {
                received: now.received,
                received_per_second: round(rates.received),
                delivered: now.delivered,
                delivered_per_second: round(rates.delivered),
            },
            store: StoreStatus {
                usable: self.store.is_usable(),
                file_bytes: m.store_file_bytes.get(),
                events: m.store_events.get(),
                bytes: m.store_bytes.get(),
                dead_letters: m.integrity.dead_letters.get(),
                quarantined: m.integrity.quarantined.get(),
            },
            upstreams: upstreams
                .iter()
                .map(|u| {
                    let last_ack = u64::try_from(u.last_ack_ms.get()).unwrap_or(0);
                    let mut history = self.history.backlog(&u.name, now_ms);
                    history.push((0.0, u.backlog_events.get()));
                    UpstreamStatus {
                        name: u.name.clone(),
                        state: if u.connected.get() == 1 {
                            "connected"
                        } else {
                            "down"
                        },
                        backlog_events: u.backlog_events.get(),
                        backlog_bytes: u.backlog_bytes.get(),
                        oldest_age_seconds: u.oldest_backlog_ms.get() as f64 / 1000.0,
                        drain_per_second: round(self.history.drain_rate(&now, &u.name)),
                        forwarded: u.forwarded.get(),
                        last_ack_age_seconds: (last_ack > 0)
                            .then(|| now_ms.saturating_sub(last_ack) as f64 / 1000.0),
                        dead_letters: m.integrity.dead_lettered_total(&u.name),
                        stalls: u.stalls.get(),
                        history,
                    }
                })
                .collect(),
        }
    }
}

/// One decimal: rates are estimates over a few seconds.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl Status {
    /// The JSON document (`ferry status --json`, `/status.json`). Written by hand: serde's
    /// derive cost ten times the code (the 5 MiB budget).
    pub fn to_json(&self) -> String {
        let c = &self.connections;
        let mqtt = Obj::default()
            .int("tcp", c.mqtt.tcp)
            .int("tls", c.mqtt.tls)
            .int("ws", c.mqtt.ws)
            .int("wss", c.mqtt.wss)
            .done();
        let nats = Obj::default()
            .int("tcp", c.nats.tcp)
            .int("tls", c.nats.tls)
            .done();
        let e = &self.events;
        let events = Obj::default()
            .num("received", e.received)
            .float("received_per_second", e.received_per_second)
            .num("delivered", e.delivered)
            .float("delivered_per_second", e.delivered_per_second)
            .done();
        let st = &self.store;
        let store = Obj::default()
            .raw("usable", if st.usable { "true" } else { "false" })
            .int("file_bytes", st.file_bytes)
            .int("events", st.events)
            .int("bytes", st.bytes)
            .int("dead_letters", st.dead_letters)
            .int("quarantined", st.quarantined)
            .done();
        let upstreams: Vec<String> = self
            .upstreams
            .iter()
            .map(|u| {
                let history: Vec<String> = u
                    .history
                    .iter()
                    .map(|(ago, n)| format!("[{},{n}]", float(*ago)))
                    .collect();
                Obj::default()
                    .str("name", &u.name)
                    .str("state", u.state)
                    .int("backlog_events", u.backlog_events)
                    .int("backlog_bytes", u.backlog_bytes)
                    .float("oldest_age_seconds", u.oldest_age_seconds)
                    .float("drain_per_second", u.drain_per_second)
                    .num("forwarded", u.forwarded)
                    .raw(
                        "last_ack_age_seconds",
                        &u.last_ack_age_seconds.map_or("null".into(), float),
                    )
                    .num("dead_letters", u.dead_letters)
                    .num("stalls", u.stalls)
                    .raw("history", &format!("[{}]", history.join(",")))
                    .done()
            })
            .collect();
        Obj::default()
            .str("version", self.version)
            .str("gateway", &self.gateway)
            .raw("board", &self.board.as_deref().map_or("null".into(), quote))
            .num("uptime_seconds", self.uptime_seconds)
            .raw(
                "connections",
                &Obj::default().raw("mqtt", &mqtt).raw("nats", &nats).done(),
            )
            .raw("events", &events)
            .raw("store", &store)
            .raw("upstreams", &format!("[{}]", upstreams.join(",")))
            .done()
    }

    /// The human form (`ferry status`).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ferry {} on gateway {}{}, up {}",
            self.version,
            self.gateway,
            self.board
                .as_deref()
                .map(|b| format!(" (board {b})"))
                .unwrap_or_default(),
            duration(self.uptime_seconds)
        );
        let (m, n) = (&self.connections.mqtt, &self.connections.nats);
        let _ = writeln!(
            s,
            "connections: MQTT {} (tcp {}, tls {}, ws {}, wss {}), NATS {} (tcp {}, tls {})",
            m.tcp + m.tls + m.ws + m.wss,
            m.tcp,
            m.tls,
            m.ws,
            m.wss,
            n.tcp + n.tls,
            n.tcp,
            n.tls,
        );
        let e = &self.events;
        let _ = writeln!(
            s,
            "events: {}/s in, {}/s delivered locally ({} and {} since start)",
            e.received_per_second, e.delivered_per_second, e.received, e.delivered
        );
        let st = &self.store;
        let _ = writeln!(
            s,
            "store: {}, {} events ({}) in a {} file, {} dead letters, {} quarantined",
            if st.usable { "ok" } else { "UNAVAILABLE" },
            st.events,
            bytes(st.bytes),
            bytes(st.file_bytes),
            st.dead_letters,
            st.quarantined
        );
        if self.upstreams.is_empty() {
            let _ = writeln!(s, "upstreams: none");
        }
        for u in &self.upstreams {
            let last = match u.last_ack_age_seconds {
                Some(a) => format!("{a:.1}s ago"),
                None => "never since start".into(),
            };
            let _ = writeln!(
                s,
                "upstream {}: {}, backlog {} events ({}), oldest {:.1}s, draining {}/s, last acknowledged {}, {} forwarded, {} dead letters",
                u.name,
                u.state,
                u.backlog_events,
                bytes(u.backlog_bytes),
                u.oldest_age_seconds,
                u.drain_per_second,
                last,
                u.forwarded,
                u.dead_letters
            );
        }
        s
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3_600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 172_800 => format!("{}h {}m", s / 3_600, (s % 3_600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

fn bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    match b {
        b if b < 1024.0 => format!("{b} B"),
        b if b < 1024.0 * 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b if b < 1024.0 * 1024.0 * 1024.0 => format!("{:.1} MiB", b / 1048576.0),
        b => format!("{:.1} GiB", b / 1073741824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            version: "0.1.0",
            gateway: "gw-1".into(),
            board: Some("pi-zero-2w".into()),
            uptime_seconds: 3725,
            connections: Connections {
                mqtt: MqttConnections {
                    tcp: 2,
                    tls: 1,
                    ws: 0,
                    wss: 0,
                },
                nats: NatsConnections { tcp: 1, tls: 0 },
            },
            events: Events {
                received: 1000,
                received_per_second: 12.5,
                delivered: 900,
                delivered_per_second: 10.0,
            },
            store: StoreStatus {
                usable: true,
                file_bytes: 2097152,
                events: 40,
                bytes: 4096,
                dead_letters: 1,
                quarantined: 0,
            },
            upstreams: vec![UpstreamStatus {
                name: "cloud".into(),
                state: "down",
                backlog_events: 40,
                backlog_bytes: 4096,
                oldest_age_seconds: 61.5,
                drain_per_second: 0.0,
                forwarded: 960,
                last_ack_age_seconds: None,
                dead_letters: 1,
                stalls: 0,
                history: vec![(5.0, 38), (0.0, 40)],
            }],
        }
    }

    #[test]
    fn the_human_form_names_every_fact() {
        assert_eq!(
            sample().to_text(),
            "ferry 0.1.0 on gateway gw-1 (board pi-zero-2w), up 1h 2m\n\
             connections: MQTT 3 (tcp 2, tls 1, ws 0, wss 0), NATS 1 (tcp 1, tls 0)\n\
             events: 12.5/s in, 10/s delivered locally (1000 and 900 since start)\n\
             store: ok, 40 events (4.0 KiB) in a 2.0 MiB file, 1 dead letters, 0 quarantined\n\
             upstream cloud: down, backlog 40 events (4.0 KiB), oldest 61.5s, draining 0/s, last acknowledged never since start, 960 forwarded, 1 dead letters\n"
        );
    }

    #[test]
    fn the_json_form_parses_with_every_fact() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["board"], "pi-zero-2w");
        assert_eq!(v["connections"]["mqtt"]["tls"], 1);
        assert_eq!(v["events"]["received_per_second"], 12.5);
        assert_eq!(v["store"]["usable"], true);
        let u = &v["upstreams"][0];
        assert_eq!(u["last_ack_age_seconds"], serde_json::Value::Null);
        assert_eq!(u["oldest_age_seconds"], 61.5);
        assert_eq!(u["history"][0][1], 38);
        assert_eq!(u["history"][1][0], 0.0);
    }
}
