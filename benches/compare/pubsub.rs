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

/// Throughput runs per broker and figure.
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Pace of the latency runs.
const LATENCY_PACE: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Figures {
    rate: f64,
    delivered: u64,
    sent: u64,
    p50: Option<f64>,
    p99: Option<f64>,
    latencies: Vec<u32>,
}

#[derive(Clone, Copy)]
enum Proto {
    /// The QoS, and the filter the subscriber uses (the publisher sends on `bench/t`).
    Mqtt(QoS, &'static str),
    Nats,
}

/// One subscriber (connected and subscribed before anything is sent), one publisher of
/// `n` messages; returns the tally once all arrived or arrivals stalled, and the
/// publisher's start time.
async fn one_run(
    proto: Proto,
    port: u16,
    size: usize,
    n: u64,
    pace: Option<Duration>,
) -> Result<(Tally, u64)> {
    let stall = Duration::from_secs(2);
    let limit = Duration::from_secs(120);
    match proto {
        Proto::Mqtt(qos, filter) => {
            let spec = PubSpec {
                qos,
                inflight: 100,
                size,
                pace,
            };
            let sub = mqtt_load::subscribe(port, &unique("sub"), filter, qos, true).await?;
            sub.tally().reset(pace.is_some());
            let p = mqtt_load::publish(port, &unique("pub"), "bench/t", spec, n).await?;
            sub.tally().wait_for(n, stall, limit).await;
            let t = sub.tally().snapshot();
            sub.stop().await;
            Ok((t, p.start_ns))
        }
        Proto::Nats => {
            let sub = crate::nats_load::subscribe(port, "bench.t").await?;
            sub.tally().reset(pace.is_some());
            let start = crate::nats_load::publish(port, "bench.t", size, n, pace).await?;
            sub.tally().wait_for(n, stall, limit).await;
            let t = sub.tally().snapshot();
            sub.stop().await;
            Ok((t, start))
        }
    }
}

/// Throughput (first publish to last delivery) and latency of `proto` on ferry and on
/// the peer. Throughput is the median of [`ROUNDS`] runs each; latency runs in four quarters,
/// first-other-other-first, so that a burst of load from elsewhere on the machine does
/// not land on one broker only.
async fn compare(
    proto: Proto,
    ferry: u16,
    peer: u16,
    size: usize,
    n: u64,
    n_lat: u64,
    ferry_first: bool,
) -> Result<(Figures, Figures)> {
    let (mut f, mut p) = (Figures::default(), Figures::default());
    let order = if ferry_first {
        [true, false, false, true]
    } else {
        [false, true, true, false]
    };
    // Throughput: ROUNDS rounds, alternating which goes first; the median rate counts,
    // so one burst of load from elsewhere on the machine does not decide the ratio.
    let (mut f_rates, mut p_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let pair = if round % 2 == 0 {
            &order[..2]
        } else {
            &order[2..]
        };
        for is_ferry in pair {
            let (port, fig, rates) = if *is_ferry {
                (ferry, &mut f, &mut f_rates)
            } else {
                (peer, &mut p, &mut p_rates)
            };
            let (t, start) = one_run(proto, port, size, n, None).await?;
            let (_, last) = t.first_last_ns();
            fig.delivered += t.count();
            fig.sent += n;
            rates.push(payload::rate(
                t.count(),
                Duration::from_nanos(last.saturating_sub(start)),
            ));
        }
    }
    f.rate = median(f_rates);
    p.rate = median(p_rates);
    for is_ferry in order {
        let (port, fig) = if is_ferry {
            (ferry, &mut f)
        } else {
            (peer, &mut p)
        };
        let (t, _) = one_run(proto, port, size, (n_lat / 2).max(1), Some(LATENCY_PACE)).await?;
        fig.latencies.extend(t.take_latencies());
    }
    for fig in [&mut f, &mut p] {
        let lat = payload::percentiles(std::mem::take(&mut fig.latencies));
        fig.p50 = lat.map(|l| l.0 as f64);
        fig.p99 = lat.map(|l| l.1 as f64);
    }
    Ok((f, p))
}

/// Delivered/sent of both brokers, for every throughput row; a broker that lost any
/// message has its throughput left out (a rate counts only when everything arrived).
fn loss_note(f: &Figures, peer: &Figures, peer_name: &str) -> String {
    let mut parts = Vec::new();
    for (who, x) in [("ferry", f), (peer_name, peer)] {
        let lost = if x.delivered < x.sent {
            " (lost some: throughput not counted)"
        } else {
            ""
        };
        parts.push(format!("{who} delivered {}/{}{lost}", x.delivered, x.sent));
    }
    parts.join(", ")
}

/// The throughput of `x`, if every message arrived.
fn counted(x: &Figures) -> Option<f64> {
    (x.delivered >= x.sent).then_some(x.rate)
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
    .peer(peer_name, counted(p))
    .note(loss_note(f, p, peer_name));
    thr.ferry = counted(f);
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
        let (f, p) = compare(
            Proto::Mqtt(qos, "bench/t"),
            ferry.mqtt.port(),
            mosquitto.port,
            size,
            n,
            n_lat,
            i % 2 == 0,
        )
        .await?;
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
        let (f, p) = compare(
            Proto::Nats,
            ferry.nats.port(),
            server.port,
            size,
            n,
            n_lat,
            i % 2 == 0,
        )
        .await?;
        out.extend(rows("nats-pubsub", &label, "nats-server", &f, &p, None));
    }
    Ok(out)
}

/// The cost of `[[acl]]` on the delivery path: ferry with access rules against ferry
/// without, in the same run, QoS 0 64 B. A subscription the rules wholly allow must cost
/// nothing per message (ratio about 1); one they allow only in part (`bench/+` while
/// `bench/secret` is denied) pays a rule walk per delivery.
pub async fn acl(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let (with_dir, without_dir) = (dir.join("acl"), dir.join("plain"));
    std::fs::create_dir_all(&with_dir)?;
    std::fs::create_dir_all(&without_dir)?;
    // Queues large enough that nothing is dropped: the two throughputs then compare the
    // same work (every message delivered), and only the access check differs.
    let roomy = |dir: &Path| {
        ferry_base_config(dir).replace(
            "[mqtt]\n",
            "[mqtt]\nmax_queued = 1000000\nmax_queued_bytes = \"1GiB\"\n",
        ) + "[limits]\nmemory = \"4GiB\"\n"
    };
    let rules = "[auth]\nallow_anonymous = true\n\
                 [[acl]]\nfilter = \"bench/secret\"\naction = \"subscribe\"\nallow = false\n\
                 [[acl]]\nfilter = \"private/#\"\naction = \"all\"\nallow = false\n";
    let with = Ferry::start(&with_dir, &(roomy(&with_dir) + rules))?;
    let without = Ferry::start(&without_dir, &roomy(&without_dir))?;
    let (n, n_lat) = (scale.n(100_000), scale.n(3_000));
    let mut out = Vec::new();
    for (i, (filter, label)) in [
        (
            "bench/t",
            "QoS 0 64 B, subscription wholly allowed (no check per message)",
        ),
        (
            "bench/+",
            "QoS 0 64 B, subscription partly allowed (rules checked per message)",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        eprintln!("  acl {label}");
        let (f, p) = compare(
            Proto::Mqtt(QoS::AtMostOnce, filter),
            with.mqtt.port(),
            without.mqtt.port(),
            64,
            n,
            n_lat,
            i % 2 == 0,
        )
        .await?;
        out.extend(rows("acl", label, "ferry without [[acl]]", &f, &p, None));
    }
    Ok(out)
}
