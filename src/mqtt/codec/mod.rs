//! MQTT 3.1 / 3.1.1 / 5.0 packet codec: pure functions between bytes and
//! [`Packet`] values, no I/O.
//!
//! Written for the server side (it validates what clients may send), but
//! every packet type decodes and encodes both ways so tests can round-trip.
//!
//! Invariants kept here:
//! - `decode` either leaves the buffer untouched (`Ok(None)`) or removes
//!   exactly one packet's bytes (`Ok(Some)`); payloads and binary fields are
//!   zero-copy slices of those bytes.
//! - `encode` refuses (and writes nothing for) any packet that `decode`
//!   would reject, so a successful encode always decodes to an equal packet,
//!   except where documented on the field (v3 fields that have no wire form).
//! - "No properties" is always `None`; decode never yields `Some(default)`.

mod acks;
mod connect;
mod error;
mod header;
mod primitives;
mod properties;
mod publish;
// A complete table of the spec's codes; the broker uses only some of them.
#[allow(dead_code)]
pub mod reason;
mod subscribe;
mod topic;

#[cfg(test)]
mod tests;

use bytes::{Buf, BytesMut};

// The public API surface. ferry is a binary, so items it does not use yet
// would otherwise warn; the allows below cover exactly that.
pub use acks::{Auth, Disconnect, PubAck};
#[allow(unused_imports)]
pub use connect::{ConnAck, Connect, LastWill};
pub use error::CodecError;
pub use header::MAX_VARINT;
#[allow(unused_imports)]
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperties, WillProperties, ids as property_ids,
};
pub use publish::Publish;
#[allow(unused_imports)]
pub use subscribe::{SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe};
#[allow(unused_imports)]
pub use topic::{valid_topic_filter, valid_topic_name};

use primitives::{Counter, Reader, Sink, count};

/// Protocol version negotiated by CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1, protocol name "MQIsdp", level 3.
    V31,
    /// MQTT 3.1.1, protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0, protocol name "MQTT", level 5.
    V5,
}

impl Protocol {
    /// The protocol level byte sent in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V31 => 3,
            Self::V311 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name sent in CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            Self::V31 => "MQIsdp",
            Self::V311 | Self::V5 => "MQTT",
        }
    }

    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

/// Quality of service level.
// The spec's names; clippy objects to the shared suffix only in a binary crate.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// `None` for 3 and above, which every version reserves.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// One MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: by far the largest variant, and rare.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubAck),
    PubRel(PubAck),
    PubComp(PubAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

/// Decodes one packet from the front of `buf`.
///
/// - `Ok(None)`: not a whole packet yet; `buf` is untouched.
/// - `Ok(Some(p))`: exactly that packet's bytes were removed from `buf`.
/// - `Err(_)`: the connection must be closed; `buf` is in an unspecified state.
///
/// `protocol == None` means no CONNECT has been accepted yet, so only CONNECT
/// may arrive. CONNECT itself is always decoded by its own protocol level.
/// The total size (fixed header included) is checked against
/// `max_packet_size` as soon as the fixed header is complete, so an oversize
/// packet is refused before its body is buffered.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, CodecError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    header::check_type_and_flags(first >> 4, first & 0x0F, protocol)?;
    let Some(h) = header::parse(buf)? else {
        return Ok(None);
    };
    let total = h.total_len();
    if total > max_packet_size {
        return Err(CodecError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(h.header_len);
    // Without a protocol only CONNECT gets here, and CONNECT ignores it.
    let protocol = protocol.unwrap_or(Protocol::V311);
    decode_body(h.packet_type, h.flags, Reader::new(frame), protocol).map(Some)
}

fn decode_body(packet_type: u8, flags: u8, r: Reader, p: Protocol) -> Result<Packet, CodecError> {
    use acks::AckKind;
    use header as h;
    Ok(match packet_type {
        h::CONNECT => Packet::Connect(Box::new(connect::decode_connect(r)?)),
        h::CONNACK => Packet::ConnAck(connect::decode_connack(r, p)?),
        h::PUBLISH => Packet::Publish(publish::decode(flags, r, p)?),
        h::PUBACK => Packet::PubAck(acks::decode_ack(r, p, AckKind::PubAck)?),
        h::PUBREC => Packet::PubRec(acks::decode_ack(r, p, AckKind::PubRec)?),
        h::PUBREL => Packet::PubRel(acks::decode_ack(r, p, AckKind::PubRel)?),
        h::PUBCOMP => Packet::PubComp(acks::decode_ack(r, p, AckKind::PubComp)?),
        h::SUBSCRIBE => Packet::Subscribe(subscribe::decode_subscribe(r, p)?),
        h::SUBACK => Packet::SubAck(subscribe::decode_suback(r, p)?),
        h::UNSUBSCRIBE => Packet::Unsubscribe(subscribe::decode_unsubscribe(r, p)?),
        h::UNSUBACK => Packet::UnsubAck(subscribe::decode_unsuback(r, p)?),
        h::PINGREQ => {
            r.finish("PINGREQ with a body")?;
            Packet::PingReq
        }
        h::PINGRESP => {
            r.finish("PINGRESP with a body")?;
            Packet::PingResp
        }
        h::DISCONNECT => Packet::Disconnect(acks::decode_disconnect(r, p)?),
        h::AUTH => Packet::Auth(acks::decode_auth(r, p)?),
        other => return Err(CodecError::UnknownPacketType(other)),
    })
}

/// The fixed header's first byte: type in the high nibble, flags in the low.
fn first_byte(packet: &Packet) -> u8 {
    use header as h;
    let (t, flags) = match packet {
        Packet::Connect(_) => (h::CONNECT, 0),
        Packet::ConnAck(_) => (h::CONNACK, 0),
        Packet::Publish(p) => (h::PUBLISH, p.flags()),
        Packet::PubAck(_) => (h::PUBACK, 0),
        Packet::PubRec(_) => (h::PUBREC, 0),
        Packet::PubRel(_) => (h::PUBREL, 0b0010),
        Packet::PubComp(_) => (h::PUBCOMP, 0),
        Packet::Subscribe(_) => (h::SUBSCRIBE, 0b0010),
        Packet::SubAck(_) => (h::SUBACK, 0),
        Packet::Unsubscribe(_) => (h::UNSUBSCRIBE, 0b0010),
        Packet::UnsubAck(_) => (h::UNSUBACK, 0),
        Packet::PingReq => (h::PINGREQ, 0),
        Packet::PingResp => (h::PINGRESP, 0),
        Packet::Disconnect(_) => (h::DISCONNECT, 0),
        Packet::Auth(_) => (h::AUTH, 0),
    };
    (t << 4) | flags
}

fn write_body<S: Sink>(packet: &Packet, p: Protocol, s: &mut S) -> Result<(), CodecError> {
    use acks::AckKind;
    match packet {
        Packet::Connect(c) => c.write(s),
        Packet::ConnAck(c) => c.write(p, s),
        Packet::Publish(x) => x.write(p, s),
        Packet::PubAck(a) => a.write(p, AckKind::PubAck, s),
        Packet::PubRec(a) => a.write(p, AckKind::PubRec, s),
        Packet::PubRel(a) => a.write(p, AckKind::PubRel, s),
        Packet::PubComp(a) => a.write(p, AckKind::PubComp, s),
        Packet::Subscribe(x) => x.write(p, s),
        Packet::SubAck(x) => x.write(p, s),
        Packet::Unsubscribe(x) => x.write(p, s),
        Packet::UnsubAck(x) => x.write(p, s),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => d.write(p, s),
        Packet::Auth(a) => a.write(p, s),
    }
}

/// Validates and sizes a packet: (body length, total length).
fn sizes(packet: &Packet, protocol: Protocol) -> Result<(usize, usize), CodecError> {
    let body = count(|c: &mut Counter| write_body(packet, protocol, c))?;
    if body > MAX_VARINT {
        return Err(CodecError::PacketTooLarge {
            size: body,
            max: MAX_VARINT,
        });
    }
    Ok((body, 1 + header::varint_len(body) + body))
}

/// Appends `packet` to `out` in `protocol`'s wire form. CONNECT always uses
/// its own `protocol` field. On error nothing is written.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), CodecError> {
    let (body, total) = sizes(packet, protocol)?;
    out.reserve(total);
    out.put_u8(first_byte(packet));
    header::put_varint(out, body)?;
    // Cannot fail: the counting pass above ran the same validations.
    write_body(packet, protocol, out)
}

/// Exactly how many bytes [`encode`] would append; 0 if it would fail.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    sizes(packet, protocol).map_or(0, |(_, total)| total)
}
