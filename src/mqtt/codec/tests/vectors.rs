//! Byte-exact vectors written out from the MQTT specs and real client traffic.

use bytes::Bytes;

use super::*;

const V4: Option<Protocol> = Some(Protocol::V311);
const V5: Option<Protocol> = Some(Protocol::V5);

/// Decodes `bytes`, compares with `want`, and checks encode reproduces `bytes`.
fn exact(bytes: &[u8], proto: Protocol, ctx: Option<Protocol>, want: Packet) {
    assert_eq!(dec1(bytes, ctx).unwrap(), want);
    assert_eq!(&enc(&want, proto)[..], bytes);
}

#[test]
fn ping_and_disconnect() {
    exact(&[0xC0, 0x00], Protocol::V311, V4, Packet::PingReq);
    exact(&[0xD0, 0x00], Protocol::V311, V4, Packet::PingResp);
    let normal = Disconnect {
        reason: 0,
        properties: None,
    };
    exact(
        &[0xE0, 0x00],
        Protocol::V311,
        V4,
        Packet::Disconnect(normal.clone()),
    );
    exact(&[0xE0, 0x00], Protocol::V5, V5, Packet::Disconnect(normal));
}

#[test]
fn mosquitto_pub_style_connect_311() {
    // `mosquitto_pub -i mosq-pub -t t -m m`: clean session, keep alive 60.
    let bytes = b"\x10\x14\x00\x04MQTT\x04\x02\x00\x3c\x00\x08mosq-pub";
    exact(
        bytes,
        Protocol::V311,
        None,
        Packet::Connect(Box::new(connect(Protocol::V311, "mosq-pub"))),
    );
    // Empty client id, as sent when the client lets the server assign one.
    let bytes = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00";
    exact(
        bytes,
        Protocol::V311,
        None,
        Packet::Connect(Box::new(connect(Protocol::V311, ""))),
    );
}

#[test]
fn mqisdp_connect_31() {
    let bytes = b"\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02c1";
    exact(
        bytes,
        Protocol::V31,
        None,
        Packet::Connect(Box::new(connect(Protocol::V31, "c1"))),
    );
}

#[test]
fn spec_311_connect_flags_example() {
    // 3.1.1 figure 3.6: flags 0xCE (user, password, will QoS 1, will, clean), keep alive 10.
    let bytes =
        b"\x10\x1c\x00\x04MQTT\x04\xce\x00\x0a\x00\x02c1\x00\x01w\x00\x03bye\x00\x01u\x00\x01p";
    let mut c = connect(Protocol::V311, "c1");
    c.keep_alive = 10;
    c.will = Some(LastWill {
        topic: "w".into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c.username = Some("u".into());
    c.password = Some(Bytes::from_static(b"p"));
    exact(bytes, Protocol::V311, None, Packet::Connect(Box::new(c)));
}

#[test]
fn spec_5_connect_example() {
    // 5.0 figure 3-7: flags 0xCE, keep alive 10, properties: session expiry 10.
    let bytes = b"\x10\x23\x00\x04MQTT\x05\xce\x00\x0a\x05\x11\x00\x00\x00\x0a\x00\x02c1\x00\x00\x01w\x00\x03bye\x00\x01u\x00\x01p";
    let Packet::Connect(c) = dec1(bytes, None).unwrap() else {
        panic!("not connect");
    };
    assert_eq!(c.protocol, Protocol::V5);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.properties.session_expiry, Some(10));
    assert_eq!(c.will.as_ref().map(|w| w.qos), Some(QoS::AtLeastOnce));
    assert_eq!(&enc(&Packet::Connect(c), Protocol::V5)[..], &bytes[..]);
}

#[test]
fn spec_publish_example() {
    // 3.1.1 figure 3.11: topic "a/b", packet identifier 10, QoS 1.
    exact(
        b"\x32\x07\x00\x03a/b\x00\x0a",
        Protocol::V311,
        V4,
        Packet::Publish(publish(QoS::AtLeastOnce, "a/b", 10, b"")),
    );
    exact(
        b"\x30\x07\x00\x03a/bhi",
        Protocol::V311,
        V4,
        Packet::Publish(publish(QoS::AtMostOnce, "a/b", 0, b"hi")),
    );
}

#[test]
fn acks() {
    exact(
        b"\x20\x02\x01\x00",
        Protocol::V311,
        V4,
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: 0,
            properties: None,
        }),
    );
    exact(
        b"\x40\x02\x00\x01",
        Protocol::V311,
        V4,
        Packet::PubAck(PubAck::new(1)),
    );
    exact(
        b"\x62\x02\x00\x01",
        Protocol::V311,
        V4,
        Packet::PubRel(PubAck::new(1)),
    );
    exact(
        b"\x90\x03\x00\x01\x01",
        Protocol::V311,
        V4,
        Packet::SubAck(SubAck {
            pkid: 1,
            codes: vec![1],
            properties: None,
        }),
    );
    exact(
        b"\xb0\x02\x00\x05",
        Protocol::V311,
        V4,
        Packet::UnsubAck(UnsubAck {
            pkid: 5,
            codes: vec![],
            properties: None,
        }),
    );
}

#[test]
fn subscribe_311() {
    // Figure 3.22-style payload: "a/b" QoS 1, "c/d" QoS 2.
    let bytes = b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/d\x02";
    exact(
        bytes,
        Protocol::V311,
        V4,
        Packet::Subscribe(Subscribe {
            pkid: 10,
            filters: vec![
                SubscribeFilter::new("a/b", QoS::AtLeastOnce),
                SubscribeFilter::new("c/d", QoS::ExactlyOnce),
            ],
            properties: None,
        }),
    );
}

#[test]
fn v5_short_forms() {
    exact(
        b"\x20\x03\x00\x00\x00",
        Protocol::V5,
        V5,
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: 0,
            properties: None,
        }),
    );
    exact(
        b"\x40\x02\x00\x01",
        Protocol::V5,
        V5,
        Packet::PubAck(PubAck::new(1)),
    );
    exact(
        b"\x40\x03\x00\x01\x10",
        Protocol::V5,
        V5,
        Packet::PubAck(PubAck {
            pkid: 1,
            reason: 0x10,
            properties: None,
        }),
    );
    // Long form with an empty property block decodes to the same packet.
    assert_eq!(
        dec1(b"\x40\x04\x00\x01\x10\x00", V5).unwrap(),
        dec1(b"\x40\x03\x00\x01\x10", V5).unwrap()
    );
    // DISCONNECT with a reason always carries its (empty) property length, for clients
    // that cannot parse the shorter form; the shorter form still decodes.
    assert_eq!(
        dec1(b"\xe0\x01\x8e", V5).unwrap(),
        dec1(b"\xe0\x02\x8e\x00", V5).unwrap()
    );
    exact(
        b"\xe0\x02\x8e\x00",
        Protocol::V5,
        V5,
        Packet::Disconnect(Disconnect {
            reason: 0x8e,
            properties: None,
        }),
    );
    exact(
        b"\xf0\x00",
        Protocol::V5,
        V5,
        Packet::Auth(Auth {
            reason: 0,
            properties: None,
        }),
    );
    exact(
        b"\xf0\x02\x18\x00",
        Protocol::V5,
        V5,
        Packet::Auth(Auth {
            reason: 0x18,
            properties: None,
        }),
    );
}
