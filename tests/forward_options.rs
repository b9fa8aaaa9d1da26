//! Upstream options: the MQTT 5 `ferry-id` idempotency key, MQTT 3.1.1 upstreams, and
//! `max_rate` for metered links.

mod common;

use common::raw5::{Raw5, topic_of};
use common::upstream::{Checker, Device, assert_exact_in_order};
use common::{Ferry, Mosquitto, base_config, forward_config, free_port};
use rumqttc::v5::mqttbytes::QoS;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_upstream_carries_ferry_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosq = Mosquitto::start(dir.path(), port);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cloud = tokio::task::spawn_blocking(move || {
        let mut c = Raw5::simple(addr, "cloud-v5");
        c.subscribe(1, "site-a/#", QoS::AtMostOnce);
        c
    })
    .await
    .unwrap();
    let config = base_config(dir.path()) + &forward_config(port) + "[gateway]\nid = \"gw-7\"\n";
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(
        &["upstream connected", "protocol=\"5\""],
        Duration::from_secs(20),
    );
    let device = Device::connect(ferry.mqtt, "dev-id").await;
    device
        .publish_acked(
            20,
            |i| format!("sensors/{}", i % 2),
            Duration::from_secs(20),
        )
        .await;
    let got = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| cloud.next_publish(Duration::from_secs(20)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (i, p) in got.iter().enumerate() {
        assert_eq!(topic_of(p), format!("site-a/sensors/{}", i % 2));
        let props = p.properties.as_ref().expect("properties");
        // Store seqs start at 1 and are consecutive here.
        assert_eq!(
            props.user_properties,
            vec![("ferry-id".to_string(), format!("gw-7-{}", i + 1))]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_upstream_and_max_rate() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    mosq.stop();
    let upstream = forward_config(port).replace(
        "client_id = \"gw-test\"\n",
        "client_id = \"gw-test\"\nprotocol = \"3.1.1\"\nmax_rate = 200\n",
    );
    let ferry = Ferry::start(dir.path(), &(base_config(dir.path()) + &upstream));
    let device = Device::connect(ferry.mqtt, "dev-rate").await;
    device
        .publish_acked(
            500,
            |i| format!("sensors/{}", i % 4),
            Duration::from_secs(60),
        )
        .await;
    mosq.restart();
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let start = Instant::now();
    ferry.wait_log(
        &["upstream connected", "protocol=\"3.1.1\""],
        Duration::from_secs(20),
    );
    checker.wait_count(500, Duration::from_secs(60)).await;
    // 500 events at 200/s with a one-second burst: at least 1.5 s.
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "drained too fast for max_rate: {:?}",
        start.elapsed()
    );
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got, 500, 4);
}

/// `max_bytes_rate`: 40 events of 1,000-byte payloads (about 40 KB) at 8 KiB/s, with a
/// one-second burst, cannot drain in under 3.5 s; all arrive, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_rate_paces_the_drain_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    mosq.stop();
    let upstream = forward_config(port).replace(
        "client_id = \"gw-test\"\n",
        "client_id = \"gw-test\"\nmax_bytes_rate = \"8KiB\"\n",
    );
    let ferry = Ferry::start(dir.path(), &(base_config(dir.path()) + &upstream));
    let device = Device::connect(ferry.mqtt, "dev-bytes").await;
    let payload = "x".repeat(1000);
    for i in 0..40 {
        device
            .client
            .publish(
                format!("sensors/{}", i % 4),
                rumqttc::QoS::AtLeastOnce,
                false,
                format!("{i:04}{payload}"),
            )
            .await
            .unwrap();
    }
    let acked = device.acked.clone();
    common::upstream::wait_for(Duration::from_secs(20), "40 PUBACKs", || {
        acked.load(std::sync::atomic::Ordering::SeqCst) >= 40
    })
    .await;
    mosq.restart();
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let start = Instant::now();
    checker.wait_count(40, Duration::from_secs(60)).await;
    assert!(
        start.elapsed() >= Duration::from_millis(3500),
        "drained too fast for max_bytes_rate: {:?}",
        start.elapsed()
    );
    let got = checker.received.lock().unwrap().clone();
    for (i, (topic, body)) in got.iter().enumerate() {
        assert_eq!(topic, &format!("site-a/sensors/{}", i % 4));
        assert_eq!(&body[..4], format!("{i:04}").as_bytes(), "in order");
    }
    assert_eq!(got.len(), 40);
}

/// Each stored event carries the index of the rule that selected it, so the link does
/// not match the rules again; events stored before a restart with other rules are routed
/// by the rules in force (their stored index would name another rule now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_under_other_rules_follow_the_current_ones() {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "#").await;
    mosq.stop();
    let up = format!(
        "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n"
    );
    let first = format!(
        "{}{up}[[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\ntopic = \"a/{{topic}}\"\n",
        base_config(dir.path())
    );
    let ferry = Ferry::start(dir.path(), &first);
    let device = Device::connect(ferry.mqtt, "dev-rules").await;
    device
        .publish_acked(N, |_| "sensors/1".into(), Duration::from_secs(20))
        .await;
    device.abort();
    ferry.kill9();
    // Rule 0 is now one that does not match those events; rule 1 does.
    let second = format!(
        "{}{up}[[forward]]\nupstream = \"cloud\"\nfilter = \"other/#\"\ntopic = \"x/{{topic}}\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\ntopic = \"b/{{topic}}\"\n",
        base_config(dir.path())
    );
    let ferry = Ferry::start(dir.path(), &second);
    let device = Device::connect(ferry.mqtt, "dev-rules").await;
    device
        .publish_acked(N, |_| "sensors/1".into(), Duration::from_secs(20))
        .await;
    mosq.restart();
    let checker = Checker::connect(port, "checker", "#").await;
    checker.wait_count(2 * N, Duration::from_secs(30)).await;
    let got = checker.received.lock().unwrap().clone();
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, vec!["b/sensors/1"; 2 * N]);
    let payloads: Vec<String> = got
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    let expected: Vec<String> = (0..N).chain(0..N).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected);
    checker.close().await;
    device.abort();
}
