//! MQTT 5: every property of every packet, reason codes, and property errors.

use bytes::Bytes;

use super::roundtrip::{check_byte_at_a_time, check_random_splits, check_roundtrip};
use super::*;

const V5: Option<Protocol> = Some(Protocol::V5);

fn users() -> UserProperties {
    vec![
        ("k".into(), "v".into()),
        ("k".into(), "v2".into()),
        ("".into(), "".into()),
    ]
}

fn b(s: &'static [u8]) -> Option<Bytes> {
    Some(Bytes::from_static(s))
}

fn s(v: &str) -> Option<String> {
    Some(v.into())
}

fn ack_props() -> Option<Box<AckProperties>> {
    Some(Box::new(AckProperties {
        reason_string: s("because"),
        user_properties: users(),
    }))
}

pub(super) fn full_connect() -> Connect {
    let mut c = connect(Protocol::V5, "v5-client");
    c.password = b(b"token"); // password without user name is fine in v5
    c.properties = ConnectProperties {
        session_expiry: Some(u32::MAX),
        receive_maximum: Some(10),
        maximum_packet_size: Some(1 << 20),
        topic_alias_maximum: Some(0),
        request_response_information: Some(1),
        request_problem_information: Some(0),
        user_properties: users(),
        authentication_method: s("SCRAM-SHA-1"),
        authentication_data: b(b"\x01\x02"),
    };
    c.will = Some(LastWill {
        topic: "will/t".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: WillProperties {
            will_delay: Some(30),
            payload_format: Some(1),
            message_expiry: Some(3600),
            content_type: s("text/plain"),
            response_topic: s("resp/t"),
            correlation_data: b(b"corr"),
            user_properties: users(),
        },
    });
    c
}

fn full_connack() -> ConnAck {
    ConnAck {
        session_present: true,
        code: reason::SUCCESS,
        properties: Some(Box::new(ConnAckProperties {
            session_expiry: Some(0),
            receive_maximum: Some(65_535),
            maximum_qos: Some(1),
            retain_available: Some(0),
            maximum_packet_size: Some(1024),
            assigned_client_id: s("ferry-auto-1"),
            topic_alias_maximum: Some(16),
            reason_string: s("ok"),
            user_properties: users(),
            wildcard_available: Some(1),
            subscription_identifiers_available: Some(1),
            shared_subscription_available: Some(0),
            server_keep_alive: Some(30),
            response_information: s("resp/"),
            server_reference: s("other:1883"),
            authentication_method: s("SCRAM-SHA-1"),
            authentication_data: b(b"srv"),
        })),
    }
}

fn full_publish() -> Publish {
    let mut p = publish(QoS::AtLeastOnce, "a/b", 77, b"{\"x\":1}");
    p.properties = Some(Box::new(PublishProperties {
        payload_format: Some(1),
        message_expiry: Some(60),
        topic_alias: Some(3),
        response_topic: s("r/t"),
        correlation_data: b(b"\x00"),
        user_properties: users(),
        subscription_identifiers: vec![1, MAX_VARINT as u32, 200],
        content_type: s("application/json"),
    }));
    p
}

pub(super) fn v5_samples() -> Vec<Packet> {
    let mut v = common_samples(Protocol::V5);
    let mut aliased = publish(QoS::AtMostOnce, "", 0, b"via alias");
    aliased.properties = Some(Box::new(PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    }));
    let mut filter = SubscribeFilter::new("$share/g/a/#", QoS::ExactlyOnce);
    filter.no_local = true;
    filter.retain_as_published = true;
    filter.retain_handling = 2;
    let pub_ack = |reason, properties| PubAck {
        pkid: 5,
        reason,
        properties,
    };
    v.extend([
        Packet::Connect(Box::new(full_connect())),
        Packet::ConnAck(full_connack()),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: reason::NOT_AUTHORIZED,
            properties: None,
        }),
        Packet::Publish(full_publish()),
        Packet::Publish(aliased),
        Packet::PubAck(pub_ack(reason::NO_MATCHING_SUBSCRIBERS, ack_props())),
        Packet::PubAck(pub_ack(reason::SUCCESS, ack_props())),
        Packet::PubRec(pub_ack(reason::QUOTA_EXCEEDED, None)),
        Packet::PubRel(pub_ack(reason::PACKET_IDENTIFIER_NOT_FOUND, ack_props())),
        Packet::PubComp(pub_ack(reason::SUCCESS, ack_props())),
        Packet::Subscribe(Subscribe {
            pkid: 8,
            filters: vec![filter, SubscribeFilter::new("x", QoS::AtMostOnce)],
            properties: Some(Box::new(SubscribeProperties {
                subscription_identifier: Some(42),
                user_properties: users(),
            })),
        }),
        Packet::SubAck(SubAck {
            pkid: 8,
            codes: vec![0, 1, 2, 0x80, 0x8F, 0x9E, 0xA1, 0xA2],
            properties: ack_props(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 9,
            filters: vec!["x".into()],
            properties: Some(Box::new(AckProperties {
                reason_string: None,
                user_properties: users(),
            })),
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 9,
            codes: vec![reason::SUCCESS, reason::NO_SUBSCRIPTION_EXISTED],
            properties: ack_props(),
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 10,
            codes: vec![reason::SUCCESS],
            properties: None,
        }),
        Packet::Disconnect(Disconnect {
            reason: reason::DISCONNECT_WITH_WILL_MESSAGE,
            properties: Some(Box::new(DisconnectProperties {
                session_expiry: Some(100),
                reason_string: s("bye"),
                user_properties: users(),
                server_reference: s("elsewhere"),
            })),
        }),
        Packet::Disconnect(Disconnect {
            reason: reason::SESSION_TAKEN_OVER,
            properties: None,
        }),
        Packet::Auth(Auth {
            reason: reason::CONTINUE_AUTHENTICATION,
            properties: Some(Box::new(AuthProperties {
                authentication_method: s("SCRAM-SHA-1"),
                authentication_data: b(b"challenge"),
                reason_string: s("more"),
                user_properties: users(),
            })),
        }),
        Packet::Auth(Auth {
            reason: reason::RE_AUTHENTICATE,
            properties: None,
        }),
    ]);
    v
}

#[test]
fn roundtrip_v5() {
    check_roundtrip(&v5_samples(), Protocol::V5);
}

#[test]
fn byte_at_a_time_v5() {
    let samples: Vec<Packet> = v5_samples()
        .into_iter()
        .filter(|p| encoded_len(p, Protocol::V5) < 1000)
        .collect();
    check_byte_at_a_time(&samples, Protocol::V5);
}

#[test]
fn random_splits_v5() {
    check_random_splits(&v5_samples(), Protocol::V5, 0xDEAD_BEEF);
}

#[test]
fn empty_property_sets_encode_as_none() {
    let mut p = publish(QoS::AtMostOnce, "t", 0, b"");
    p.properties = Some(Box::default());
    let back = dec1(&enc(&Packet::Publish(p), Protocol::V5), V5).unwrap();
    assert_eq!(back, Packet::Publish(publish(QoS::AtMostOnce, "t", 0, b"")));
}
