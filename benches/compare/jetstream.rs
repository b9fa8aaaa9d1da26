//! Scenario: draining into a real 3-node JetStream cluster (R3 streams, loopback).
//!
//! - One gateway: ferry drains a backlog into an R3 stream; the peer is a direct async-nats
//!   JetStream publisher with the same window (256 acks pending) into another R3 stream on
//!   the same cluster. Both rates come from the stream's own first and last message
//!   timestamps, so ferry's reconnect delay is not in its rate, and count only when the
//!   stream holds exactly every message.
//! - Ten gateways: ten ferry processes with distinct gateway ids drain their backlogs into
//!   one stream at once; aggregate events/s, each gateway's drain time, beside ten direct
//!   publishers at once.
//!
//! A backlog is made without stopping the cluster: ferry's rule points at subjects no stream
//! takes yet, which JetStream answers with "no responders" (the upstream unavailable: the
//! events wait in ferry's store). Creating the stream starts the drain.

use crate::nats_load;
use crate::procs::{Ferry, NatsCluster, ferry_base_config};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::{Result, bail};
use async_nats::jetstream;
use std::path::Path;
use std::time::{Duration, Instant};

const EVENT: usize = 100;
const GATEWAYS: usize = 10;

/// An R3 stream `name` on `subject`, with a 10-minute duplicate window; retried while the
/// cluster elects its leaders.
async fn create_stream(port: u16, name: &str, subject: &str) -> Result<jetstream::Context> {
    let client = async_nats::connect(format!("127.0.0.1:{port}")).await?;
    let js = jetstream::new(client);
    let config = jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        num_replicas: 3,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(_) => return Ok(js),
            Err(e) if Instant::now() >= deadline => bail!("create stream {name}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Messages in stream `name`, and its rate from first to last message timestamp.
async fn stream_rate(js: &jetstream::Context, name: &str) -> Result<(u64, f64)> {
    let mut s = js
        .get_stream(name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = s.info().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let span = info.state.last_timestamp - info.state.first_timestamp;
    let secs = span.as_seconds_f64().max(1e-9);
    Ok((
        info.state.messages,
        info.state.messages.saturating_sub(1) as f64 / secs,
    ))
}

/// Waits until stream `name` holds `n` messages (or `limit` passes).
async fn wait_messages(js: &jetstream::Context, name: &str, n: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let got = stream_rate(js, name).await.map(|(m, _)| m).unwrap_or(0);
        if got >= n || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A ferry forwarding `sensors/#` to the cluster as `<prefix>/{topic}`, with gateway id `id`.
fn gateway(dir: &Path, cluster: &NatsCluster, id: &str, prefix: &str) -> Result<Ferry> {
    let gdir = dir.join(id);
    std::fs::create_dir_all(&gdir)?;
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[gateway]\nid = \"{id}\"\n\
         [[upstream]]\nname = \"js\"\nurls = {}\nbackoff_min = \"20ms\"\nbackoff_max = \"200ms\"\n\
         [[forward]]\nupstream = \"js\"\nfilter = \"sensors/#\"\ntopic = \"{prefix}/{{topic}}\"\nqos = 1\n",
        ferry_base_config(&gdir),
        cluster.toml_urls()
    );
    Ferry::start(&gdir, &config)
}

pub async fn run(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let n = scale.n(200_000) / 4 * 4;
    let each = scale.n(20_000) / 4 * 4;
    let cluster = NatsCluster::start(dir, 3)?;
    let port = cluster.ports[0];
    let mut rows = Vec::new();

    // One gateway.
    eprintln!("  jetstream: filling one gateway with {n} events");
    let ferry = gateway(dir, &cluster, "gw-one", "one")?;
    crate::drain::fill(&ferry, n).await?;
    let started = Instant::now();
    let js = create_stream(port, "ONE", "one.>").await?;
    let got = wait_messages(&js, "ONE", n, Duration::from_secs(600)).await;
    let total_s = started.elapsed().as_secs_f64();
    let (stored, rate) = stream_rate(&js, "ONE").await?;
    let acked = ferry.metric("ferry_upstream_forwarded_total")?;
    drop(ferry);
    eprintln!("  jetstream: direct publisher, {n} events");
    create_stream(port, "DIRECT", "direct.>").await?;
    nats_load::jetstream_publish(port, "direct.bench", EVENT, n, 256, None).await?;
    let (direct_stored, direct_rate) = stream_rate(&js, "DIRECT").await?;
    let exact = stored == n && direct_stored == n;
    rows.push(
        Row::new(
            "jetstream",
            format!("drain of a {n}-event backlog ({EVENT} B) into an R3 stream, 3-node JetStream cluster"),
            "msg/s",
            Better::Higher,
        )
        .ferry(if exact { rate } else { 0.0 })
        .peer(
            "direct async-nats JetStream publisher, 256 acks pending, into an R3 stream on the same cluster",
            Some(direct_rate),
        )
        .note(format!(
            "stream holds {stored} of {n} (ferry acknowledged {acked}; {got} seen by the wait), all in {total_s:.1} s from stream creation; \
             direct: {direct_stored} of {n}; rates from each stream's first to last message timestamp"
        )),
    );

    // Ten gateways at once.
    eprintln!("  jetstream: filling {GATEWAYS} gateways with {each} events each");
    let mut ferries = Vec::new();
    for g in 0..GATEWAYS {
        let f = gateway(dir, &cluster, &format!("gw-{g}"), &format!("fleet/gw-{g}"))?;
        crate::drain::fill(&f, each).await?;
        ferries.push(f);
    }
    let started = Instant::now();
    let fleet = create_stream(port, "FLEET", "fleet.>").await?;
    let mut done: Vec<Option<f64>> = vec![None; GATEWAYS];
    let deadline = started + Duration::from_secs(600);
    while done.iter().any(Option::is_none) && Instant::now() < deadline {
        for (g, f) in ferries.iter().enumerate() {
            if done[g].is_none() && f.metric("ferry_upstream_forwarded_total").unwrap_or(0) >= each
            {
                done[g] = Some(started.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = each * GATEWAYS as u64;
    let (fleet_stored, fleet_rate) = stream_rate(&fleet, "FLEET").await?;
    drop(ferries);
    let times: Vec<String> = done
        .iter()
        .map(|t| t.map_or("not drained".into(), |s| format!("{s:.1}")))
        .collect();
    eprintln!("  jetstream: {GATEWAYS} direct publishers, {each} events each");
    create_stream(port, "FLEETDIRECT", "fleetdirect.>").await?;
    let runs = (0..GATEWAYS).map(|_| {
        let subject = format!("fleetdirect.{}", unique("p"));
        async move { nats_load::jetstream_publish(port, &subject, EVENT, each, 256, None).await }
    });
    futures_util::future::try_join_all(runs).await?;
    let (direct_stored, direct_rate) = stream_rate(&fleet, "FLEETDIRECT").await?;
    let exact = fleet_stored == total && direct_stored == total;
    rows.push(
        Row::new(
            "jetstream",
            format!("{GATEWAYS} gateways draining {each} events ({EVENT} B) each into one R3 stream at once, aggregate"),
            "msg/s",
            Better::Higher,
        )
        .ferry(if exact { fleet_rate } else { 0.0 })
        .peer(
            "10 direct async-nats JetStream publishers at once, 256 acks pending each, same cluster",
            Some(direct_rate),
        )
        .note(format!(
            "stream holds {fleet_stored} of {total}; each gateway drained in (s from stream creation): {}; direct: {direct_stored} of {total}",
            times.join(", ")
        )),
    );
    Ok(rows)
}
