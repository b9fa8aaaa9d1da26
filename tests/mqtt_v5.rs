//! MQTT 5 broker behaviour, at the packet level (rumqttc's MQTT 5 codec over a socket).

mod common;

use bytes::Bytes;
use common::raw5::{Raw5, filter_of, topic_of};
use common::{Ferry, base_config};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, Disconnect, DisconnectProperties, DisconnectReasonCode, Filter, LastWill,
    LastWillProperties, Packet, PubAck, PubAckReason, PubRec, PublishProperties, RetainForwardRule,
    SubscribeReasonCode,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn ferry(mqtt_extra: &str, tail: &str) -> (tempfile::TempDir, Ferry) {
    let dir = tempfile::tempdir().unwrap();
    let config =
        base_config(dir.path()).replace("[mqtt]\n", &format!("[mqtt]\n{mqtt_extra}")) + tail;
    let f = Ferry::start(dir.path(), &config);
    (dir, f)
}

fn marker(publisher: &mut Raw5, sub: &mut Raw5, topic: &str) {
    publisher.publish(topic, QoS::AtMostOnce, 0, b"marker", None);
    let p = sub.next_publish(T);
    assert_eq!(
        (topic_of(&p), &p.payload[..]),
        (topic.to_string(), &b"marker"[..])
    );
}

fn props(f: impl FnOnce(&mut ConnectProperties)) -> ConnectProperties {
    let mut p = ConnectProperties::new();
    f(&mut p);
    p
}

#[test]
fn connack_properties_and_assigned_client_id() {
    let (_d, f) = ferry(
        "max_inflight = 100\nmax_topic_aliases = 8\nmax_packet_size = \"64KiB\"\n",
        "",
    );
    let (_c, ack) = Raw5::connect(f.mqtt, "", true, ConnectProperties::new(), None);
    let p = ack.properties.expect("CONNACK properties");
    // Random (32 hex digits), so never an id an earlier client was given, even before a
    // restart: a new client cannot be handed someone else's persistent session.
    let id = p.assigned_client_identifier.clone().unwrap();
    let hex = id.strip_prefix("ferry-auto-").unwrap();
    assert_eq!(hex.len(), 32, "{id}");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let (_c2, ack2) = Raw5::connect(f.mqtt, "", true, ConnectProperties::new(), None);
    assert_ne!(
        ack2.properties.unwrap().assigned_client_identifier,
        Some(id)
    );
    assert_eq!(
        (p.receive_max, p.max_packet_size, p.topic_alias_max),
        (Some(100), Some(65536), Some(8))
    );
    assert_eq!(
        (
            p.retain_available,
            p.wildcard_subscription_available,
            p.subscription_identifiers_available,
            p.shared_subscription_available
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
    assert_eq!(
        p.server_keep_alive, None,
        "keep-alive 30 is within max_keep_alive"
    );
}

#[test]
fn properties_pass_through_with_subscription_identifiers() {
    let (_d, f) = ferry("", "");
    let mut sub = Raw5::simple(f.mqtt, "sub");
    sub.subscribe_with(1, vec![filter_of("p/#", QoS::AtLeastOnce)], Some(7));
    sub.subscribe_with(2, vec![filter_of("p/+", QoS::AtMostOnce)], Some(9));
    let mut publ = Raw5::simple(f.mqtt, "pub");
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        topic_alias: None,
        response_topic: Some("replies/x".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        user_properties: vec![("k".into(), "v1".into()), ("k".into(), "v2".into())],
        subscription_identifiers: vec![],
        content_type: Some("application/json".into()),
    };
    publ.publish("p/a", QoS::AtLeastOnce, 1, b"{}", Some(sent.clone()));
    let p = sub.next_publish(T);
    assert_eq!(
        p.qos,
        QoS::AtLeastOnce,
        "one delivery at the highest granted QoS"
    );
    let mut got = p.properties.expect("properties");
    got.subscription_identifiers.sort();
    assert_eq!(got.subscription_identifiers, vec![7, 9]);
    got.subscription_identifiers.clear();
    assert_eq!(got, sent);
    marker(&mut publ, &mut sub, "p/end");
}

#[test]
fn message_expiry_drops_expired_and_counts_down() {
    let (_d, f) = ferry("", "");
    let session = props(|p| p.session_expiry_interval = Some(300));
    let (mut a, _) = Raw5::connect(f.mqtt, "exp", true, session.clone(), None);
    a.subscribe(1, "exp/#", QoS::AtLeastOnce);
    a.send(Packet::Disconnect(Disconnect::new(
        DisconnectReasonCode::NormalDisconnection,
    )));
    // The session must be offline before the publishes, or they are delivered to the
    // closing connection and resent (unexpired, as in-flight messages are) on resume.
    f.wait_log(&["client_id=exp ", "MQTT client disconnected"], T);
    let mut publ = Raw5::simple(f.mqtt, "pub");
    let expiring = |s: u32| PublishProperties {
        message_expiry_interval: Some(s),
        ..Default::default()
    };
    publ.publish(
        "exp/short",
        QoS::AtLeastOnce,
        1,
        b"short",
        Some(expiring(1)),
    );
    publ.publish(
        "exp/long",
        QoS::AtLeastOnce,
        2,
        b"long",
        Some(expiring(100)),
    );
    for _ in 0..2 {
        assert!(matches!(publ.recv(T), Some(Packet::PubAck(_))));
    }
    // Let the short one's interval run out while the subscriber is away.
    std::thread::sleep(Duration::from_millis(2100));
    let (mut a, ack) = Raw5::connect(f.mqtt, "exp", false, session, None);
    assert!(ack.session_present);
    let p = a.next_publish(T);
    assert_eq!(topic_of(&p), "exp/long", "the expired one is dropped");
    let left = p
        .properties
        .and_then(|p| p.message_expiry_interval)
        .unwrap();
    assert!((97..=98).contains(&left), "interval counts down: {left}");
}

#[test]
fn session_expiry_and_its_override_at_disconnect() {
    let (_d, f) = ferry("", "");
    let expiring = |s: u32| props(|p| p.session_expiry_interval = Some(s));
    // Expiry 1 s: gone 2 s later.
    let (mut a, _) = Raw5::connect(f.mqtt, "short", true, expiring(1), None);
    a.subscribe(1, "s/#", QoS::AtLeastOnce);
    a.send(Packet::Disconnect(Disconnect::new(
        DisconnectReasonCode::NormalDisconnection,
    )));
    std::thread::sleep(Duration::from_millis(2100));
    let (_a, ack) = Raw5::connect(f.mqtt, "short", false, expiring(0), None);
    assert!(!ack.session_present);
    // Expiry 300 s, but DISCONNECT sets 0: gone at once.
    let (mut b, _) = Raw5::connect(f.mqtt, "override", true, expiring(300), None);
    b.subscribe(1, "s/#", QoS::AtLeastOnce);
    let zero = DisconnectProperties {
        session_expiry_interval: Some(0),
        reason_string: None,
        user_properties: vec![],
        server_reference: None,
    };
    b.send(Packet::Disconnect(Disconnect {
        reason_code: DisconnectReasonCode::NormalDisconnection,
        properties: Some(zero),
    }));
    assert!(b.recv(T).is_none(), "closed");
    let (_b, ack) = Raw5::connect(f.mqtt, "override", false, expiring(0), None);
    assert!(!ack.session_present);
    // Expiry 0 at CONNECT may not be raised at DISCONNECT: protocol error.
    let (mut c, _) = Raw5::connect(f.mqtt, "raise", true, expiring(0), None);
    let raise = DisconnectProperties {
        session_expiry_interval: Some(60),
        reason_string: None,
        user_properties: vec![],
        server_reference: None,
    };
    c.send(Packet::Disconnect(Disconnect {
        reason_code: DisconnectReasonCode::NormalDisconnection,
        properties: Some(raise),
    }));
    match c.recv(T) {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::ProtocolError)
        }
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
}

#[test]
fn no_local_retain_as_published_and_retain_handling() {
    let (_d, f) = ferry("", "");
    let mut me = Raw5::simple(f.mqtt, "me");
    let nolocal = Filter {
        nolocal: true,
        ..filter_of("nl/#", QoS::AtMostOnce)
    };
    me.subscribe_with(1, vec![nolocal], None);
    me.publish("nl/x", QoS::AtMostOnce, 0, b"mine", None);
    let mut other = Raw5::simple(f.mqtt, "other");
    marker(&mut other, &mut me, "nl/marker");

    other.publish("rh/t", QoS::AtLeastOnce, 1, b"kept", None);
    let mut retained =
        rumqttc::v5::mqttbytes::v5::Publish::new("rh/t", QoS::AtLeastOnce, b"kept".to_vec(), None);
    retained.retain = true;
    retained.pkid = 2;
    other.send(Packet::Publish(retained));
    for _ in 0..2 {
        assert!(matches!(other.recv(T), Some(Packet::PubAck(_))));
    }
    let rule = |path: &str, rule: RetainForwardRule, rap: bool| Filter {
        retain_forward_rule: rule,
        preserve_retain: rap,
        ..filter_of(path, QoS::AtMostOnce)
    };
    let mut s = Raw5::simple(f.mqtt, "rh");
    // Handling 0: retained sent on every subscribe.
    s.subscribe_with(
        1,
        vec![rule("rh/t", RetainForwardRule::OnEverySubscribe, false)],
        None,
    );
    assert!(s.next_publish(T).retain);
    s.subscribe_with(
        2,
        vec![rule("rh/t", RetainForwardRule::OnEverySubscribe, false)],
        None,
    );
    assert!(s.next_publish(T).retain);
    // Handling 1: only when the subscription is new.
    s.subscribe_with(
        3,
        vec![rule("rh/+", RetainForwardRule::OnNewSubscribe, false)],
        None,
    );
    assert!(s.next_publish(T).retain);
    s.subscribe_with(
        4,
        vec![rule("rh/+", RetainForwardRule::OnNewSubscribe, false)],
        None,
    );
    // Handling 2: never.
    s.subscribe_with(5, vec![rule("rh/#", RetainForwardRule::Never, true)], None);
    // Live retained publish: RETAIN kept only for retain-as-published (rh/#, merged).
    let mut live =
        rumqttc::v5::mqttbytes::v5::Publish::new("rh/t", QoS::AtMostOnce, b"live".to_vec(), None);
    live.retain = true;
    other.send(Packet::Publish(live));
    let p = s.next_publish(T);
    assert_eq!((&p.payload[..], p.retain), (&b"live"[..], true));
    marker(&mut other, &mut s, "rh/marker");
}

/// The next PUBLISH, past the acks of our own publishes.
fn next_publish_skipping_acks(c: &mut Raw5) -> rumqttc::v5::mqttbytes::v5::Publish {
    loop {
        match c.recv(T) {
            Some(Packet::PubAck(_)) => continue,
            Some(Packet::Publish(p)) => return p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// The Paho suite's no-local and request/response cases (client_test5.py), with the wait
/// for the second client's SUBACK the suite forgets: once its SUBACK is sent, a
/// subscription gets what other connections publish, and no-local skips only the
/// publisher's own connection, on both sides of a request and its response.
#[test]
fn no_local_on_two_connections_request_and_response() {
    let (_d, f) = ferry("", "");
    let nolocal = Filter {
        nolocal: true,
        ..filter_of("rr/topic", QoS::ExactlyOnce)
    };
    let mut a = Raw5::simple(f.mqtt, "requester");
    let mut b = Raw5::simple(f.mqtt, "responder");
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.subscribe_with(1, vec![nolocal.clone()], None),
            vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
        );
    }
    let request = PublishProperties {
        response_topic: Some("rr/topic".into()),
        correlation_data: Some(Bytes::from_static(b"334")),
        ..PublishProperties::default()
    };
    a.publish("rr/topic", QoS::AtLeastOnce, 1, b"request", Some(request));
    let got = b.next_publish(T);
    assert_eq!(&got.payload[..], b"request");
    let props = got.properties.expect("request properties");
    assert_eq!(props.response_topic.as_deref(), Some("rr/topic"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"334"[..]));
    b.puback(got.pkid);
    let response = PublishProperties {
        correlation_data: props.correlation_data,
        ..PublishProperties::default()
    };
    b.publish("rr/topic", QoS::AtLeastOnce, 1, b"response", Some(response));
    // The requester's own request was routed before the response existed: had no-local
    // let it through, it would come first.
    let got = next_publish_skipping_acks(&mut a);
    assert_eq!(&got.payload[..], b"response");
    assert_eq!(
        got.properties.and_then(|p| p.correlation_data).as_deref(),
        Some(&b"334"[..])
    );
    a.puback(got.pkid);
    // Nor does the responder get its response back: next is a third client's marker.
    let mut c = Raw5::simple(f.mqtt, "third");
    c.publish("rr/topic", QoS::AtMostOnce, 0, b"marker", None);
    assert_eq!(&next_publish_skipping_acks(&mut b).payload[..], b"marker");
    assert_eq!(&next_publish_skipping_acks(&mut a).payload[..], b"marker");
}

#[test]
fn shared_subscription_delivers_once_per_group() {
    let (_d, f) = ferry("", "");
    let mut a = Raw5::simple(f.mqtt, "a");
    let mut b = Raw5::simple(f.mqtt, "b");
    let mut plain = Raw5::simple(f.mqtt, "plain");
    for s in [&mut a, &mut b] {
        assert_eq!(
            s.subscribe(1, "$share/g/jobs/#", QoS::AtMostOnce),
            vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
        );
    }
    plain.subscribe(1, "jobs/#", QoS::AtMostOnce);
    let mut publ = Raw5::simple(f.mqtt, "pub");
    for i in 0..100 {
        publ.publish("jobs/x", QoS::AtMostOnce, 0, i.to_string().as_bytes(), None);
    }
    for i in 0..100 {
        assert_eq!(plain.next_publish(T).payload, i.to_string().as_bytes());
    }
    let count = |s: &mut Raw5| {
        let mut n = 0;
        while let Some(Packet::Publish(_)) = s.recv(Duration::from_millis(300)) {
            n += 1;
        }
        n
    };
    let (na, nb) = (count(&mut a), count(&mut b));
    assert_eq!(na + nb, 100);
    assert!(na > 0 && nb > 0, "spread: {na} / {nb}");
}

#[test]
fn flow_control_both_directions() {
    let (_d, f) = ferry("max_inflight = 2\n", "");
    // Ours towards a client with Receive Maximum 2: never more than 2 unacknowledged.
    let (mut sub, _) = Raw5::connect(
        f.mqtt,
        "slow",
        true,
        props(|p| p.receive_maximum = Some(2)),
        None,
    );
    sub.subscribe(1, "fc/#", QoS::AtLeastOnce);
    let mut publ = Raw5::simple(f.mqtt, "pub");
    for i in 1..=5u16 {
        // The publisher keeps within ferry's Receive Maximum (2): one at a time.
        publ.publish("fc/x", QoS::AtLeastOnce, i, i.to_string().as_bytes(), None);
        assert!(matches!(publ.recv(T), Some(Packet::PubAck(a)) if a.pkid == i));
    }
    let p1 = sub.next_publish(T);
    let p2 = sub.next_publish(T);
    assert!(
        sub.recv(Duration::from_millis(300)).is_none(),
        "a third waits for an ack"
    );
    sub.puback(p1.pkid);
    assert_eq!(sub.next_publish(T).payload, "3".as_bytes());
    sub.puback(p2.pkid);
    // The client's towards ours (Receive Maximum 2): a third unreleased QoS 2 is 0x93.
    let mut greedy = Raw5::simple(f.mqtt, "greedy");
    for i in 1..=3u16 {
        greedy.publish("fc/q2", QoS::ExactlyOnce, i, b"x", None);
    }
    let mut got = vec![];
    while let Some(p) = greedy.recv(T) {
        got.push(p);
        if matches!(got.last(), Some(Packet::Disconnect(_))) {
            break;
        }
    }
    // PUBRECs may or may not have left before the third publish was read; the
    // connection always ends with DISCONNECT 0x93 and never acknowledges the third.
    let (last, recs) = got.split_last().expect("packets");
    assert!(
        matches!(last, Packet::Disconnect(d) if d.reason_code == DisconnectReasonCode::ReceiveMaximumExceeded),
        "{got:?}"
    );
    let expected = [
        Packet::PubRec(PubRec::new(1, None)),
        Packet::PubRec(PubRec::new(2, None)),
    ];
    assert_eq!(recs, &expected[..recs.len()]);
}

#[test]
fn maximum_packet_size_both_directions() {
    let (_d, f) = ferry("max_packet_size = \"1KiB\"\n", "");
    let (mut small, _) = Raw5::connect(
        f.mqtt,
        "small",
        true,
        props(|p| p.max_packet_size = Some(128)),
        None,
    );
    small.subscribe(1, "size/#", QoS::AtMostOnce);
    let mut publ = Raw5::simple(f.mqtt, "pub");
    publ.publish("size/big", QoS::AtMostOnce, 0, &[7u8; 200], None);
    marker(&mut publ, &mut small, "size/marker");
    publ.publish("size/huge", QoS::AtMostOnce, 0, &[7u8; 2000], None);
    match publ.recv(T) {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::PacketTooLarge)
        }
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
}

#[test]
fn reason_codes_for_acks_and_server_disconnects() {
    let (_d, f) = ferry("", "[[acl]]\nfilter = \"locked/#\"\n");
    let mut c = Raw5::simple(f.mqtt, "rc");
    assert_eq!(
        c.subscribe(1, "locked/x", QoS::AtMostOnce),
        vec![SubscribeReasonCode::NotAuthorized]
    );
    assert_eq!(
        c.subscribe(2, "bad/#/x", QoS::AtMostOnce),
        vec![SubscribeReasonCode::TopicFilterInvalid]
    );
    c.publish("nobody/listens", QoS::AtLeastOnce, 1, b"x", None);
    assert!(matches!(
        c.recv(T),
        Some(Packet::PubAck(PubAck {
            pkid: 1,
            reason: PubAckReason::NoMatchingSubscribers,
            ..
        }))
    ));
    c.publish("locked/x", QoS::AtLeastOnce, 2, b"x", None);
    assert!(matches!(
        c.recv(T),
        Some(Packet::PubAck(PubAck {
            pkid: 2,
            reason: PubAckReason::NotAuthorized,
            ..
        }))
    ));
    // Takeover: the old connection is told 0x8E.
    let _new = Raw5::simple(f.mqtt, "rc");
    match c.recv(T) {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::SessionTakenOver)
        }
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    // Shutdown: 0x8B.
    let mut d = Raw5::simple(f.mqtt, "last");
    assert_eq!(f.terminate(), Some(0));
    match d.recv(T) {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::ServerShuttingDown)
        }
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
}

#[test]
fn will_delay_is_cancelled_by_a_resumed_session() {
    let (_d, f) = ferry("", "");
    let mut watcher = Raw5::simple(f.mqtt, "watcher");
    watcher.subscribe(1, "will/#", QoS::AtMostOnce);
    let will = |topic: &str, delay: u32| {
        let p = LastWillProperties {
            delay_interval: Some(delay),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
        };
        LastWill::new(topic, "gone", QoS::AtMostOnce, false, Some(p))
    };
    let session = props(|p| p.session_expiry_interval = Some(60));
    // Resumed within the delay: no will.
    let (a, _) = Raw5::connect(
        f.mqtt,
        "resumer",
        true,
        session.clone(),
        Some(will("will/resumer", 2)),
    );
    a.kill();
    let (_a, ack) = Raw5::connect(f.mqtt, "resumer", false, session.clone(), None);
    assert!(ack.session_present);
    // Not resumed: the will comes after its delay.
    let (b, _) = Raw5::connect(
        f.mqtt,
        "leaver",
        true,
        session,
        Some(will("will/leaver", 1)),
    );
    let gone = std::time::Instant::now();
    b.kill();
    let p = watcher.next_publish(T);
    assert_eq!(topic_of(&p), "will/leaver", "only the leaver's will");
    assert!(
        gone.elapsed() >= Duration::from_millis(900),
        "after the delay: {:?}",
        gone.elapsed()
    );
    // The resumer's will (due at 2 s) never comes.
    let mut publ = Raw5::simple(f.mqtt, "pub");
    std::thread::sleep(Duration::from_millis(2200));
    marker(&mut publ, &mut watcher, "will/marker");
}

/// A client without an id that asks for a persistent session gets an id nobody had, also
/// after a restart: ids counted from 1 again would hand the first new client after a
/// restart the session (and queued messages) of another.
#[test]
fn assigned_client_ids_are_not_reused_after_a_restart() {
    let (dir, f) = ferry("", "");
    let persistent = || props(|p| p.session_expiry_interval = Some(3600));
    let mut before = Vec::new();
    // Two sessions: counted ids would then collide after the restart (the restored
    // sessions take the first numbers, the next connection gets the second one's).
    for _ in 0..2 {
        let (c, ack) = Raw5::connect(f.mqtt, "", true, persistent(), None);
        before.push(ack.properties.unwrap().assigned_client_identifier.unwrap());
        c.kill();
    }
    for id in &before {
        f.wait_log(
            &[&format!("client_id={id} "), "MQTT client disconnected"],
            T,
        );
    }
    assert_eq!(f.terminate(), Some(0));
    let config = std::fs::read_to_string(dir.path().join("ferry.toml")).unwrap();
    let f = Ferry::start(dir.path(), &config);
    f.wait_log(&["restored persistent MQTT sessions"], T);
    for _ in 0..6 {
        let (_c, ack) = Raw5::connect(f.mqtt, "", false, persistent(), None);
        assert!(!ack.session_present, "a new client got a stored session");
        let id = ack.properties.unwrap().assigned_client_identifier.unwrap();
        assert!(!before.contains(&id), "{id} was given before the restart");
    }
}
