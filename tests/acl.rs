//! `[[acl]]` through the real binary, for both protocols: denied publishes and
//! subscriptions with their exact codes and texts, wide subscriptions (`#`, `+/x`, NATS
//! `>`) that never receive a topic their user may not read (live or retained), `%u` and
//! `%c` patterns, wills, NATS queue subscriptions and `acl_default = "deny"`.
//!
//! "Nothing else arrived" is shown by order, not by waiting: after the denied message the
//! same publisher sends a marker, and the marker must be the very next delivery.

mod common;

use common::Ferry;
use common::nats_raw::NatsRaw;
use common::raw::Raw;
use common::raw5::Raw5;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet as Packet5};
use rumqttc::{Packet, QoS, SubscribeReasonCode};
use std::path::Path;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);

const RULES: &str = r#"
[[acl]]
filter = "private/#"
action = "all"
allow = false

[[acl]]
user = "alice"
filter = "secret/#"
action = "subscribe"
allow = false

[[acl]]
user = "alice"
filter = "alerts/#"
action = "publish"
allow = false

[[acl]]
user = "sensor-*"
filter = "sensors/%u/#"
action = "publish"
allow = true

[[acl]]
user = "sensor-*"
filter = "sensors/#"
action = "publish"
allow = false

[[acl]]
filter = "clients/%c/#"
action = "all"
allow = true

[[acl]]
filter = "clients/#"
action = "all"
allow = false
"#;

fn start(dir: &Path, auth: &str, rules: &str) -> Ferry {
    let path = dir.join("passwd");
    let text: String = ["alice", "bob", "sensor-1"]
        .iter()
        .map(|u| {
            let hash = ferry::policy::passwd::hash_password(format!("{u}-pw").as_bytes()).unwrap();
            format!("{u}:{hash}\n")
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    let config = format!(
        "[mqtt]\nlisten = \"127.0.0.1:0\"\n[nats]\nlisten = \"127.0.0.1:0\"\n\
         [store]\ndir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\npassword_file = \"{}\"\n{auth}\n{rules}",
        dir.join("store").display(),
        path.display()
    );
    Ferry::start(dir, &config)
}

fn login(f: &Ferry, id: &str, user: &str) -> Raw {
    let pw = format!("{user}-pw");
    let (raw, ack) = Raw::connect_login(f.mqtt, id, true, Some((user, &pw)));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::Success);
    raw
}

fn login5(f: &Ferry, id: &str, user: &str) -> Raw5 {
    let pw = format!("{user}-pw");
    let (raw, ack) = Raw5::connect_login(f.mqtt, id, true, Some((user, &pw)));
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    raw
}

fn publish_acked(p: &mut Raw, topic: &str, pkid: u16, retain: bool, payload: &[u8]) {
    p.publish(topic, QoS::AtLeastOnce, pkid, retain, payload);
    match p.recv(SECS) {
        Ok(Packet::PubAck(a)) => assert_eq!(a.pkid, pkid),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[test]
fn wide_mqtt_subscriptions_never_receive_denied_topics_live_or_retained() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "", RULES);
    let mut bob = login(&f, "bob-pub", "bob");
    publish_acked(&mut bob, "secret/r", 1, true, b"retained secret");
    publish_acked(&mut bob, "public/r", 2, true, b"retained public");

    let mut alice = login(&f, "alice-sub", "alice");
    assert_eq!(
        alice.subscribe(1, "#", QoS::AtMostOnce),
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    let r = alice.next_publish(SECS);
    assert_eq!(
        (&r.topic[..], &r.payload[..]),
        ("public/r", &b"retained public"[..])
    );
    assert!(r.retain);
    assert_eq!(
        alice.subscribe(2, "+/x", QoS::AtMostOnce),
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    for (i, topic) in ["secret/x", "public/x", "secret/deep/x", "public/end"]
        .iter()
        .enumerate()
    {
        publish_acked(&mut bob, topic, 10 + i as u16, false, topic.as_bytes());
    }
    // Overlapping `#` and `+/x`: one delivery each, in order, none of secret/.
    for want in ["public/x", "public/end"] {
        let p = alice.next_publish(SECS);
        assert_eq!(&p.topic[..], want);
    }
    // A subscription wholly inside what alice may not read is refused.
    assert_eq!(
        alice.subscribe(3, "secret/#", QoS::AtMostOnce),
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(f.metric("ferry_acl_denied_total{action=\"subscribe\"}"), 1);
}

#[test]
fn mqtt_5_denials_say_not_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "", RULES);
    let mut s = login5(&f, "alice5", "alice");
    let codes = s.subscribe(1, "secret/+", rumqttc::v5::mqttbytes::QoS::AtMostOnce);
    assert_eq!(
        codes,
        [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::NotAuthorized]
    );
    s.publish(
        "private/x",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        7,
        b"x",
        None,
    );
    match s.recv(SECS) {
        Some(Packet5::PubAck(a)) => {
            assert_eq!(a.pkid, 7);
            assert_eq!(
                a.reason,
                rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
            );
        }
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    assert_eq!(f.metric("ferry_acl_denied_total{action=\"publish\"}"), 1);
}

#[test]
fn user_and_client_id_patterns() {
    use rumqttc::v5::mqttbytes::v5::PubAckReason;
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "", RULES);
    let mut watcher = login(&f, "watcher", "bob");
    watcher.subscribe(1, "sensors/#", QoS::AtMostOnce);
    let mut sensor = login5(&f, "dev-a", "sensor-1");
    let mut publish = |pkid: u16, topic: &str| {
        sensor.publish(
            topic,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            pkid,
            b"x",
            None,
        );
        match sensor.recv(SECS) {
            Some(Packet5::PubAck(a)) => {
                assert_eq!(a.pkid, pkid);
                a.reason
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    };
    // %u: its own subtree only; %c: the client id's subtree only.
    assert_eq!(
        publish(1, "sensors/sensor-2/t"),
        PubAckReason::NotAuthorized
    );
    assert_eq!(publish(2, "sensors/sensor-1/t"), PubAckReason::Success);
    assert_eq!(publish(3, "clients/dev-b/x"), PubAckReason::NotAuthorized);
    assert_eq!(
        publish(4, "clients/dev-a/x"),
        PubAckReason::NoMatchingSubscribers
    );
    let p = watcher.next_publish(SECS);
    assert_eq!(&p.topic[..], "sensors/sensor-1/t");
    assert_eq!(f.metric("ferry_acl_denied_total{action=\"publish\"}"), 2);
}

#[test]
fn a_will_on_a_denied_topic_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "", RULES);
    let mut bob = login(&f, "bob-sub", "bob");
    bob.subscribe(1, "alerts/#", QoS::AtMostOnce);
    bob.subscribe(2, "status/#", QoS::AtMostOnce);
    for (id, topic) in [("a1", "alerts/down"), ("a2", "status/down")] {
        let mut raw = Raw5::open(f.mqtt);
        let will = LastWill::new(
            topic,
            "gone",
            rumqttc::v5::mqttbytes::QoS::AtMostOnce,
            false,
            None,
        );
        let c = rumqttc::v5::mqttbytes::v5::Connect {
            keep_alive: 30,
            client_id: id.into(),
            clean_start: true,
            properties: None,
        };
        let login = rumqttc::v5::mqttbytes::v5::Login::new("alice", "alice-pw");
        raw.send(Packet5::Connect(c, Some(will), Some(login)));
        assert!(matches!(raw.recv(SECS), Some(Packet5::ConnAck(_))));
        raw.kill();
        if topic == "alerts/down" {
            f.wait_log(&["will refused by acl", "alerts/down"], SECS);
        }
    }
    let p = bob.next_publish(SECS);
    assert_eq!(&p.topic[..], "status/down");
}

#[test]
fn nats_denials_use_nats_server_words_and_keep_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "", RULES);
    let nats = f.nats.unwrap();
    let (mut alice, lines) = NatsRaw::connect(
        nats,
        r#"{"verbose":false,"user":"alice","pass":"alice-pw"}"#,
    );
    assert_eq!(lines, ["PONG"]);
    alice.send("SUB secret.> 1\r\nSUB secret.x workers 2\r\nPUB private.x 2\r\nhi\r\nPING\r\n");
    assert_eq!(
        alice.until_pong(SECS),
        [
            "-ERR 'Permissions Violation for Subscription to \"secret.>\"'",
            "-ERR 'Permissions Violation for Subscription to \"secret.x\" using queue \"workers\"'",
            "-ERR 'Permissions Violation for Publish to \"private.x\"'",
            "PONG"
        ]
    );
    // `>` and a queue group on `*.x`: granted, but secret.* never delivered.
    alice.send("SUB > 3\r\nSUB *.x workers 4\r\nPING\r\n");
    assert_eq!(alice.until_pong(SECS), ["PONG"]);
    let (mut bob, _) = NatsRaw::connect(nats, r#"{"verbose":false,"user":"bob","pass":"bob-pw"}"#);
    bob.send("PUB secret.x 1\r\na\r\nPUB public.x 1\r\nb\r\nPUB public.end 1\r\nc\r\nPING\r\n");
    assert_eq!(bob.until_pong(SECS), ["PONG"]);
    let mut got = Vec::new();
    while got.len() < 3 {
        let line = alice.line(SECS).expect("a delivery");
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "MSG", "{line}");
        let payload = alice.payload(parts[parts.len() - 1].parse().unwrap());
        got.push(format!(
            "{} {} {}",
            parts[1],
            parts[2],
            String::from_utf8_lossy(&payload)
        ));
    }
    got.sort();
    assert_eq!(got, ["public.end 3 c", "public.x 3 b", "public.x 4 b"]);
    // %c is the CONNECT name for NATS clients.
    let (mut named, lines) = NatsRaw::connect(
        nats,
        r#"{"verbose":false,"name":"dev-a","user":"bob","pass":"bob-pw"}"#,
    );
    assert_eq!(lines, ["PONG"]);
    named.send("PUB clients.dev-b.x 1\r\nx\r\nPUB clients.dev-a.x 1\r\ny\r\nPING\r\n");
    assert_eq!(
        named.until_pong(SECS),
        [
            "-ERR 'Permissions Violation for Publish to \"clients.dev-b.x\"'",
            "PONG"
        ]
    );
}

#[test]
fn acl_default_deny_allows_only_what_a_rule_allows() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[acl]]\nfilter = \"public/#\"\naction = \"all\"\nallow = true\n";
    let f = start(dir.path(), "acl_default = \"deny\"", rules);
    let mut s = login(&f, "c1", "alice");
    assert_eq!(
        s.subscribe(1, "other/x", QoS::AtMostOnce),
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(
        s.subscribe(2, "#", QoS::AtMostOnce),
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    let mut p = login(&f, "c2", "bob");
    publish_acked(&mut p, "other/x", 1, false, b"denied");
    publish_acked(&mut p, "public/x", 2, false, b"allowed");
    let got = s.next_publish(SECS);
    assert_eq!(&got.topic[..], "public/x");
    assert_eq!(f.metric("ferry_acl_denied_total{action=\"publish\"}"), 1);
    let (mut n, lines) = NatsRaw::connect(
        f.nats.unwrap(),
        r#"{"verbose":false,"user":"bob","pass":"bob-pw"}"#,
    );
    assert_eq!(lines, ["PONG"]);
    n.send("SUB other.x 1\r\nPING\r\n");
    assert_eq!(
        n.until_pong(SECS),
        [
            "-ERR 'Permissions Violation for Subscription to \"other.x\"'",
            "PONG"
        ]
    );
}

/// A QoS 2 publish refused with PUBREC 0x87 ends its flow: the client may reuse the packet
/// id at once, and that next publish is a new message, delivered (issue 11, defect 1: it
/// was taken for a duplicate, acknowledged and never delivered).
#[test]
fn a_refused_qos_2_publish_frees_its_packet_id() {
    use rumqttc::v5::mqttbytes::v5::PubRecReason;
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "", RULES);
    let mut sub = login5(&f, "q2-sub", "bob");
    sub.subscribe(1, "open/#", rumqttc::v5::mqttbytes::QoS::AtMostOnce);
    let mut p = login5(&f, "q2-pub", "alice");
    for (topic, want) in [
        ("private/x", PubRecReason::NotAuthorized),
        ("open/x", PubRecReason::Success),
    ] {
        p.publish(
            topic,
            rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
            5,
            b"q2",
            None,
        );
        match p.recv(SECS) {
            Some(Packet5::PubRec(r)) => {
                assert_eq!((r.pkid, r.reason), (5, want), "{topic}");
            }
            other => panic!("expected PUBREC, got {other:?}"),
        }
        if want == PubRecReason::Success {
            p.send(Packet5::PubRel(rumqttc::v5::mqttbytes::v5::PubRel::new(
                5, None,
            )));
        }
    }
    let got = sub.next_publish(SECS);
    assert_eq!(&got.topic[..], b"open/x");
}
