//! Packed upstreams (`pack = "ferry-batch-v1"`) with a real mosquitto and a real JetStream:
//! every event arrives once, in order, inside batches the cloud side unpacks with
//! `ferry::pack::unpack`, keys and all; an open batch waits `pack_linger` for more.

mod common;

use common::upstream::{Checker, Device, wait_for};
use common::{Ferry, Mosquitto, base_config, free_port};
use std::time::{Duration, Instant};

const TOPICS: usize = 4;

fn topic(i: usize) -> String {
    format!("sensors/{}", i % TOPICS)
}

fn packed_config(dir: &std::path::Path, url: &str, extra: &str) -> String {
    format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[gateway]\nid = \"gw-p\"\n\
         [[upstream]]\nname = \"cloud\"\nurl = \"{url}\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
         pack = \"ferry-batch-v1\"\n{extra}\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\ntopic = \"site-a/{{topic}}\"\nqos = 1\n",
        base_config(dir),
    )
}

/// Every batch received, unpacked, in arrival order: (events, batch bytes).
fn unpack_all(got: &[(String, bytes::Bytes)]) -> (Vec<ferry::pack::UnpackedEvent>, usize) {
    let mut events = Vec::new();
    let mut bytes = 0;
    for (topic, payload) in got {
        assert_eq!(topic, "ferry/batch/gw-p");
        let batch = ferry::pack::unpack(payload).expect("a valid batch");
        assert_eq!(batch.gateway, "gw-p");
        bytes += payload.len();
        events.extend(batch.events);
    }
    (events, bytes)
}

fn assert_all_in_order(events: &[ferry::pack::UnpackedEvent], n: usize) {
    assert_eq!(events.len(), n, "each event once");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.topic, format!("site-a/{}", topic(i)));
        assert_eq!(e.payload, i.to_string().as_bytes(), "order");
        assert_eq!(e.key, format!("gw-p-{}", e.seq));
        assert_eq!(e.qos, 1);
    }
}

/// A backlog stored while mosquitto is down drains in lz4-packed batches of at most
/// `pack_max_events`, each event once and in order, in far fewer messages than events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_in_packed_batches_exactly_once_in_order() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "ferry/batch/#").await;
    mosq.stop();
    let ferry = Ferry::start(
        dir.path(),
        &packed_config(
            dir.path(),
            &format!("mqtt://127.0.0.1:{port}"),
            "compression = \"lz4\"\npack_max_events = 100",
        ),
    );
    let device = Device::connect(ferry.mqtt, "dev-pack").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    mosq.restart();
    let checker = Checker::connect(port, "checker", "ferry/batch/#").await;
    wait_for(Duration::from_secs(60), "every event acknowledged", || {
        ferry.metric("ferry_upstream_forwarded_total{upstream=\"cloud\"}") == N as u64
    })
    .await;
    wait_for(
        Duration::from_secs(10),
        "every batch at the checker",
        || {
            let got = checker.received.lock().unwrap().clone();
            unpack_all(&got).0.len() >= N
        },
    )
    .await;
    let got = checker.received.lock().unwrap().clone();
    let (events, bytes) = unpack_all(&got);
    assert_all_in_order(&events, N);
    assert!(got.len() >= N / 100, "batches of at most 100 events");
    assert!(
        got.len() <= N / 100 + 5,
        "{} batches for {N} events",
        got.len()
    );
    eprintln!(
        "{N} events in {} batches, {:.1} bytes per event on the wire",
        got.len(),
        bytes as f64 / N as f64
    );
    checker.close().await;
    device.abort();
}

/// Live events: an open batch waits `pack_linger` for more, then goes with all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_wait_the_linger_and_go_in_one_batch() {
    const N: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "ferry/batch/#").await;
    let checker = Checker::connect(port, "checker", "ferry/batch/#").await;
    let ferry = Ferry::start(
        dir.path(),
        &packed_config(
            dir.path(),
            &format!("mqtt://127.0.0.1:{port}"),
            "pack_linger = \"1500ms\"",
        ),
    );
    ferry.wait_log(&["upstream connected", "cloud"], Duration::from_secs(20));
    let device = Device::connect(ferry.mqtt, "dev-live").await;
    let started = Instant::now();
    device
        .publish_acked(N, topic, Duration::from_secs(20))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the publishes themselves were slow: the linger check below would mean nothing"
    );
    checker.wait_count(1, Duration::from_secs(20)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "the batch left after {waited:?}, before its linger"
    );
    let got = checker.received.lock().unwrap().clone();
    let (events, _) = unpack_all(&got);
    assert_eq!(got.len(), 1, "one batch");
    assert_all_in_order(&events, N);
    checker.close().await;
    device.abort();
}

/// Into JetStream: each batch is one stream message (its `Nats-Msg-Id` is
/// `<gateway>-<first seq>-<last seq>`), and the stream's batches unpack to every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_receives_packed_batches() {
    use async_nats::jetstream;
    use futures_util::StreamExt;
    const N: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let server = common::nats_server::NatsServer::start(
        dir.path(),
        "js",
        "jetstream { store_dir: \"$DIR/js\" }",
    );
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "BATCHES".into(),
            subjects: vec!["ferry.batch.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &packed_config(
            dir.path(),
            &server.url(),
            "compression = \"lz4\"\npack_max_events = 64",
        ),
    );
    let device = Device::connect(ferry.mqtt, "dev-js").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    wait_for(Duration::from_secs(30), "every event acknowledged", || {
        ferry.metric("ferry_upstream_forwarded_total{upstream=\"cloud\"}") == N as u64
    })
    .await;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut got = Vec::new();
    let mut events = 0;
    while events < N {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a batch")
            .unwrap()
            .unwrap();
        let batch = ferry::pack::unpack(&m.payload).unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let (first, last) = (
            batch.events[0].seq,
            batch.events[batch.events.len() - 1].seq,
        );
        assert_eq!(id, format!("gw-p-{first}-{last}"));
        assert_eq!(m.subject.as_str(), "ferry.batch.gw-p");
        events += batch.events.len();
        got.push((m.subject.to_string(), m.payload.clone()));
    }
    let renamed: Vec<(String, bytes::Bytes)> = got
        .into_iter()
        .map(|(_, p)| ("ferry/batch/gw-p".to_string(), p))
        .collect();
    let (all, _) = unpack_all(&renamed);
    assert_all_in_order(&all, N);
    device.abort();
}
