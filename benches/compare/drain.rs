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
const VARIANTS: [(&str, &str); 2] = [
    ("", "MQTT 5 upstream (default, with ferry-id)"),
    (
        "protocol = \"3.1.1\"\n",
        "MQTT 3.1.1 upstream (no ferry-id)",
    ),
];

struct Drained {
    label: &'static str,
    rate: f64,
    note: String,
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
        let s = mqtt_load::subscribe(port, CHECKER, "site-a/#", QoS::AtLeastOnce, false).await?;
        s.tally().reset(false);
        let got = s
            .tally()
            .wait_for(n, Duration::from_secs(15), Duration::from_secs(600))
            .await;
        let (first, last) = s.tally().first_last_ns();
        let drain_rate = payload::rate(
            got.saturating_sub(1),
            Duration::from_nanos(last.saturating_sub(first)),
        );
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
        drains.push(Drained {
            label,
            rate: drain_rate,
            note,
        });
        sub = Some(s);
    }
    let Some(sub) = sub else {
        anyhow::bail!("no drain ran");
    };

    eprintln!("  drain: direct publisher, {n_direct} events");
    sub.tally().reset(false);
    let spec = PubSpec {
        qos: QoS::AtLeastOnce,
        inflight: 256,
        size: EVENT,
        pace: None,
    };
    mqtt_load::publish(port, &unique("direct"), "site-a/direct", spec, n_direct).await?;
    let got_direct = sub
        .tally()
        .wait_for(n_direct, Duration::from_secs(15), Duration::from_secs(300))
        .await;
    let (first_d, last_d) = sub.tally().first_last_ns();
    let direct_rate = payload::rate(
        got_direct.saturating_sub(1),
        Duration::from_nanos(last_d.saturating_sub(first_d)),
    );
    sub.stop().await;
    let direct_note = format!(
        "direct publisher: {got_direct} of {n_direct} received, rumqttc MQTT 3.1.1 QoS 1, 256 in flight (ferry's upstream.inflight)"
    );

    let n = n / 4 * 4;
    let mut rows: Vec<Row> = drains
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let row = Row::new(
                "drain",
                format!(
                    "drain of a {n}-event backlog ({EVENT} B) to upstream mosquitto, {}",
                    d.label
                ),
                "msg/s",
                Better::Higher,
            )
            .ferry(d.rate)
            .peer(
                "direct QoS 1 publisher into the same mosquitto",
                Some(direct_rate),
            )
            .note(format!("{}; {direct_note}", d.note));
            // The target is for the default configuration.
            if i == 0 { row.target(0.8) } else { row }
        })
        .collect();
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
