//! Scenarios 3 and 6: durable QoS 1 ingest (ferry stores every event for a forwarding rule
//! whose upstream is down and sends PUBACK after the group commit's fsync) against
//! mosquitto's non-durable QoS 1 and nats-server JetStream's file store; and the bytes each
//! durable broker writes to disk per byte of payload.

use crate::mqtt_load::{self, PubSpec};
use crate::nats_load;
use crate::procs::{
    Ferry, Mosquitto, NatsServer, ferry_base_config, ferry_forward_config, free_port,
    write_bytes_of,
};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::Result;
use rumqttc::QoS;
use std::path::Path;
use std::time::Duration;

/// The event size of the backlog scenario.
const EVENT: usize = 100;

fn qos1(inflight: u16) -> PubSpec {
    PubSpec {
        qos: QoS::AtLeastOnce,
        inflight,
        size: EVENT,
        pace: None,
    }
}

/// ferry with its upstream down, so every event stays in the store.
fn durable_ferry(dir: &Path, store_extra: &str) -> Result<Ferry> {
    durable_ferry_on(dir, None, store_extra)
}

/// `durable_ferry` with `board = "<board>"`: that profile's defaults.
fn durable_ferry_on(dir: &Path, board: Option<&str>, store_extra: &str) -> Result<Ferry> {
    std::fs::create_dir_all(dir)?;
    // Nothing listens on this port: the upstream is down for the whole run.
    let dead = free_port()?;
    let top = board.map_or(String::new(), |b| format!("board = \"{b}\"\n"));
    let config = format!(
        "{top}{}{store_extra}{}",
        ferry_base_config(dir),
        ferry_forward_config(dead)
    );
    Ferry::start(dir, &config)
}

pub async fn ingest(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let ferry = durable_ferry(&dir.join("ferry"), "")?;
    let mosquitto = Mosquitto::start(dir, free_port()?, false)?;
    let nats = NatsServer::start(free_port()?, Some(&dir.join("jetstream")))?;
    nats_load::jetstream_stream(nats.port, "sensors.>").await?;
    let n = scale.n(100_000);
    let mut out = Vec::new();
    for (i, publishers) in [1u64, 4].into_iter().enumerate() {
        let label = format!(
            "QoS 1 ingest, {EVENT} B, {publishers} publisher{} x 100 in flight",
            if publishers > 1 { "s" } else { "" }
        );
        eprintln!("  durable-ingest {label}");
        let (tag_f, tag_m) = (unique("f"), unique("m"));
        let f_run = || {
            mqtt_load::ingest(
                ferry.mqtt.port(),
                &tag_f,
                "sensors/bench",
                publishers,
                qos1(100),
                n,
            )
        };
        let m_run = || {
            mqtt_load::ingest(
                mosquitto.port,
                &tag_m,
                "sensors/bench",
                publishers,
                qos1(100),
                n,
            )
        };
        let j_run =
            || nats_load::jetstream_ingest(nats.port, "sensors.bench", publishers, EVENT, n, 100);
        let (f, m, j) = if i % 2 == 0 {
            let f = f_run().await?;
            let m = m_run().await?;
            (f, m, j_run().await?)
        } else {
            let j = j_run().await?;
            let m = m_run().await?;
            (f_run().await?, m, j)
        };
        out.push(
            Row::new("durable-ingest", label.clone(), "msg/s", Better::Higher)
                .ferry(f)
                .peer("mosquitto QoS 1 (not durable)", Some(m))
                .target(1.0),
        );
        out.push(
            Row::new("durable-ingest", label, "msg/s", Better::Higher)
                .ferry(f)
                .peer("nats-server JetStream file store", Some(j))
                .note(
                    "JetStream acks before fsync: nats-server 2.9 syncs its file store every 2 min",
                ),
        );
    }
    Ok(out)
}

/// Bytes `pid` writes while `run` runs (plus one second for write-back of the last
/// commit's metadata), per payload byte.
async fn amplification<F: std::future::Future<Output = Result<()>>>(
    pid: u32,
    payload_bytes: u64,
    run: F,
) -> Result<f64> {
    let before = write_bytes_of(pid)?;
    run.await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = write_bytes_of(pid)?;
    Ok(after.saturating_sub(before) as f64 / payload_bytes.max(1) as f64)
}

pub async fn write_amplification(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let secs = if scale.quick { 3 } else { 10 };
    let paced_n = secs * 1000;
    let full_n = scale.n(50_000);
    let paced = PubSpec {
        pace: Some(Duration::from_millis(1)),
        ..qos1(100)
    };
    let mut out = Vec::new();

    let nats = NatsServer::start(free_port()?, Some(&dir.join("jetstream")))?;
    nats_load::jetstream_stream(nats.port, "sensors.>").await?;
    let ferry = durable_ferry(&dir.join("ferry"), "")?;
    let port = ferry.mqtt.port();

    eprintln!("  write-amplification at 1,000 events/s ({secs} s)");
    let f_paced = amplification(ferry.pid(), paced_n * EVENT as u64, async {
        mqtt_load::publish(port, &unique("wa"), "sensors/bench", paced, paced_n).await?;
        Ok(())
    })
    .await?;
    let j_paced = amplification(
        nats.pid(),
        paced_n * EVENT as u64,
        nats_load::jetstream_publish(
            nats.port,
            "sensors.bench",
            EVENT,
            paced_n,
            100,
            Some(Duration::from_millis(1)),
        ),
    )
    .await?;
    let js_note = "JetStream acks before fsync, so its pages are written back once, not per commit";
    out.push(
        Row::new(
            "write-amplification",
            format!(
                "disk bytes written per payload byte, 1,000 events/s of {EVENT} B for {secs} s"
            ),
            "x",
            Better::Lower,
        )
        .ferry(f_paced)
        .peer("nats-server JetStream file store", Some(j_paced))
        .note(js_note),
    );

    eprintln!("  write-amplification at full speed ({full_n} events)");
    let mut f_rate = 0.0;
    let f_full = amplification(ferry.pid(), full_n * EVENT as u64, async {
        f_rate =
            mqtt_load::ingest(port, &unique("wa"), "sensors/bench", 4, qos1(100), full_n).await?;
        Ok(())
    })
    .await?;
    let mut j_rate = 0.0;
    let j_full = amplification(nats.pid(), full_n * EVENT as u64, async {
        j_rate =
            nats_load::jetstream_ingest(nats.port, "sensors.bench", 4, EVENT, full_n, 100).await?;
        Ok(())
    })
    .await?;
    out.push(
        Row::new(
            "write-amplification",
            format!("disk bytes written per payload byte, full speed, 4 publishers x 100 in flight, {EVENT} B"),
            "x",
            Better::Lower,
        )
        .ferry(f_full)
        .peer("nats-server JetStream file store", Some(j_full))
        .note(format!(
            "reached {f_rate:.0} msg/s (ferry) and {j_rate:.0} msg/s (JetStream); {js_note}"
        )),
    );
    drop(ferry);

    for board in ["rpi-zero-w", "rpi-4"] {
        eprintln!("  write-amplification at 1,000 events/s with board = \"{board}\"");
        let profiled = durable_ferry_on(&dir.join(format!("ferry-{board}")), Some(board), "")?;
        let port = profiled.mqtt.port();
        let before = profiled.metric("ferry_store_fsyncs_total")?;
        let f_board = amplification(profiled.pid(), paced_n * EVENT as u64, async {
            mqtt_load::publish(port, &unique("wa"), "sensors/bench", paced, paced_n).await?;
            Ok(())
        })
        .await?;
        let fsyncs = profiled.metric("ferry_store_fsyncs_total")? - before;
        out.push(
            Row::new(
                "write-amplification",
                format!("same at 1,000 events/s, ferry with board = \"{board}\" (its store.max_fsyncs_per_sec)"),
                "x",
                Better::Lower,
            )
            .ferry(f_board)
            .peer("nats-server JetStream file store", Some(j_paced))
            .at_most(8.0)
            .note(format!(
                "{fsyncs} fsyncs in {secs} s; {:.1} GB a day at this rate (JetStream: {:.1} GB)",
                f_board * 1000.0 * EVENT as f64 * 86_400.0 / 1e9,
                j_paced * 1000.0 * EVENT as f64 * 86_400.0 / 1e9
            )),
        );
    }
    Ok(out)
}
