//! Store-and-forward with a real upstream mosquitto: live, across an outage, across a crash.

mod common;

use common::raw::Raw;
use common::upstream::{Checker, Device, assert_exact_in_order};
use common::{Ferry, Mosquitto, base_config, forward_config, free_port};
use std::time::Duration;

/// Each test's events go to `sensors/0..TOPICS`, so ordering is checked across topics too.
const TOPICS: usize = 4;

fn topic(i: usize) -> String {
    format!("sensors/{}", i % TOPICS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_forwarding_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let ferry = Ferry::start(
        dir.path(),
        &(base_config(dir.path()) + &forward_config(port)),
    );
    ferry.wait_log(&["upstream connected", "cloud"], Duration::from_secs(20));

    let device = Device::connect(ferry.mqtt, "dev-live").await;
    device
        .publish_acked(10_000, topic, Duration::from_secs(120))
        .await;
    checker.wait_count(10_000, Duration::from_secs(120)).await;
    // Anything extra (a duplicate) would arrive right behind: give it a moment to show.
    let extra_window = Device::connect(ferry.mqtt, "dev-marker").await;
    extra_window
        .publish_acked(1, |_| "sensors/marker".into(), Duration::from_secs(20))
        .await;
    checker.wait_count(10_001, Duration::from_secs(20)).await;
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got[..10_000], 10_000, TOPICS);
    assert_eq!(got.len(), 10_001, "no duplicates");
    assert_eq!(got[10_000].0, "site-a/sensors/marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_backlog_drains_completely_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    mosq.stop();

    let ferry = Ferry::start(
        dir.path(),
        &(base_config(dir.path()) + &forward_config(port)),
    );
    let device = Device::connect(ferry.mqtt, "dev-outage").await;
    // The upstream is down: every one of these is PUBACKed by ferry all the same.
    device
        .publish_acked(50_000, topic, Duration::from_secs(300))
        .await;
    ferry.wait_log(&["upstream down", "cloud"], Duration::from_secs(20));

    mosq.restart();
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    checker.wait_count(50_000, Duration::from_secs(300)).await;
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got, 50_000, TOPICS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_backlog_then_restart_forwards_everything() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    mosq.stop();

    let config = base_config(dir.path()) + &forward_config(port);
    let ferry = Ferry::start(dir.path(), &config);
    let device = Device::connect(ferry.mqtt, "dev-crash").await;
    device
        .publish_acked(5_000, topic, Duration::from_secs(120))
        .await;
    device.abort();
    ferry.kill9();

    mosq.restart();
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(&["upstream connected", "cloud"], Duration::from_secs(20));
    checker.wait_count(5_000, Duration::from_secs(120)).await;
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got, 5_000, TOPICS);
    assert_eq!(ferry.terminate(), Some(0), "graceful exit on SIGTERM");
}

/// QoS 2 publishes are stored before PUBREC: PUBREC'd events survive SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publishes_are_durable_at_pubrec() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    mosq.stop();
    let config = base_config(dir.path()) + &forward_config(port);
    let ferry = Ferry::start(dir.path(), &config);
    let addr = ferry.mqtt;
    tokio::task::spawn_blocking(move || {
        let (mut dev, _) = Raw::connect(addr, "dev-q2", true, 30);
        for i in 0..500u16 {
            dev.publish(
                &topic(usize::from(i)),
                rumqttc::QoS::ExactlyOnce,
                i + 1,
                false,
                i.to_string().as_bytes(),
            );
            let rec = dev.recv(Duration::from_secs(10));
            assert_eq!(
                rec,
                Ok(rumqttc::Packet::PubRec(rumqttc::PubRec::new(i + 1)))
            );
        }
    })
    .await
    .unwrap();
    ferry.kill9();
    mosq.restart();
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let _ferry = Ferry::start(dir.path(), &config);
    checker.wait_count(500, Duration::from_secs(60)).await;
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got, 500, TOPICS);
}

/// While the upstream is down, the age of the oldest event owed to it keeps growing in
/// `ferry_upstream_oldest_backlog_seconds` (it stayed 0 while the link waited out its
/// backoff, which is when an operator needs it).
#[test]
fn the_oldest_backlog_age_grows_while_the_upstream_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (dead, _held) = common::dead_port();
    let config = base_config(dir.path())
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n"
        + &forward_config(dead)
            .replace("backoff_min = \"50ms\"", "backoff_min = \"30s\"")
            .replace("backoff_max = \"500ms\"", "backoff_max = \"30s\"");
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(&["upstream down", "cloud"], Duration::from_secs(20));
    let (mut device, _) = Raw::connect(ferry.mqtt, "dev-age", true, 30);
    device.publish("sensors/age", rumqttc::QoS::AtLeastOnce, 1, false, b"x");
    assert!(matches!(
        device.recv(Duration::from_secs(10)),
        Ok(rumqttc::Packet::PubAck(_))
    ));
    let age = || -> f64 {
        let series = "ferry_upstream_oldest_backlog_seconds{upstream=\"cloud\"} ";
        ferry
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    common::wait_until(
        Duration::from_secs(10),
        "the backlog age passes 2 s",
        || age() >= 2.0,
    );
    assert!(age() < 30.0);
}

/// A link waiting out a long backoff (30 s here, up to `backoff_max`) starts draining
/// within about a second of its upstream coming back: a TCP probe ends the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_starts_at_once_when_the_upstream_returns_during_a_long_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    mosq.stop();
    let config = (base_config(dir.path()) + &forward_config(port))
        .replace("backoff_min = \"50ms\"", "backoff_min = \"30s\"")
        .replace("backoff_max = \"500ms\"", "backoff_max = \"60s\"");
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(
        &["upstream down", "cloud", "retry_in"],
        Duration::from_secs(20),
    );
    let device = Device::connect(ferry.mqtt, "dev-probe").await;
    device
        .publish_acked(100, topic, Duration::from_secs(20))
        .await;
    // The link probed once as it began waiting (right after "upstream down"), long before
    // these 100 PUBACKs: it has seen the upstream unreachable.
    mosq.restart();
    let back = std::time::Instant::now();
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    checker.wait_count(100, Duration::from_secs(10)).await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "drained {took:?} after the upstream returned; the backoff was 15 s or more"
    );
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got, 100, TOPICS);
    assert!(ferry.log_text().contains("upstream reachable again"));
}

/// The names of `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

/// `[runtime] worker_threads`: 1 keeps every link on the event loop (no thread of its
/// own); 3 gives two upstreams a forwarding thread each. Both forward exactly once and in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_put_the_links_on_threads_of_their_own() {
    for (threads, expected) in [(1, vec![]), (3, vec!["ferry-fwd-1", "ferry-fwd-2"])] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let _mosq = Mosquitto::start(dir.path(), port);
        Checker::register(port, "checker-a", "site-a/#").await;
        Checker::register(port, "checker-b", "site-b/#").await;
        let a = Checker::connect(port, "checker-a", "site-a/#").await;
        let b = Checker::connect(port, "checker-b", "site-b/#").await;
        let second = forward_config(port)
            .replace("\"cloud\"", "\"backup\"")
            .replace("gw-test", "gw-test-2")
            .replace("site-a/", "site-b/");
        let config = base_config(dir.path())
            + &format!("[runtime]\nworker_threads = {threads}\n")
            + &forward_config(port)
            + &second;
        let ferry = Ferry::start(dir.path(), &config);
        ferry.wait_log(&["upstream connected", "cloud"], Duration::from_secs(20));
        ferry.wait_log(&["upstream connected", "backup"], Duration::from_secs(20));
        let device = Device::connect(ferry.mqtt, "dev-threads").await;
        device
            .publish_acked(2_000, topic, Duration::from_secs(60))
            .await;
        a.wait_count(2_000, Duration::from_secs(60)).await;
        b.wait_count(2_000, Duration::from_secs(60)).await;
        for c in [&a, &b] {
            let got: Vec<_> = c.received.lock().unwrap().clone();
            let got: Vec<_> = got
                .into_iter()
                .map(|(t, p)| (t.replacen("site-b/", "site-a/", 1), p))
                .collect();
            assert_exact_in_order(&got, 2_000, TOPICS);
        }
        let fwd: Vec<String> = thread_names(ferry.pid())
            .into_iter()
            .filter(|n| n.starts_with("ferry-fwd") && !n.ends_with("-io"))
            .collect();
        assert_eq!(fwd, expected, "worker_threads = {threads}");
    }
}
