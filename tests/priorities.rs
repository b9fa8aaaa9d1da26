//! `[[forward]] priority` with a real mosquitto upstream: a backlog drains highest
//! priority first, each topic in its order, every event once; under store pressure with
//! `on_full = "drop_oldest"` only the lowest priority loses events, its oldest first, and
//! each loss is counted for the upstream and priority.

mod common;

use common::upstream::{Checker, Device, wait_for};
use common::{Ferry, Mosquitto, base_config, free_port, metric_in};
use rumqttc::QoS;
use std::time::Duration;

/// Rules: `alarm/#` at 9, `sensors/#` at the default (5), `debug/#` at 1.
fn config(dir: &std::path::Path, port: u16, store: &str) -> String {
    format!(
        "{}{store}[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         backoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"alarm/#\"\npriority = 9\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"debug/#\"\npriority = 1\n",
        base_config(dir),
    )
}

const TOPICS: [&str; 3] = ["alarm/a", "sensors/s", "debug/d"];

/// Publishes `n` QoS 1 events, event i on `topic(i)` with the payload `i` (6 digits)
/// padded to `size` bytes, and waits for every PUBACK.
async fn publish(device: &Device, n: usize, size: usize, topic: impl Fn(usize) -> &'static str) {
    let start = device.acked.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..n {
        let mut payload = format!("{i:06}").into_bytes();
        payload.resize(size.max(6), b'.');
        device
            .client
            .publish(topic(i), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let acked = device.acked.clone();
    wait_for(Duration::from_secs(60), "every PUBACK from ferry", || {
        acked.load(std::sync::atomic::Ordering::SeqCst) - start >= n
    })
    .await;
}

/// What the checker got: (topic, event index), in arrival order.
fn arrivals(checker: &Checker) -> Vec<(String, usize)> {
    checker
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(t, p)| {
            let i = std::str::from_utf8(&p[..6]).unwrap().parse().unwrap();
            (t.clone(), i)
        })
        .collect()
}

/// Topics interleaved while the upstream is down drain as three runs: every priority 9
/// event, then every default one, then every priority 1 one, each run in publish order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_highest_priority_first_each_topic_in_order() {
    const N: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "#").await;
    mosq.stop();
    let ferry = Ferry::start(dir.path(), &config(dir.path(), port, ""));
    let device = Device::connect(ferry.mqtt, "dev-prio").await;
    publish(&device, N, 10, |i| TOPICS[i % 3]).await;
    mosq.restart();
    let checker = Checker::connect(port, "checker", "#").await;
    wait_for(Duration::from_secs(60), "every event acknowledged", || {
        ferry.metric("ferry_upstream_forwarded_total{upstream=\"cloud\"}") == N as u64
    })
    .await;
    checker.wait_count(N, Duration::from_secs(10)).await;
    let got = arrivals(&checker);
    let mut expected = Vec::new();
    for (k, topic) in TOPICS.iter().enumerate() {
        expected.extend(
            (0..N)
                .filter(|i| i % 3 == k)
                .map(|i| (topic.to_string(), i)),
        );
    }
    assert_eq!(got.len(), N, "each event once");
    assert!(got == expected, "first arrivals: {:?}", &got[..20]);
    // Every lane's cursor reaches the end (the default lane has no event of its own).
    wait_for(Duration::from_secs(5), "no backlog left", || {
        ferry.metric("ferry_upstream_backlog_events{upstream=\"cloud\"}") == 0
    })
    .await;
    checker.close().await;
    device.abort();
}

/// A 1 MiB store and 2,000 events of 1,000 B while the upstream is down: every priority
/// 9 event survives; the priority 1 events that survive are the newest, and the ones
/// that did not are exactly what `ferry_upstream_priority_dropped_total` counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_drops_the_lowest_priority_oldest_first() {
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "#").await;
    mosq.stop();
    let store = "max_bytes = \"1MiB\"\non_full = \"drop_oldest\"\n";
    let ferry = Ferry::start(dir.path(), &config(dir.path(), port, store));
    let device = Device::connect(ferry.mqtt, "dev-full").await;
    // One event in five is an alarm (400 of them, 0.4 MB); the rest debug (1.6 MB).
    publish(&device, N, 1_000, |i| {
        if i % 5 == 0 { "alarm/a" } else { "debug/d" }
    })
    .await;
    let metrics = ferry.metrics();
    let dropped_low = metric_in(
        &metrics,
        "ferry_upstream_priority_dropped_total{upstream=\"cloud\",priority=\"1\"}",
    );
    let dropped_low = dropped_low.unwrap_or(0);
    assert!(dropped_low > 0, "the store was over its size: {metrics}");
    for p in [5, 9] {
        let line =
            format!("ferry_upstream_priority_dropped_total{{upstream=\"cloud\",priority=\"{p}\"}}");
        assert!(
            !metrics.contains(&line),
            "priority {p} lost events: {metrics}"
        );
    }
    mosq.restart();
    let checker = Checker::connect(port, "checker", "#").await;
    let kept = N as u64 - dropped_low;
    wait_for(
        Duration::from_secs(60),
        "every kept event acknowledged",
        || ferry.metric("ferry_upstream_forwarded_total{upstream=\"cloud\"}") == kept,
    )
    .await;
    checker
        .wait_count(kept as usize, Duration::from_secs(10))
        .await;
    let got = arrivals(&checker);
    let alarms: Vec<usize> = (0..N).filter(|i| i % 5 == 0).collect();
    let debug: Vec<usize> = (0..N).filter(|i| i % 5 != 0).collect();
    let lost = dropped_low as usize;
    let mut expected: Vec<(String, usize)> =
        alarms.iter().map(|i| ("alarm/a".to_string(), *i)).collect();
    expected.extend(debug[lost..].iter().map(|i| ("debug/d".to_string(), *i)));
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "first arrivals: {:?}", &got[..10]);
    assert_eq!(
        ferry.metric("ferry_upstream_dropped_total{upstream=\"cloud\",reason=\"full\"}"),
        dropped_low
    );
    checker.close().await;
    device.abort();
}
