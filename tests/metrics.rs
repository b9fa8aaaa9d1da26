//! `/metrics` after known traffic (issue 14): each counter and gauge the traffic moves has
//! exactly the value the traffic implies, and the ones it does not move are 0.

mod common;

use common::nats_raw::NatsRaw;
use common::raw::Raw;
use common::upstream::Checker;
use common::{Ferry, Mosquitto, base_config, free_port, wait_until};
use rumqttc::{Packet, QoS};
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_counter_has_the_value_the_traffic_implies() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosquitto = Mosquitto::start(&dir.path().join("mosq"), port);
    let checker = Checker::connect(port, "check-metrics", "site/#").await;
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\ntopic = \"site/{{topic}}\"\nqos = 1\n\
         [[acl]]\nfilter = \"secret/#\"\nallow = false\n",
        base_config(dir.path())
    );
    let f = Ferry::start(dir.path(), &config);
    f.wait_log(&["upstream connected"], SECS);

    // Subscribers: MQTT to everything, NATS to the sensors.
    let (mut all, _) = Raw::connect(f.mqtt, "all", true, 30);
    all.subscribe(1, "#", QoS::AtMostOnce);
    let (mut nats, lines) = NatsRaw::connect(f.nats.unwrap(), "{\"verbose\":false}");
    assert_eq!(lines, ["PONG"]);
    nats.send("SUB sensors.> 1\r\nPING\r\n");
    assert_eq!(nats.until_pong(SECS), ["PONG"]);

    // 10 forwarded QoS 1 events, 5 local QoS 0 ones, 1 the ACL refuses.
    let (mut publisher, _) = Raw::connect(f.mqtt, "pub", true, 30);
    for i in 0..10u16 {
        publisher.publish("sensors/t", QoS::AtLeastOnce, i + 1, false, b"1");
        assert!(matches!(publisher.recv(SECS), Ok(Packet::PubAck(_))));
    }
    for _ in 0..5 {
        publisher.publish("other/t", QoS::AtMostOnce, 0, false, b"2");
    }
    publisher.publish("secret/t", QoS::AtMostOnce, 0, false, b"3");
    // A marker: everything before it was handled.
    let _ = publisher.subscribe(9, "marker/none", QoS::AtMostOnce);
    for _ in 0..15 {
        let p = all.next_publish(SECS);
        assert_ne!(p.topic, "secret/t");
    }
    for _ in 0..10 {
        let line = nats.line(SECS).unwrap();
        assert_eq!(line, "MSG sensors.t 1 1");
        assert_eq!(nats.payload(1), b"1");
    }
    // One connection that sends garbage.
    let (mut bad, _) = Raw::connect(f.mqtt, "bad", true, 30);
    bad.send_bytes(b"\xf0\x00");
    bad.expect_closed(SECS);
    checker.wait_count(10, SECS).await;
    wait_until(SECS, "the backlog acknowledged and reclaimed", || {
        f.metric("ferry_upstream_backlog_events{upstream=\"cloud\"}") == 0
            && f.metric("ferry_store_events") == 0
    });

    let text = f.metrics();
    let value = |series: &str| {
        common::metric_in(&text, series).unwrap_or_else(|| panic!("{series} not in:\n{text}"))
    };
    for (series, want) in [
        ("ferry_events_received_total", 15),
        ("ferry_events_stored_total", 10),
        // 15 to the `#` subscriber, 10 to the NATS one.
        ("ferry_deliveries_total", 25),
        ("ferry_upstream_forwarded_total{upstream=\"cloud\"}", 10),
        ("ferry_upstream_connected{upstream=\"cloud\"}", 1),
        ("ferry_upstream_cursor{upstream=\"cloud\"}", 10),
        ("ferry_upstream_refused_total{upstream=\"cloud\"}", 0),
        (
            "ferry_upstream_dropped_total{upstream=\"cloud\",reason=\"full\"}",
            0,
        ),
        ("ferry_connections{protocol=\"mqtt\"}", 2),
        ("ferry_connections{protocol=\"nats\"}", 1),
        (
            "ferry_connections_by_transport{protocol=\"mqtt\",transport=\"tcp\"}",
            2,
        ),
        (
            "ferry_connections_by_transport{protocol=\"nats\",transport=\"tcp\"}",
            1,
        ),
        ("ferry_protocol_errors_total", 1),
        ("ferry_acl_denied_total{action=\"publish\"}", 1),
        ("ferry_acl_denied_total{action=\"subscribe\"}", 0),
        ("ferry_events_dropped_total{reason=\"slow_subscriber\"}", 0),
        ("ferry_events_dropped_total{reason=\"offline_qos0\"}", 0),
        ("ferry_events_dropped_total{reason=\"offline_overflow\"}", 0),
        ("ferry_store_events", 0),
        ("ferry_store_errors_total", 0),
        ("ferry_store_rejected_total", 0),
        ("ferry_store_dead_letters", 0),
        ("ferry_config_reloads_total{result=\"ok\"}", 0),
        (
            "ferry_auth_failures_total{protocol=\"mqtt\",reason=\"bad_password\"}",
            0,
        ),
        ("ferry_memory_used_bytes{part=\"store_queue\"}", 0),
    ] {
        assert_eq!(value(series), want, "{series}");
    }
    assert!(value("ferry_store_commits_total") >= 1);
    assert_eq!(
        value("ferry_store_commit_seconds_count"),
        value("ferry_store_commits_total")
    );
    assert!(value("process_resident_memory_bytes") > 1_000_000);
    checker.close().await;
}
