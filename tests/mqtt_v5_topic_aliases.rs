//! MQTT 5 topic aliases: resolved from clients up to `mqtt.max_topic_aliases`, and sent to
//! subscribers only when `mqtt.outbound_topic_aliases` is on, at the packet level.

mod common;

use common::raw5::{Raw5, topic_of};
use common::{Ferry, base_config};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, DisconnectReasonCode, Packet, PublishProperties,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn ferry(mqtt_extra: &str) -> (tempfile::TempDir, Ferry) {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()).replace("[mqtt]\n", &format!("[mqtt]\n{mqtt_extra}"));
    let f = Ferry::start(dir.path(), &config);
    (dir, f)
}

fn props(f: impl FnOnce(&mut ConnectProperties)) -> ConnectProperties {
    let mut p = ConnectProperties::new();
    f(&mut p);
    p
}

#[test]
fn topic_aliases_in_both_directions() {
    let (_d, f) = ferry("outbound_topic_aliases = true\n");
    let (mut sub, _) = Raw5::connect(
        f.mqtt,
        "sub",
        true,
        props(|p| p.topic_alias_max = Some(4)),
        None,
    );
    sub.subscribe(1, "alias/#", QoS::AtMostOnce);
    let mut publ = Raw5::simple(f.mqtt, "pub");
    let alias = |a: u16| PublishProperties {
        topic_alias: Some(a),
        ..Default::default()
    };
    publ.publish("alias/long/topic", QoS::AtMostOnce, 0, b"1", Some(alias(3)));
    publ.publish("", QoS::AtMostOnce, 0, b"2", Some(alias(3)));
    let first = sub.next_publish(T);
    let second = sub.next_publish(T);
    // ferry resolved the inbound alias, and assigned its own alias 1 outbound.
    assert_eq!(
        (
            topic_of(&first),
            first.properties.and_then(|p| p.topic_alias)
        ),
        ("alias/long/topic".into(), Some(1))
    );
    assert_eq!(
        (
            topic_of(&second),
            second.properties.and_then(|p| p.topic_alias)
        ),
        (String::new(), Some(1))
    );
    assert_eq!(
        (&first.payload[..], &second.payload[..]),
        (&b"1"[..], &b"2"[..])
    );
    // A topic shorter than the alias property is never aliased.
    publ.publish("al", QoS::AtMostOnce, 0, b"short", None);
    sub.subscribe(2, "al", QoS::AtMostOnce);
    publ.publish("al", QoS::AtMostOnce, 0, b"short", None);
    let short = sub.next_publish(T);
    assert_eq!(
        (
            topic_of(&short),
            short.properties.and_then(|p| p.topic_alias)
        ),
        ("al".into(), None)
    );
    // An alias beyond the maximum ferry announced is a protocol violation (0x94).
    publ.publish("alias/x", QoS::AtMostOnce, 0, b"3", Some(alias(65)));
    match publ.recv(T) {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::TopicAliasInvalid)
        }
        other => panic!("expected DISCONNECT 0x94, got {other:?}"),
    }
}

/// By default ferry sends no topic aliases, even to a subscriber that announces a
/// maximum: several common clients announce one and then mishandle aliased publishes
/// (issue 11, defect 4).
#[test]
fn no_outbound_topic_aliases_by_default() {
    let (_d, f) = ferry("");
    let (mut sub, _) = Raw5::connect(
        f.mqtt,
        "sub",
        true,
        props(|p| p.topic_alias_max = Some(10)),
        None,
    );
    sub.subscribe(1, "alias/#", QoS::AtMostOnce);
    let mut publ = Raw5::simple(f.mqtt, "pub");
    for _ in 0..2 {
        publ.publish("alias/long/topic", QoS::AtMostOnce, 0, b"x", None);
        let got = sub.next_publish(T);
        assert_eq!(
            (topic_of(&got), got.properties.and_then(|p| p.topic_alias)),
            ("alias/long/topic".into(), None)
        );
    }
}
