//! Whole-codec tests: shared sample packets and helpers; the checks live in
//! the submodules.

mod errors;
mod fuzz;
mod roundtrip;
mod v5;
mod v5_errors;
mod vectors;

use bytes::{Bytes, BytesMut};

use super::*;

pub(super) const V3: [Protocol; 2] = [Protocol::V31, Protocol::V311];
pub(super) const ALL: [Protocol; 3] = [Protocol::V31, Protocol::V311, Protocol::V5];
pub(super) const MAX: usize = 1 << 20;

pub(super) fn enc(p: &Packet, proto: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    encode(p, proto, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(p, proto), "encoded_len of {p:?}");
    out
}

/// The protocol argument `decode` should get for `p`: CONNECT is decoded as
/// the first packet of a connection.
pub(super) fn ctx(p: &Packet, proto: Protocol) -> Option<Protocol> {
    match p {
        Packet::Connect(_) => None,
        _ => Some(proto),
    }
}

/// Decodes bytes that must hold exactly one packet.
pub(super) fn dec1(bytes: &[u8], proto: Option<Protocol>) -> Result<Packet, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let p = decode(&mut buf, proto, MAX)?.expect("whole packet");
    assert!(buf.is_empty(), "leftover bytes after {p:?}");
    Ok(p)
}

pub(super) fn err(bytes: &[u8], proto: Option<Protocol>) -> CodecError {
    dec1(bytes, proto).unwrap_err()
}

pub(super) fn connect(proto: Protocol, id: &str) -> Connect {
    Connect {
        protocol: proto,
        client_id: id.into(),
        clean_start: true,
        keep_alive: 60,
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub(super) fn publish(qos: QoS, topic: &str, pkid: u16, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid,
        payload: Bytes::from_static(payload),
        properties: None,
    }
}

/// Packets valid in every version (no v5-only content).
pub(super) fn common_samples(proto: Protocol) -> Vec<Packet> {
    let mut full = connect(proto, "client-1");
    full.clean_start = false;
    full.keep_alive = 65_535;
    full.will = Some(LastWill {
        topic: "dev/1/status".into(),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties::default(),
    });
    full.username = Some("user".into());
    full.password = Some(Bytes::from_static(b"\x00\xffsecret"));
    let mut user_only = connect(proto, "");
    user_only.username = Some("u".into());
    user_only.will = Some(LastWill {
        topic: "w".into(),
        payload: Bytes::new(),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let mut dup = publish(QoS::ExactlyOnce, "a/b/c", 65_535, b"\x00\x01\x02");
    dup.dup = true;
    dup.retain = true;
    let big = Bytes::from(vec![0xA5; 70_000]);
    let subscribe = Subscribe {
        pkid: 7,
        filters: vec![
            SubscribeFilter::new("a/+/c", QoS::AtMostOnce),
            SubscribeFilter::new("#", QoS::AtLeastOnce),
            SubscribeFilter::new("x/y", QoS::ExactlyOnce),
        ],
        properties: None,
    };
    vec![
        Packet::Connect(Box::new(connect(proto, "c"))),
        Packet::Connect(Box::new(full)),
        Packet::Connect(Box::new(user_only)),
        Packet::ConnAck(ConnAck {
            session_present: proto != Protocol::V31,
            code: 0,
            properties: None,
        }),
        Packet::Publish(publish(QoS::AtMostOnce, "t", 0, b"hello")),
        Packet::Publish(publish(QoS::AtLeastOnce, "a/b", 1, b"")),
        Packet::Publish(dup),
        Packet::Publish(Publish {
            payload: big,
            ..publish(QoS::AtMostOnce, "big", 0, b"")
        }),
        Packet::PubAck(PubAck::new(1)),
        Packet::PubRec(PubAck::new(2)),
        Packet::PubRel(PubAck::new(3)),
        Packet::PubComp(PubAck::new(65_535)),
        Packet::Subscribe(subscribe),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 9,
            filters: vec!["a/+/c".into(), "#".into()],
            properties: None,
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect {
            reason: 0,
            properties: None,
        }),
    ]
}

/// Packets whose v3 and v5 forms differ, in their v3 shape.
pub(super) fn v3_samples(proto: Protocol) -> Vec<Packet> {
    let mut v = common_samples(proto);
    v.extend([
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: 5,
            properties: None,
        }),
        Packet::SubAck(SubAck {
            pkid: 7,
            codes: vec![0, 1, 2, 0x80],
            properties: None,
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 9,
            codes: vec![],
            properties: None,
        }),
    ]);
    v
}

/// Tiny deterministic generator so split tests need no extra crate.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
