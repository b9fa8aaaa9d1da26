//! Scenarios 1 and 2: one publisher, one subscriber, same topic, on loopback. Throughput is
//! what the subscriber receives per second (first publish to last delivery) for N
//! messages sent as fast as the client allows; latency is measured at a fixed 1,000
//! messages/s so it is the broker's latency, not queueing.

use crate::mqtt_load::{self, PubSpec};
use crate::payload::{self, Tally};
use crate::procs::{Ferry, Mosquitto, NatsServer, ferry_base_config, free_port};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::Result;
use rumqttc::QoS;
use std::path::Path;
use std::time::Duration;

/// Pace of the latency runs.
const LATENCY_PACE: Duration = Duration::from_millis(1);

struct Figures {
    rate: f64,
    delivered: u64,
    sent: u64,
    p50: Option<f64>,
    p99: Option<f64>,
}

/// Throughput from the first publish to the last delivery, and what was lost.
fn throughput(t: &Tally, start_ns: u64, sent: u64, got: u64) -> (f64, u64) {
    let (_, last) = t.first_last_ns();
    let rate = payload::rate(got, Duration::from_nanos(last.saturating_sub(start_ns)));
    (rate, sent.saturating_sub(got))
}

async fn mqtt_run(port: u16, qos: QoS, size: usize, n: u64, n_lat: u64) -> Result<Figures> {
    let spec = PubSpec {
        qos,
        inflight: 100,
        size,
        pace: None,
    };
    let sub = mqtt_load::subscribe(port, &unique("sub"), "bench/t", qos, true).await?;
    let p = mqtt_load::publish(port, &unique("pub"), "bench/t", spec, n).await?;
    let got = sub
        .tally()
        .wait_for(n, Duration::from_secs(2), Duration::from_secs(120))
        .await;
    let (rate, _) = throughput(sub.tally(), p.start_ns, n, got);

    sub.tally().reset(true);
    let paced = PubSpec {
        pace: Some(LATENCY_PACE),
        ..spec
    };
    mqtt_load::publish(port, &unique("pub"), "bench/t", paced, n_lat).await?;
    sub.tally()
        .wait_for(n_lat, Duration::from_secs(2), Duration::from_secs(30))
        .await;
    let lat = payload::percentiles(sub.tally().take_latencies());
    sub.stop().await;
    Ok(Figures {
        rate,
        delivered: got,
        sent: n,
        p50: lat.map(|l| l.0 as f64),
        p99: lat.map(|l| l.1 as f64),
    })
}

async fn nats_run(port: u16, size: usize, n: u64, n_lat: u64) -> Result<Figures> {
    let sub = crate::nats_load::subscribe(port, "bench.t").await?;
    let start = crate::nats_load::publish(port, "bench.t", size, n, None).await?;
    let got = sub
        .tally()
        .wait_for(n, Duration::from_secs(2), Duration::from_secs(120))
        .await;
    let (rate, _) = throughput(sub.tally(), start, n, got);

    sub.tally().reset(true);
    crate::nats_load::publish(port, "bench.t", size, n_lat, Some(LATENCY_PACE)).await?;
    sub.tally()
        .wait_for(n_lat, Duration::from_secs(2), Duration::from_secs(30))
        .await;
    let lat = payload::percentiles(sub.tally().take_latencies());
    sub.stop().await;
    Ok(Figures {
        rate,
        delivered: got,
        sent: n,
        p50: lat.map(|l| l.0 as f64),
        p99: lat.map(|l| l.1 as f64),
    })
}

fn loss_note(f: &Figures, peer: &Figures, peer_name: &str) -> String {
    let mut parts = Vec::new();
    for (who, x) in [("ferry", f), (peer_name, peer)] {
        if x.delivered < x.sent {
            parts.push(format!(
                "{who} delivered {} of {} (rest dropped as slow-subscriber overflow)",
                x.delivered, x.sent
            ));
        }
    }
    parts.join(", ")
}

fn rows(
    scenario: &'static str,
    label: &str,
    peer_name: &'static str,
    f: &Figures,
    p: &Figures,
    target: Option<f64>,
) -> Vec<Row> {
    let mut thr = Row::new(
        scenario,
        format!("{label} throughput"),
        "msg/s",
        Better::Higher,
    )
    .ferry(f.rate)
    .peer(peer_name, Some(p.rate))
    .note(loss_note(f, p, peer_name));
    if let Some(t) = target {
        thr = thr.target(t);
    }
    let mut out = vec![thr];
    for (name, fv, pv) in [("p50", f.p50, p.p50), ("p99", f.p99, p.p99)] {
        let mut r = Row::new(
            scenario,
            format!("{label} latency {name} at 1,000 msg/s"),
            "us",
            Better::Lower,
        )
        .peer(peer_name, pv);
        r.ferry = fv;
        out.push(r);
    }
    out
}

fn size_label(size: usize) -> &'static str {
    if size >= 1024 { "1 KiB" } else { "64 B" }
}

/// ferry vs mosquitto, rumqttc v4 clients, QoS 0 and 1, 64 B and 1 KiB.
pub async fn mqtt(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let ferry = Ferry::start(dir, &ferry_base_config(dir))?;
    let mosquitto = Mosquitto::start(dir, free_port()?, false)?;
    let (n, n_lat) = (scale.n(100_000), scale.n(3_000));
    let mut out = Vec::new();
    let combos = [
        (QoS::AtMostOnce, 64),
        (QoS::AtMostOnce, 1024),
        (QoS::AtLeastOnce, 64),
        (QoS::AtLeastOnce, 1024),
    ];
    for (i, (qos, size)) in combos.into_iter().enumerate() {
        let label = format!("QoS {} {}", qos as u8, size_label(size));
        eprintln!("  mqtt-pubsub {label}");
        // Alternate which broker goes first, so neither always runs on a warmer machine.
        let (f, p) = if i % 2 == 0 {
            let f = mqtt_run(ferry.mqtt.port(), qos, size, n, n_lat).await?;
            (f, mqtt_run(mosquitto.port, qos, size, n, n_lat).await?)
        } else {
            let p = mqtt_run(mosquitto.port, qos, size, n, n_lat).await?;
            (mqtt_run(ferry.mqtt.port(), qos, size, n, n_lat).await?, p)
        };
        let target = (qos == QoS::AtMostOnce).then_some(1.5);
        out.extend(rows("mqtt-pubsub", &label, "mosquitto", &f, &p, target));
    }
    Ok(out)
}

/// ferry vs nats-server (core NATS, which has no QoS 1: its at-least-once path is
/// JetStream, measured in durable-ingest), async-nats clients, 64 B and 1 KiB.
pub async fn nats(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let ferry = Ferry::start(dir, &ferry_base_config(dir))?;
    let server = NatsServer::start(free_port()?, None)?;
    let (n, n_lat) = (scale.n(200_000), scale.n(3_000));
    let mut out = Vec::new();
    for (i, size) in [64usize, 1024].into_iter().enumerate() {
        let label = format!("core {}", size_label(size));
        eprintln!("  nats-pubsub {label}");
        let (f, p) = if i % 2 == 0 {
            let f = nats_run(ferry.nats.port(), size, n, n_lat).await?;
            (f, nats_run(server.port, size, n, n_lat).await?)
        } else {
            let p = nats_run(server.port, size, n, n_lat).await?;
            (nats_run(ferry.nats.port(), size, n, n_lat).await?, p)
        };
        out.extend(rows("nats-pubsub", &label, "nats-server", &f, &p, None));
    }
    Ok(out)
}
