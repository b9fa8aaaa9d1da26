//! Every decode/encode error path, with hand-built malformed packets.

use bytes::{Bytes, BytesMut};

use super::*;

const V4: Option<Protocol> = Some(Protocol::V311);

#[test]
fn oversize_detected_before_body() {
    // Remaining length 1000 announced, only the header present.
    let mut buf = BytesMut::from(&[0x30u8, 0xE8, 0x07][..]);
    assert_eq!(
        decode(&mut buf, V4, 100),
        Err(CodecError::PacketTooLarge {
            size: 1003,
            max: 100
        })
    );
    // Exactly at the limit is fine.
    let p = Packet::Publish(publish(QoS::AtMostOnce, "t", 0, b"12345"));
    let bytes = enc(&p, Protocol::V311);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, V4, bytes.len()).unwrap(), Some(p));
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        decode(&mut buf, V4, bytes.len() - 1),
        Err(CodecError::PacketTooLarge { .. })
    ));
}

#[test]
fn malformed_remaining_length() {
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0xFF, 0xFF][..]);
    assert_eq!(
        decode(&mut buf, V4, MAX),
        Err(CodecError::MalformedRemainingLength)
    );
}

#[test]
fn expected_connect_and_unknown_types() {
    assert_eq!(err(&[0xC0, 0], None), CodecError::ExpectedConnect);
    assert_eq!(
        err(&[0x30, 3, 0, 1, b't'], None),
        CodecError::ExpectedConnect
    );
    // Detected from the first byte alone.
    let mut buf = BytesMut::from(&[0x82u8][..]);
    assert_eq!(
        decode(&mut buf, None, MAX),
        Err(CodecError::ExpectedConnect)
    );
    assert_eq!(err(&[0x00, 0], V4), CodecError::UnknownPacketType(0));
    assert_eq!(err(&[0xF0, 0], V4), CodecError::UnknownPacketType(15));
}

#[test]
fn fixed_header_flags() {
    assert_eq!(
        err(b"\x80\x06\x00\x01\x00\x01a\x00", V4),
        CodecError::InvalidFlags
    );
    assert_eq!(err(b"\x60\x02\x00\x01", V4), CodecError::InvalidFlags);
    assert_eq!(
        err(b"\xa0\x05\x00\x01\x00\x01a", V4),
        CodecError::InvalidFlags
    );
    assert_eq!(
        err(b"\x36\x05\x00\x01t\x00\x01", V4),
        CodecError::InvalidFlags
    );
    assert_eq!(err(b"\x38\x03\x00\x01t", V4), CodecError::InvalidFlags);
    assert_eq!(err(b"\x41\x02\x00\x01", V4), CodecError::InvalidFlags);
    assert_eq!(
        err(b"\x11\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", None),
        CodecError::InvalidFlags
    );
    // MQTT 3.1 allowed DUP on a retransmitted SUBSCRIBE.
    assert!(dec1(b"\x8a\x06\x00\x01\x00\x01a\x00", Some(Protocol::V31)).is_ok());
}

/// A 3.1.1 CONNECT with the given connect flags and payload.
fn connect_with(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x04".to_vec();
    body.push(flags);
    body.extend_from_slice(&[0, 60]);
    body.extend_from_slice(payload);
    let mut out = vec![0x10, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

#[test]
fn connect_flags() {
    let e = |flags, payload: &[u8]| err(&connect_with(flags, payload), None);
    assert_eq!(e(0x03, b"\x00\x00"), CodecError::InvalidFlags); // reserved bit
    assert_eq!(e(0x0A, b"\x00\x00"), CodecError::InvalidFlags); // will QoS, no will
    assert_eq!(e(0x22, b"\x00\x00"), CodecError::InvalidFlags); // will retain, no will
    assert_eq!(e(0x1E, b"\x00\x00"), CodecError::InvalidFlags); // will QoS 3
    assert_eq!(e(0x42, b"\x00\x00\x00\x01p"), CodecError::InvalidFlags); // password only
    assert!(dec1(&connect_with(0x02, b"\x00\x00"), None).is_ok());
    let mut c = connect(Protocol::V311, "x");
    c.password = Some(Bytes::from_static(b"p"));
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&Packet::Connect(Box::new(c)), Protocol::V311, &mut out),
        Err(CodecError::InvalidFlags)
    );
    assert!(out.is_empty());
}

#[test]
fn connect_protocol() {
    let e = |b: &[u8]| err(b, None);
    assert_eq!(
        e(b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00"),
        CodecError::InvalidProtocol
    );
    assert_eq!(
        e(b"\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00"),
        CodecError::UnsupportedProtocolLevel(3)
    );
    assert_eq!(
        e(b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00"),
        CodecError::UnsupportedProtocolLevel(6)
    );
    assert_eq!(
        e(b"\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x00"),
        CodecError::UnsupportedProtocolLevel(4)
    );
}

#[test]
fn connect_payload_errors() {
    let e = |flags, payload: &[u8]| err(&connect_with(flags, payload), None);
    assert_eq!(e(0x02, b"\x00\x02\xc3\x28"), CodecError::InvalidUtf8);
    assert_eq!(e(0x02, b"\x00\x02a\x00"), CodecError::InvalidUtf8);
    assert_eq!(
        e(0x02, b"\x00\x05ab"),
        CodecError::Truncated("client identifier")
    );
    assert_eq!(e(0x82, b"\x00\x00"), CodecError::Truncated("user name"));
    assert!(matches!(
        e(0x02, b"\x00\x00\x00"),
        CodecError::MalformedPacket(_)
    ));
    // Will topic must be a publishable name.
    assert_eq!(
        e(0x06, b"\x00\x00\x00\x03a/#\x00\x00"),
        CodecError::InvalidTopic
    );
    assert_eq!(
        e(0x06, b"\x00\x00\x00\x00\x00\x00"),
        CodecError::InvalidTopic
    );
    // Long MQIsdp client ids are accepted (spec limit 23 is not enforced).
    let id = "x".repeat(100);
    let c = Packet::Connect(Box::new(connect(Protocol::V31, &id)));
    assert_eq!(dec1(&enc(&c, Protocol::V31), None).unwrap(), c);
}

#[test]
fn publish_errors() {
    assert_eq!(err(b"\x30\x02\x00\x00", V4), CodecError::InvalidTopic);
    assert_eq!(err(b"\x30\x05\x00\x03a/+", V4), CodecError::InvalidTopic);
    assert_eq!(err(b"\x30\x05\x00\x03a/#", V4), CodecError::InvalidTopic);
    assert_eq!(err(b"\x30\x05\x00\x03a\x00b", V4), CodecError::InvalidTopic);
    assert_eq!(err(b"\x30\x05\x00\x03a\xffb", V4), CodecError::InvalidUtf8);
    assert!(matches!(
        err(b"\x32\x05\x00\x01t\x00\x00", V4),
        CodecError::ProtocolError(_)
    ));
    assert_eq!(
        err(b"\x32\x04\x00\x01t\x00", V4),
        CodecError::Truncated("packet identifier")
    );
    let mut out = BytesMut::new();
    let p = Packet::Publish(publish(QoS::AtLeastOnce, "t", 0, b""));
    assert!(matches!(
        encode(&p, Protocol::V311, &mut out),
        Err(CodecError::ProtocolError(_))
    ));
    assert_eq!(encoded_len(&p, Protocol::V311), 0);
    let p = Packet::Publish(publish(QoS::AtMostOnce, "a/+", 0, b""));
    assert_eq!(
        encode(&p, Protocol::V311, &mut out),
        Err(CodecError::InvalidTopic)
    );
    assert!(out.is_empty());
}

#[test]
fn subscribe_errors() {
    assert_eq!(err(b"\x82\x02\x00\x01", V4), CodecError::EmptySubscription);
    assert_eq!(err(b"\xa2\x02\x00\x01", V4), CodecError::EmptySubscription);
    assert!(matches!(
        err(b"\x82\x02\x00\x00", V4),
        CodecError::ProtocolError(_)
    ));
    assert!(matches!(
        err(b"\x82\x06\x00\x01\x00\x01a\x04", V4),
        CodecError::MalformedPacket(_)
    ));
    assert!(matches!(
        err(b"\x82\x06\x00\x01\x00\x01a\x03", V4),
        CodecError::ProtocolError(_)
    ));
    assert_eq!(
        err(b"\x82\x05\x00\x01\x00\x01a", V4),
        CodecError::Truncated("subscription options")
    );
    assert_eq!(
        err(b"\x90\x03\x00\x01\x03", V4),
        CodecError::InvalidReasonCode(3)
    );
    assert!(matches!(
        err(b"\x90\x02\x00\x01", V4),
        CodecError::MalformedPacket(_)
    ));
    assert!(matches!(
        err(b"\xb0\x03\x00\x01\x00", V4),
        CodecError::MalformedPacket(_)
    ));
    let mut out = BytesMut::new();
    let s = Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![],
        properties: None,
    });
    assert_eq!(
        encode(&s, Protocol::V311, &mut out),
        Err(CodecError::EmptySubscription)
    );
}

#[test]
fn other_bodies() {
    assert!(matches!(
        err(b"\xc0\x01\x00", V4),
        CodecError::MalformedPacket(_)
    ));
    assert!(matches!(
        err(b"\xe0\x01\x00", V4),
        CodecError::MalformedPacket(_)
    ));
    assert!(matches!(
        err(b"\x40\x03\x00\x01\x00", V4),
        CodecError::MalformedPacket(_)
    ));
    assert!(matches!(
        err(b"\x40\x02\x00\x00", V4),
        CodecError::ProtocolError(_)
    ));
    assert_eq!(
        err(b"\x40\x01\x00", V4),
        CodecError::Truncated("packet identifier")
    );
    assert_eq!(
        err(b"\x20\x02\x00\x06", V4),
        CodecError::InvalidReasonCode(6)
    );
    assert_eq!(err(b"\x20\x02\x02\x00", V4), CodecError::InvalidFlags);
    let mut out = BytesMut::new();
    let auth = Packet::Auth(Auth {
        reason: 0,
        properties: None,
    });
    assert!(matches!(
        encode(&auth, Protocol::V311, &mut out),
        Err(CodecError::ProtocolError(_))
    ));
}

#[test]
fn encode_field_too_long() {
    let topic = "t".repeat(65_536);
    let p = Packet::Publish(publish(QoS::AtMostOnce, &topic, 0, b""));
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&p, Protocol::V311, &mut out),
        Err(CodecError::FieldTooLong { len: 65_536 })
    );
    assert!(out.is_empty());
    assert_eq!(encoded_len(&p, Protocol::V311), 0);
}

#[test]
fn display_texts_are_readable() {
    let e = CodecError::PacketTooLarge { size: 10, max: 5 };
    assert_eq!(
        e.to_string(),
        "packet of 10 bytes exceeds the maximum packet size of 5 bytes"
    );
    assert_eq!(
        CodecError::InvalidProperty { id: 0x11 }.to_string(),
        "property 0x11 is unknown or not allowed in this packet"
    );
    assert_eq!(e.reason_code(), reason::PACKET_TOO_LARGE);
    assert_eq!(
        CodecError::InvalidUtf8.reason_code(),
        reason::MALFORMED_PACKET
    );
}
