//! The `/health` answer: whether ferry can take events (the store) and, per upstream,
//! whether it is moving them (connected, backlog, age of the oldest owed event, time since
//! the last acknowledged progress, watchdog stalls).
//!
//! Rendered from figures the store and the links keep anyway (metrics atomics), so a probe
//! costs no store transaction and never waits on a link. Pure: the HTTP side only writes
//! the result.

use crate::metrics::UpstreamMetrics;
use serde::Serialize;
use std::sync::Arc;

/// The HTTP status and JSON body of one `/health` answer.
#[derive(Debug, PartialEq)]
pub struct Answer {
    /// 200, or 503 when the store is unusable (nothing can be accepted durably).
    pub code: u16,
    pub body: String,
}

#[derive(Serialize)]
struct Report<'a> {
    /// "ok": store usable and every upstream connected; "degraded": store usable, some
    /// upstream down; "unavailable": store unusable.
    status: &'static str,
    /// "ok" or "unavailable".
    store: &'static str,
    upstreams: Vec<Upstream<'a>>,
}

#[derive(Serialize)]
struct Upstream<'a> {
    name: &'a str,
    state: &'static str,
    backlog: u64,
    oldest_age_seconds: f64,
    /// `None` (JSON null) when nothing was acknowledged since ferry started.
    last_ack_age_seconds: Option<f64>,
    stalls: u64,
}

/// The answer for `upstreams` at wall-clock `now_ms`.
pub fn render(store_usable: bool, upstreams: &[Arc<UpstreamMetrics>], now_ms: u64) -> Answer {
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let upstreams: Vec<Upstream<'_>> = upstreams
        .iter()
        .map(|m| {
            let last_ack = u64::try_from(m.last_ack_ms.get()).unwrap_or(0);
            Upstream {
                name: &m.name,
                state: if m.connected.get() == 1 {
                    "connected"
                } else {
                    "down"
                },
                backlog: u64::try_from(m.backlog_events.get()).unwrap_or(0),
                oldest_age_seconds: seconds(u64::try_from(m.oldest_backlog_ms.get()).unwrap_or(0)),
                last_ack_age_seconds: (last_ack > 0)
                    .then(|| seconds(now_ms.saturating_sub(last_ack))),
                stalls: m.stalls.get(),
            }
        })
        .collect();
    let status = if !store_usable {
        "unavailable"
    } else if upstreams.iter().any(|u| u.state == "down") {
        "degraded"
    } else {
        "ok"
    };
    let report = Report {
        status,
        store: if store_usable { "ok" } else { "unavailable" },
        upstreams,
    };
    // Serializing plain strings and numbers cannot fail; keep the probe answering anyway.
    let mut body =
        serde_json::to_string(&report).unwrap_or_else(|_| format!("{{\"status\":\"{status}\"}}"));
    body.push('\n');
    Answer {
        code: if store_usable { 200 } else { 503 },
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn no_upstreams_and_a_usable_store_is_ok() {
        let a = render(true, &[], 1_000);
        assert_eq!(a.code, 200);
        assert_eq!(
            a.body,
            "{\"status\":\"ok\",\"store\":\"ok\",\"upstreams\":[]}\n"
        );
    }

    #[test]
    fn per_upstream_figures() {
        let m = Metrics::default();
        let up = m.upstream("cloud");
        up.connected.set(1);
        up.backlog_events.set(42);
        up.oldest_backlog_ms.set(1_500);
        up.last_ack_ms.set(97_750);
        up.stalls.add(2);
        let never = m.upstream("backup");
        never.backlog_events.set(3);
        let list = m.upstreams.lock().unwrap().clone();
        let a = render(true, &list, 100_000);
        assert_eq!(a.code, 200);
        assert_eq!(
            a.body,
            "{\"status\":\"degraded\",\"store\":\"ok\",\"upstreams\":[\
             {\"name\":\"cloud\",\"state\":\"connected\",\"backlog\":42,\"oldest_age_seconds\":1.5,\
             \"last_ack_age_seconds\":2.25,\"stalls\":2},\
             {\"name\":\"backup\",\"state\":\"down\",\"backlog\":3,\"oldest_age_seconds\":0.0,\
             \"last_ack_age_seconds\":null,\"stalls\":0}]}\n"
        );
        never.connected.set(1);
        let a = render(true, &list, 100_000);
        assert!(a.body.starts_with("{\"status\":\"ok\","), "{}", a.body);
    }

    #[test]
    fn an_unusable_store_is_503() {
        let m = Metrics::default();
        m.upstream("cloud").connected.set(1);
        let list = m.upstreams.lock().unwrap().clone();
        let a = render(false, &list, 1);
        assert_eq!(a.code, 503);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["status"], "unavailable");
        assert_eq!(v["store"], "unavailable");
        assert_eq!(v["upstreams"][0]["state"], "connected");
    }
}
