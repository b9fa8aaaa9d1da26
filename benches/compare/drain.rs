//! Scenario 4: ferry drains a backlog stored while its upstream mosquitto was down; the
//! rate is compared with a direct QoS 1 publisher into the same mosquitto, seen by the
//! same subscriber. Both rates run from the first to the last message that subscriber
//! receives, so ferry's reconnect delay is reported separately, not hidden in the rate.

use crate::mqtt_load::{self, PubSpec};
use crate::payload;
use crate::procs::{
    Ferry, Mosquitto, ferry_base_config, ferry_forward_config, free_port, wait_until,
};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::Result;
use rumqttc::QoS;
use std::path::Path;
use std::time::Duration;

const EVENT: usize = 100;
/// The subscriber's persistent session on the upstream: it exists before ferry connects,
/// so nothing forwarded in the first milliseconds is missed.
const CHECKER: &str = "bench-checker";

/// Fills ferry's store with `n` events (upstream down) as fast as ferry takes them;
/// returns the rate. Shared with the memory scenario.
pub async fn fill(ferry: &Ferry, n: u64) -> Result<f64> {
    let spec = PubSpec {
        qos: QoS::AtLeastOnce,
        inflight: 256,
        size: EVENT,
        pace: None,
    };
    // Every PUBACK came after its commit, so the store holds all of them now.
    mqtt_load::ingest(
        ferry.mqtt.port(),
        &unique("fill"),
        "sensors/bench",
        4,
        spec,
        n,
    )
    .await
}

/// The upstream settings the drain is measured with: the default (MQTT 5, every event
/// carrying the `ferry-id` user property) and MQTT 3.1.1, which is what the direct
/// publisher speaks, so the cost of the protocol and the property shows on its own.
const VARIANTS: [(&str, &str); 3] = [
    ("", "MQTT 5 upstream (default, with ferry-id)"),
    (
        "protocol = \"3.1.1\"\n",
        "MQTT 3.1.1 upstream (no ferry-id)",
    ),
    (
        "pack = \"ferry-batch-v1\"\ncompression = \"lz4\"\npack_topic = \"site-a/batch\"\n",
        PACKED,
    ),
];

/// The packed variant: its rate counts events decoded by the subscriber from the batches.
const PACKED: &str = "packed upstream (ferry-batch-v1, lz4, 256 events per batch, MQTT 5)";

struct Drained {
    label: &'static str,
    rate: f64,
    note: String,
}

/// Waits until `sub` received `n` messages (or arrivals stalled); returns how many came
/// and their rate, first to last arrival.
async fn received(sub: &mqtt_load::Sub, n: u64, limit_s: u64) -> (u64, f64) {
    let got = sub
        .tally()
        .wait_for(n, Duration::from_secs(15), Duration::from_secs(limit_s))
        .await;
    let (first, last) = sub.tally().first_last_ns();
    let rate = payload::rate(
        got.saturating_sub(1),
        Duration::from_nanos(last.saturating_sub(first)),
    );
    (got, rate)
}

pub async fn run(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let n = scale.n(1_000_000);
    let n_direct = scale.n(200_000);
    let port = free_port()?;
    let mut upstream = Mosquitto::start(dir, port, true)?;
    mqtt_load::subscribe(port, CHECKER, "site-a/#", QoS::AtLeastOnce, false)
        .await?
        .stop()
        .await;
    upstream.stop()?;

    let mut drains = Vec::new();
    let mut fill_rate = 0.0;
    let mut sub: Option<mqtt_load::Sub> = None;
    for (i, (extra, label)) in VARIANTS.into_iter().enumerate() {
        if let Some(s) = sub.take() {
            s.stop().await;
            upstream.stop()?;
        }
        let fdir = dir.join(format!("drain-{i}"));
        std::fs::create_dir_all(&fdir)?;
        let client = "client_id = \"ferry-bench\"\n";
        let config = format!(
            "{}{}",
            ferry_base_config(&fdir),
            ferry_forward_config(port).replace(client, &format!("{client}{extra}"))
        );
        let ferry = Ferry::start(&fdir, &config)?;
        eprintln!("  drain ({label}): filling {n} events");
        let rate = fill(&ferry, n).await?;
        if i == 0 {
            fill_rate = rate;
        }
        let n = n / 4 * 4;

        eprintln!("  drain: upstream up");
        let up_at = payload::now_ns();
        upstream.restart()?;
        let packed = label == PACKED;
        let s =
            mqtt_load::subscribe_with(port, CHECKER, "site-a/#", QoS::AtLeastOnce, false, packed)
                .await?;
        s.tally().reset(false);
        let (got, drain_rate) = received(&s, n, 600).await;
        let (batch_bytes, broken) = s.tally().batches();
        let (first, last) = s.tally().first_last_ns();
        let to_first_ms = first.saturating_sub(up_at) / 1_000_000;
        let total_s = last.saturating_sub(up_at) as f64 / 1e9;
        // The link is up now, so the backlog gauge is current (it is refreshed every 50 ms).
        let drained = wait_until(Duration::from_secs(5), "backlog gauge to reach 0", || {
            ferry.drained(n)
        });
        let backlog_after = ferry.metric("ferry_upstream_backlog_events").ok();
        drop(ferry);
        let mut note = format!(
            "{got} of {n} drained events received; first after {to_first_ms} ms, all after {total_s:.1} s"
        );
        if let (Err(_), Some(b)) = (&drained, backlog_after) {
            note.push_str(&format!("; ferry backlog gauge still {b}"));
        }
        if packed {
            let w = batch_bytes as f64 / got.max(1) as f64;
            note.push_str(&format!(
                "; {w:.1} B of batch payload per event ({broken} batches did not decode)"
            ));
        }
        // A throughput counts only when every event arrived.
        let rate = if got >= n && broken == 0 {
            drain_rate
        } else {
            0.0
        };
        drains.push(Drained { label, rate, note });
        sub = Some(s);
    }
    let Some(sub) = sub else {
        anyhow::bail!("no drain ran");
    };
    // The last drain's subscriber may count batches: the direct publishers' messages are
    // counted one by one, by a plain subscriber on the same session.
    sub.stop().await;
    let sub = mqtt_load::subscribe(port, CHECKER, "site-a/#", QoS::AtLeastOnce, false).await?;

    eprintln!("  drain: direct publisher, {n_direct} events");
    sub.tally().reset(false);
    let spec = PubSpec {
        qos: QoS::AtLeastOnce,
        inflight: 256,
        size: EVENT,
        pace: None,
    };
    mqtt_load::publish(port, &unique("direct"), "site-a/direct", spec, n_direct).await?;
    let (got_direct, direct_rate) = received(&sub, n_direct, 300).await;
    sub.stop().await;

    // The like-for-like peer of the default link: MQTT 5, the same user property.
    eprintln!("  drain: direct MQTT 5 publisher with ferry-id, {n_direct} events");
    let sub = mqtt_load::subscribe(port, CHECKER, "site-a/#", QoS::AtLeastOnce, false).await?;
    sub.tally().reset(false);
    crate::mqtt5_load::publish(
        port,
        &unique("direct5"),
        "site-a/direct5",
        256,
        EVENT,
        n_direct,
    )
    .await?;
    let (got_direct5, direct5_rate) = received(&sub, n_direct, 300).await;
    sub.stop().await;

    let direct_note = |v: &str, got: u64| {
        format!(
            "direct publisher: {got} of {n_direct} received, rumqttc {v} QoS 1, 256 in flight (ferry's upstream.inflight)"
        )
    };
    let n = n / 4 * 4;
    let mut rows = Vec::new();
    for (i, d) in drains.into_iter().enumerate() {
        if d.label == PACKED {
            rows.push(
                Row::new(
                    "drain",
                    format!(
                        "drain of a {n}-event backlog ({EVENT} B) to upstream mosquitto, {}, events decoded at the cloud",
                        d.label
                    ),
                    "msg/s",
                    Better::Higher,
                )
                .ferry(d.rate)
                .peer(
                    "direct MQTT 3.1.1 QoS 1 publisher, a message per event, same mosquitto",
                    Some(direct_rate),
                )
                .target(5.0)
                .note(format!(
                    "{}; a message per event is {} B of payload; {}",
                    d.note,
                    EVENT,
                    direct_note("MQTT 3.1.1", got_direct)
                )),
            );
            continue;
        }
        let figure = format!(
            "drain of a {n}-event backlog ({EVENT} B) to upstream mosquitto, {}",
            d.label
        );
        let row = |peer: &'static str, rate: f64, note: String| {
            Row::new("drain", figure.clone(), "msg/s", Better::Higher)
                .ferry(d.rate)
                .peer(peer, Some(rate))
                .note(format!("{}; {note}", d.note))
        };
        if i == 0 {
            // The target compares like with like: the same protocol and bytes on the wire.
            rows.push(
                row(
                    "direct MQTT 5 QoS 1 publisher, same ferry-id property, same mosquitto",
                    direct5_rate,
                    direct_note("MQTT 5 with a ferry-id user property", got_direct5),
                )
                .target(0.8),
            );
        }
        rows.push(row(
            "direct MQTT 3.1.1 QoS 1 publisher into the same mosquitto",
            direct_rate,
            direct_note("MQTT 3.1.1", got_direct),
        ));
    }
    rows.push(
        Row::new(
            "drain",
            format!("backlog fill (durable ingest, 4 publishers x 256 in flight, {EVENT} B)"),
            "msg/s",
            Better::Higher,
        )
        .ferry(fill_rate),
    );
    Ok(rows)
}
