//! MQTT 3.1.1 broker behaviour, at the packet level (rumqttc's codec over a socket).

mod common;

use common::raw::{End, Raw};
use common::{Ferry, base_config};
use rumqttc::{
    ConnectReturnCode, Packet, PubAck, PubComp, PubRec, PubRel, QoS, SubscribeReasonCode,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
/// How long a test waits to be sure something does NOT arrive; only used after a
/// marker message proved that everything before it was already delivered.
const QUIET: Duration = Duration::from_millis(300);

fn ferry(extra: &str) -> (tempfile::TempDir, Ferry) {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()).replace("[mqtt]\n", &format!("[mqtt]\n{extra}"));
    let f = Ferry::start(dir.path(), &config);
    (dir, f)
}

/// Publishes a QoS 0 marker and waits until `sub` receives it: everything the server
/// sent `sub` before it has then been read.
fn marker(publisher: &mut Raw, sub: &mut Raw, topic: &str) {
    publisher.publish(topic, QoS::AtMostOnce, 0, false, b"marker");
    let p = sub.next_publish(T);
    assert_eq!((p.topic.as_str(), &p.payload[..]), (topic, &b"marker"[..]));
}

#[test]
fn qos2_is_delivered_exactly_once_in_order() {
    let (_d, f) = ferry("");
    let (mut sub, _) = Raw::connect(f.mqtt, "sub", true, 30);
    assert_eq!(
        sub.subscribe(1, "q2/#", QoS::ExactlyOnce),
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    for i in 1..=20u16 {
        publ.publish("q2/x", QoS::ExactlyOnce, i, false, i.to_string().as_bytes());
        assert_eq!(publ.recv(T), Ok(Packet::PubRec(PubRec::new(i))));
        // A retransmission before PUBREL must not be delivered twice.
        let mut again = rumqttc::Publish::new("q2/x", QoS::ExactlyOnce, i.to_string().into_bytes());
        again.pkid = i;
        again.dup = true;
        publ.send(Packet::Publish(again));
        assert_eq!(publ.recv(T), Ok(Packet::PubRec(PubRec::new(i))));
        publ.send(Packet::PubRel(PubRel::new(i)));
        assert_eq!(publ.recv(T), Ok(Packet::PubComp(PubComp::new(i))));
    }
    let got: Vec<rumqttc::Publish> = (0..20).map(|_| sub.next_publish(T)).collect();
    for (i, p) in got.iter().enumerate() {
        assert_eq!(
            (p.qos, &p.payload[..]),
            (QoS::ExactlyOnce, (i + 1).to_string().as_bytes())
        );
        sub.send(Packet::PubRec(PubRec::new(p.pkid)));
        assert_eq!(sub.recv(T), Ok(Packet::PubRel(PubRel::new(p.pkid))));
        sub.send(Packet::PubComp(PubComp::new(p.pkid)));
    }
    marker(&mut publ, &mut sub, "q2/end");
}

#[test]
fn retained_messages_set_deliver_and_clear() {
    let (_d, f) = ferry("");
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    publ.publish("r/a", QoS::AtLeastOnce, 1, true, b"kept");
    assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(1))));
    let (mut sub, _) = Raw::connect(f.mqtt, "sub", true, 30);
    sub.subscribe(1, "r/+", QoS::AtLeastOnce);
    let p = sub.next_publish(T);
    assert!(p.retain, "retained on subscribe carries RETAIN");
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("r/a", &b"kept"[..], QoS::AtLeastOnce)
    );
    sub.send(Packet::PubAck(PubAck::new(p.pkid)));
    // A live retained publish reaches existing subscribers without RETAIN (3.3.1.3).
    publ.publish("r/a", QoS::AtMostOnce, 0, true, b"live");
    let live = sub.next_publish(T);
    assert!(!live.retain);
    // An empty retained payload clears it: a new subscriber gets nothing.
    publ.publish("r/a", QoS::AtLeastOnce, 2, true, b"");
    assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(2))));
    let (mut late, _) = Raw::connect(f.mqtt, "late", true, 30);
    late.subscribe(1, "r/#", QoS::AtLeastOnce);
    marker(&mut publ, &mut late, "r/marker");
}

#[test]
fn will_on_abrupt_close_and_on_keepalive_expiry_not_on_disconnect() {
    let (_d, f) = ferry("");
    let (mut watcher, _) = Raw::connect(f.mqtt, "watcher", true, 30);
    watcher.subscribe(1, "wills/#", QoS::AtLeastOnce);
    let with_will = |id: &str, keep_alive: u16| {
        let mut raw = Raw::open(f.mqtt);
        let mut c = rumqttc::Connect::new(id);
        c.keep_alive = keep_alive;
        c.last_will = Some(rumqttc::LastWill::new(
            format!("wills/{id}"),
            format!("{id} gone"),
            QoS::AtLeastOnce,
            false,
        ));
        raw.send(Packet::Connect(c));
        assert!(matches!(raw.recv(T), Ok(Packet::ConnAck(_))));
        raw
    };
    with_will("abrupt", 30).kill();
    let p = watcher.next_publish(T);
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("wills/abrupt", &b"abrupt gone"[..])
    );
    watcher.send(Packet::PubAck(PubAck::new(p.pkid)));

    let mut polite = with_will("polite", 30);
    polite.send(Packet::Disconnect);
    polite.expect_closed(T);

    // Keep-alive 1 s and silence: closed after 1.5 s, will published.
    let mut silent = with_will("silent", 1);
    silent.expect_closed(Duration::from_secs(5));
    let p = watcher.next_publish(T);
    assert_eq!(p.topic, "wills/silent", "no will for the polite client");
    f.wait_log(&["client_id=silent", "keep-alive expired"], T);
}

#[test]
fn persistent_session_queues_qos1_and_resumes_with_session_present() {
    let (_d, f) = ferry("");
    let (mut a, ack) = Raw::connect(f.mqtt, "durable", false, 30);
    assert!(!ack.session_present);
    a.subscribe(1, "ps/#", QoS::AtLeastOnce);
    a.send(Packet::Disconnect);
    a.expect_closed(T);

    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    for i in 1..=5u16 {
        publ.publish(
            "ps/q1",
            QoS::AtLeastOnce,
            i,
            false,
            format!("m{i}").as_bytes(),
        );
        assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(i))));
        publ.publish("ps/q0", QoS::AtMostOnce, 0, false, b"not queued");
    }
    // Packets of one connection are handled in order: once this is acked, every QoS 0
    // publish above has been routed (while the session was offline).
    publ.publish("elsewhere", QoS::AtLeastOnce, 99, false, b"sync");
    assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(99))));
    let (mut a, ack) = Raw::connect(f.mqtt, "durable", false, 30);
    assert!(ack.session_present);
    for i in 1..=5u16 {
        let p = a.next_publish(T);
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("ps/q1", format!("m{i}").as_bytes())
        );
        a.send(Packet::PubAck(PubAck::new(p.pkid)));
    }
    marker(&mut publ, &mut a, "ps/marker");
    // A clean session discards it.
    a.send(Packet::Disconnect);
    let (_c, ack) = Raw::connect(f.mqtt, "durable", true, 30);
    assert!(!ack.session_present);
}

#[test]
fn unacked_deliveries_are_redelivered_with_dup_on_reconnect() {
    let (_d, f) = ferry("");
    let (mut a, _) = Raw::connect(f.mqtt, "redeliver", false, 30);
    a.subscribe(1, "rd/#", QoS::ExactlyOnce);
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    publ.publish("rd/1", QoS::AtLeastOnce, 1, false, b"one");
    publ.publish("rd/2", QoS::ExactlyOnce, 2, false, b"two");
    let first = a.next_publish(T);
    let second = a.next_publish(T);
    assert_eq!((first.dup, second.dup), (false, false));
    // Acknowledge the QoS 2 one halfway (PUBREC), then drop the connection.
    a.send(Packet::PubRec(PubRec::new(second.pkid)));
    assert_eq!(a.recv(T), Ok(Packet::PubRel(PubRel::new(second.pkid))));
    a.kill();
    let (mut a, ack) = Raw::connect(f.mqtt, "redeliver", false, 30);
    assert!(ack.session_present);
    let again = a.next_publish(T);
    assert!(again.dup, "redelivered PUBLISH has DUP");
    assert_eq!((again.pkid, &again.payload[..]), (first.pkid, &b"one"[..]));
    assert_eq!(
        a.recv(T),
        Ok(Packet::PubRel(PubRel::new(second.pkid))),
        "PUBREL resent for the QoS 2 one"
    );
}

#[test]
fn dollar_topics_hidden_from_first_level_wildcards() {
    let (_d, f) = ferry("");
    let (mut wild, _) = Raw::connect(f.mqtt, "wild", true, 30);
    wild.subscribe(1, "#", QoS::AtMostOnce);
    wild.subscribe(2, "+/info", QoS::AtMostOnce);
    // `$SYS` is ferry's own (clients may not publish there): another `$` topic.
    let (mut sys, _) = Raw::connect(f.mqtt, "sys", true, 30);
    sys.subscribe(1, "$app/#", QoS::AtMostOnce);
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    publ.publish("$app/info", QoS::AtMostOnce, 0, false, b"sys");
    assert_eq!(sys.next_publish(T).topic, "$app/info");
    // The wildcard subscriber's next message is the marker, not $app/info.
    marker(&mut publ, &mut wild, "plain/marker");
}

#[test]
fn client_id_rules_second_connect_and_mqtt31() {
    let (_d, f) = ferry("");
    // Empty client id: accepted with a clean session, refused (code 2) without.
    let (_a, ack) = Raw::connect(f.mqtt, "", true, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let (mut b, ack) = Raw::connect(f.mqtt, "", false, 30);
    assert_eq!(ack.code, ConnectReturnCode::BadClientId);
    b.expect_closed(T);
    // A second CONNECT on a connection closes it.
    let (mut c, _) = Raw::connect(f.mqtt, "twice", true, 30);
    c.send(Packet::Connect(rumqttc::Connect::new("twice")));
    c.expect_closed(T);
    f.wait_log(&["client_id=twice", "second CONNECT"], T);
    // MQTT 3.1: protocol name MQIsdp, level 3.
    let mut old = Raw::open(f.mqtt);
    old.send_bytes(&[
        0x10, 0x12, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 30, 0, 4, b'v', b'3', b'1',
        b'!',
    ]);
    assert!(matches!(old.recv(T), Ok(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success));
    // An unknown protocol level gets return code 1 and is closed.
    let mut bad = Raw::open(f.mqtt);
    bad.send_bytes(&[
        0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 30, 0, 1, b'x',
    ]);
    assert!(
        matches!(bad.recv(T), Ok(Packet::ConnAck(a)) if a.code == ConnectReturnCode::RefusedProtocolVersion)
    );
    bad.expect_closed(T);
}

#[test]
fn session_takeover_kicks_the_old_connection() {
    let (_d, f) = ferry("");
    let (mut first, _) = Raw::connect(f.mqtt, "same", false, 30);
    first.subscribe(1, "to/#", QoS::AtLeastOnce);
    let (mut second, ack) = Raw::connect(f.mqtt, "same", false, 30);
    assert!(
        ack.session_present,
        "the session moves to the new connection"
    );
    first.expect_closed(T);
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    marker(&mut publ, &mut second, "to/marker");
}

#[test]
fn limits_offline_queue_subscriptions_levels_and_acl() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()).replace(
        "[mqtt]\n",
        "[mqtt]\nmax_queued = 3\nmax_subscriptions = 2\nmax_topic_levels = 4\n",
    ) + "[[acl]]\nfilter = \"secret/#\"\naction = \"all\"\n";
    let f = Ferry::start(dir.path(), &config);
    let (mut a, _) = Raw::connect(f.mqtt, "limited", false, 30);
    assert_eq!(
        a.subscribe(1, "lim/#", QoS::AtLeastOnce),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(
        a.subscribe(2, "secret/x", QoS::AtLeastOnce),
        vec![SubscribeReasonCode::Failure],
        "acl"
    );
    assert_eq!(
        a.subscribe(3, "x/+/y", QoS::AtMostOnce),
        vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    assert_eq!(
        a.subscribe(4, "z", QoS::AtMostOnce),
        vec![SubscribeReasonCode::Failure],
        "max_subscriptions"
    );
    assert_eq!(
        a.subscribe(5, "lim/#", QoS::AtLeastOnce),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        "re-subscribing is not a new one"
    );
    a.send(Packet::Disconnect);
    a.expect_closed(T);
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    for i in 1..=5u16 {
        publ.publish(
            "lim/q",
            QoS::AtLeastOnce,
            i,
            false,
            i.to_string().as_bytes(),
        );
        assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(i))));
    }
    // Publishing to an acl-denied topic is acknowledged and goes nowhere.
    publ.publish("secret/x", QoS::AtLeastOnce, 9, false, b"s");
    assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(9))));
    let (mut a, ack) = Raw::connect(f.mqtt, "limited", false, 30);
    assert!(ack.session_present);
    let got: Vec<Vec<u8>> = (0..3).map(|_| a.next_publish(T).payload.to_vec()).collect();
    assert_eq!(
        got,
        vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()],
        "the queue keeps the first 3"
    );
    // Topics deeper than max_topic_levels close the publisher.
    publ.publish("a/b/c/d/e", QoS::AtMostOnce, 0, false, b"deep");
    publ.expect_closed(T);
    assert_eq!(a.recv(QUIET), Err(End::Timeout));
}

#[test]
fn sessions_and_retained_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let f = Ferry::start(dir.path(), &config);
    let (mut a, _) = Raw::connect(f.mqtt, "keeper", false, 30);
    a.subscribe(1, "keep/#", QoS::AtLeastOnce);
    a.send(Packet::Disconnect);
    a.expect_closed(T);
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    publ.publish("keep/retained", QoS::AtLeastOnce, 1, true, b"still here");
    assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(1))));
    assert_eq!(f.terminate(), Some(0));

    let f = Ferry::start(dir.path(), &config);
    f.wait_log(&["restored persistent MQTT sessions", "sessions=1"], T);
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    publ.publish("keep/live", QoS::AtLeastOnce, 1, false, b"while away");
    assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(1))));
    let (mut a, ack) = Raw::connect(f.mqtt, "keeper", false, 30);
    assert!(ack.session_present, "session restored from the store");
    // The message queued for the offline session before the restart survived it, and
    // comes first.
    let got: Vec<(String, Vec<u8>)> = (0..2)
        .map(|_| {
            let p = a.next_publish(T);
            a.send(Packet::PubAck(PubAck::new(p.pkid)));
            (p.topic.clone(), p.payload.to_vec())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("keep/retained".to_string(), b"still here".to_vec()),
            ("keep/live".to_string(), b"while away".to_vec()),
        ]
    );
    let (mut fresh, _) = Raw::connect(f.mqtt, "fresh", true, 30);
    fresh.subscribe(1, "keep/retained", QoS::AtMostOnce);
    let r = fresh.next_publish(T);
    assert!(r.retain);
    assert_eq!(&r.payload[..], b"still here");
}

#[test]
fn max_sessions_and_queued_bytes_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()).replace(
        "[mqtt]\n",
        "[mqtt]\nmax_sessions = 2\nmax_queued_bytes = \"1KiB\"\n",
    );
    let f = Ferry::start(dir.path(), &config);
    let (mut a, _) = Raw::connect(f.mqtt, "s1", false, 30);
    a.subscribe(1, "qb/#", QoS::AtLeastOnce);
    a.send(Packet::Disconnect);
    a.expect_closed(T);
    let (mut publ, _) = Raw::connect(f.mqtt, "s2", true, 30);
    // 300-byte payloads: only a few fit in 1 KiB for the offline session.
    for i in 1..=10u16 {
        publ.publish(
            "qb/x",
            QoS::AtLeastOnce,
            i,
            false,
            &[b'0' + (i % 10) as u8; 300],
        );
        assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(i))));
    }
    publ.send(Packet::Disconnect);
    let (mut a, ack) = Raw::connect(f.mqtt, "s1", false, 30);
    assert!(ack.session_present);
    let mut got = Vec::new();
    while let Ok(Packet::Publish(p)) = a.recv(QUIET) {
        got.push(p.payload[0]);
        a.send(Packet::PubAck(PubAck::new(p.pkid)));
    }
    // Each queued delivery weighs its payload plus a fixed overhead, so 2 fit in 1 KiB.
    assert_eq!(
        got,
        vec![b'1', b'2'],
        "the oldest that fit are kept, the rest dropped"
    );
    f.wait_log(&["client_id=\"s1\"", "dropped=8"], T);
    // max_sessions = 2 counts persistent sessions only: with s1 and p2 online there is
    // none offline to evict, so a third persistent session is refused (CONNACK 3); a
    // clean one is not.
    let (_p2, ack) = Raw::connect(f.mqtt, "p2", false, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let (mut c, ack) = Raw::connect(f.mqtt, "p3", false, 30);
    assert_eq!(ack.code, ConnectReturnCode::ServiceUnavailable);
    c.expect_closed(T);
    f.wait_log(&["mqtt.max_sessions reached"], T);
    let (_s3, ack) = Raw::connect(f.mqtt, "s3", true, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
}
