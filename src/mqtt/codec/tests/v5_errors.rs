//! MQTT 5 error paths: property rules, topic aliases, reason codes.

use bytes::BytesMut;

use super::*;

const V5: Option<Protocol> = Some(Protocol::V5);

/// A v5 PUBLISH "t" at QoS 0 with the given raw property block contents.
fn publish_with_props(props: &[u8]) -> Vec<u8> {
    let mut out = vec![
        0x30,
        (3 + 1 + props.len()) as u8,
        0,
        1,
        b't',
        props.len() as u8,
    ];
    out.extend_from_slice(props);
    out
}

#[test]
fn property_errors() {
    let e = |props: &[u8]| err(&publish_with_props(props), V5);
    // Session expiry belongs to CONNECT/CONNACK/DISCONNECT, not PUBLISH.
    assert_eq!(
        e(b"\x11\x00\x00\x00\x01"),
        CodecError::InvalidProperty { id: 0x11 }
    );
    assert_eq!(e(b"\x7f\x00"), CodecError::InvalidProperty { id: 0x7f });
    assert_eq!(
        e(b"\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02"),
        CodecError::DuplicateProperty { id: 0x02 }
    );
    assert!(matches!(e(b"\x01\x02"), CodecError::ProtocolError(_)));
    assert!(matches!(e(b"\x23\x00\x00"), CodecError::ProtocolError(_)));
    assert!(matches!(e(b"\x0b\x00"), CodecError::ProtocolError(_)));
    assert_eq!(e(b"\x02\x00\x00"), CodecError::Truncated("property value"));
    assert_eq!(e(b"\x26\x00\x01k"), CodecError::Truncated("property value"));
    assert_eq!(e(b"\x03\x00\x01\xff"), CodecError::InvalidUtf8);
    // Property length larger than the packet.
    assert_eq!(
        err(b"\x30\x05\x00\x01t\x09\x01", V5),
        CodecError::Truncated("properties")
    );
    // Repeated subscription identifiers and user properties are fine.
    assert!(
        dec1(
            &publish_with_props(b"\x0b\x01\x0b\x02\x26\x00\x00\x00\x00\x26\x00\x00\x00\x00"),
            V5
        )
        .is_ok()
    );
}

#[test]
fn connect_property_rules() {
    let mut c = super::v5::full_connect();
    c.properties.authentication_method = None;
    let bad = Packet::Connect(Box::new(c));
    assert!(matches!(
        encode(&bad, Protocol::V5, &mut BytesMut::new()),
        Err(CodecError::ProtocolError(_))
    ));
    // Same packet hand-built: flags 0x02, keep alive 0, props: auth data only.
    let bytes = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x00\x04\x16\x00\x01x\x00\x00";
    assert!(matches!(err(bytes, None), CodecError::ProtocolError(_)));
    // Receive maximum 0 is a protocol error; will properties in the wrong place are invalid.
    let bytes = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x00\x03\x21\x00\x00\x00\x00";
    assert!(matches!(err(bytes, None), CodecError::ProtocolError(_)));
    let bytes = b"\x10\x12\x00\x04MQTT\x05\x02\x00\x00\x05\x18\x00\x00\x00\x01\x00\x00";
    assert_eq!(err(bytes, None), CodecError::InvalidProperty { id: 0x18 });
}

#[test]
fn topic_alias_and_empty_topic() {
    // Empty topic without alias.
    assert_eq!(err(b"\x30\x03\x00\x00\x00", V5), CodecError::InvalidTopic);
    // Empty topic with alias 1.
    let Packet::Publish(p) = dec1(b"\x30\x06\x00\x00\x03\x23\x00\x01", V5).unwrap() else {
        panic!("not publish");
    };
    assert_eq!(p.topic, "");
    assert_eq!(p.properties.and_then(|p| p.topic_alias), Some(1));
    // Wildcards stay invalid even with an alias.
    assert_eq!(
        err(b"\x30\x07\x00\x01#\x03\x23\x00\x01", V5),
        CodecError::InvalidTopic
    );
    // Encoding an empty topic without an alias fails, and v3 never allows it.
    let mut p = publish(QoS::AtMostOnce, "", 0, b"");
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&Packet::Publish(p.clone()), Protocol::V5, &mut out),
        Err(CodecError::InvalidTopic)
    );
    p.properties = Some(Box::new(PublishProperties {
        topic_alias: Some(2),
        ..Default::default()
    }));
    assert_eq!(
        encode(&Packet::Publish(p), Protocol::V311, &mut out),
        Err(CodecError::InvalidTopic)
    );
}

#[test]
fn reason_code_errors() {
    assert_eq!(
        err(b"\x40\x03\x00\x01\x01", V5),
        CodecError::InvalidReasonCode(1)
    );
    assert_eq!(
        err(b"\x62\x03\x00\x01\x10", V5),
        CodecError::InvalidReasonCode(0x10)
    );
    assert_eq!(
        err(b"\x20\x03\x00\x02\x00", V5),
        CodecError::InvalidReasonCode(2)
    );
    assert_eq!(
        err(b"\x90\x04\x00\x01\x00\x11", V5),
        CodecError::InvalidReasonCode(0x11)
    );
    assert_eq!(
        err(b"\xb0\x04\x00\x01\x00\x01", V5),
        CodecError::InvalidReasonCode(1)
    );
    assert_eq!(
        err(b"\xe0\x01\x10", V5),
        CodecError::InvalidReasonCode(0x10)
    );
    assert_eq!(
        err(b"\xf0\x02\x80\x00", V5),
        CodecError::InvalidReasonCode(0x80)
    );
    assert!(matches!(
        err(b"\xb0\x03\x00\x01\x00", V5),
        CodecError::MalformedPacket(_)
    ));
    let bad = Packet::PubAck(PubAck {
        pkid: 1,
        reason: 0x92,
        properties: None,
    });
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&bad, Protocol::V5, &mut out),
        Err(CodecError::InvalidReasonCode(0x92))
    );
    assert!(out.is_empty());
}

#[test]
fn subscribe_v5_rules() {
    // Options: reserved bits 6-7, retain handling 3.
    assert!(matches!(
        err(b"\x82\x07\x00\x01\x00\x00\x01a\x40", V5),
        CodecError::MalformedPacket(_)
    ));
    assert!(matches!(
        err(b"\x82\x07\x00\x01\x00\x00\x01a\x30", V5),
        CodecError::ProtocolError(_)
    ));
    assert_eq!(
        err(b"\x82\x03\x00\x01\x00", V5),
        CodecError::EmptySubscription
    );
    // Subscription identifier 0 and a repeated one.
    assert!(matches!(
        err(b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01a\x00", V5),
        CodecError::ProtocolError(_)
    ));
    assert_eq!(
        err(b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00", V5),
        CodecError::DuplicateProperty { id: 0x0b }
    );
    // UNSUBSCRIBE may not carry a reason string.
    assert_eq!(
        err(b"\xa2\x0a\x00\x01\x04\x1f\x00\x01r\x00\x01a", V5),
        CodecError::InvalidProperty { id: 0x1f }
    );
    let mut sub = SubscribeFilter::new("a", QoS::AtMostOnce);
    sub.retain_handling = 3;
    let p = Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![sub],
        properties: None,
    });
    assert!(matches!(
        encode(&p, Protocol::V5, &mut BytesMut::new()),
        Err(CodecError::ProtocolError(_))
    ));
}
