//! Property wire format (spec 2.2.2): identifiers, typed values, the
//! length-prefixed block, and the value rules the spec makes a Protocol Error.

use bytes::Bytes;

use super::super::error::CodecError;
use super::super::header::{MAX_VARINT, put_varint};
use super::super::primitives::{Reader, Sink, count, put_binary, put_str};

/// Property identifiers (spec table 2-4).
pub mod ids {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use ids::*;

/// One decoded property value; the identifier fixes the variant.
#[derive(Debug)]
pub(crate) enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    Var(u32),
    Str(String),
    Bin(Bytes),
    Pair(String, String),
}

/// A packet's property set: how it absorbs decoded values and writes itself.
pub(crate) trait PropertySet: Default {
    /// Takes one property; `InvalidProperty` for ids this packet may not carry.
    fn apply(&mut self, id: u8, value: Value) -> Result<(), CodecError>;
    /// Writes the properties without the length prefix.
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError>;
}

/// Stores a property that may appear at most once.
pub(crate) fn once<T>(slot: &mut Option<T>, id: u8, v: T) -> Result<(), CodecError> {
    if slot.is_some() {
        return Err(CodecError::DuplicateProperty { id });
    }
    *slot = Some(v);
    Ok(())
}

// Every single-byte property defined by MQTT 5 is a 0/1 switch.
fn check_byte(v: u8) -> Result<u8, CodecError> {
    if v > 1 {
        return Err(CodecError::ProtocolError("byte property must be 0 or 1"));
    }
    Ok(v)
}

fn check_u16(id: u8, v: u16) -> Result<u16, CodecError> {
    match (id, v) {
        (RECEIVE_MAXIMUM, 0) => Err(CodecError::ProtocolError("receive maximum of 0")),
        (TOPIC_ALIAS, 0) => Err(CodecError::ProtocolError("topic alias of 0")),
        _ => Ok(v),
    }
}

fn check_u32(id: u8, v: u32) -> Result<u32, CodecError> {
    if id == MAXIMUM_PACKET_SIZE && v == 0 {
        return Err(CodecError::ProtocolError("maximum packet size of 0"));
    }
    Ok(v)
}

fn check_var(v: usize) -> Result<u32, CodecError> {
    match u32::try_from(v) {
        Ok(x) if x != 0 && v <= MAX_VARINT => Ok(x),
        _ => Err(CodecError::ProtocolError(
            "subscription identifier out of range 1..=268435455",
        )),
    }
}

/// Reads one identifier + value.
fn read_one(r: &mut Reader) -> Result<(u8, Value), CodecError> {
    // The identifier is formally a Variable Byte Integer, but every defined
    // id is below 0x80, so any byte with the high bit set is simply unknown.
    let id = r.u8("property identifier")?;
    const W: &str = "property value";
    let v = match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => Value::Byte(check_byte(r.u8(W)?)?),
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
            Value::U16(check_u16(id, r.u16(W)?)?)
        }
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => Value::U32(check_u32(id, r.u32(W)?)?),
        SUBSCRIPTION_IDENTIFIER => Value::Var(check_var(r.varint(W)?)?),
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Value::Str(r.string(W)?),
        CORRELATION_DATA | AUTHENTICATION_DATA => Value::Bin(r.binary(W)?),
        USER_PROPERTY => {
            let k = r.string(W)?;
            Value::Pair(k, r.string(W)?)
        }
        _ => return Err(CodecError::InvalidProperty { id }),
    };
    Ok((id, v))
}

/// Reads a length-prefixed property block.
pub(crate) fn decode<P: PropertySet>(r: &mut Reader) -> Result<P, CodecError> {
    let len = r.varint("property length")?;
    decode_block(r, len)
}

/// Reads the `len` bytes of properties that follow the length.
fn decode_block<P: PropertySet>(r: &mut Reader, len: usize) -> Result<P, CodecError> {
    let mut block = r.sub(len, "properties")?;
    let mut p = P::default();
    while !block.is_empty() {
        let (id, v) = read_one(&mut block)?;
        p.apply(id, v)?;
    }
    Ok(p)
}

/// Like [`decode`], but an empty block becomes `None` so that
/// "no properties" has exactly one representation.
pub(crate) fn decode_opt<P: PropertySet>(r: &mut Reader) -> Result<Option<Box<P>>, CodecError> {
    // Judged by the value, not by a 0x00 byte: an overlong zero (80 00) is empty too.
    let len = r.varint("property length")?;
    if len == 0 {
        return Ok(None);
    }
    decode_block::<P>(r, len).map(|p| Some(Box::new(p)))
}

/// Writes a length-prefixed property block (`None` writes an empty block).
pub(crate) fn write<S: Sink, P: PropertySet>(s: &mut S, p: Option<&P>) -> Result<(), CodecError> {
    match p {
        None => {
            s.put_u8(0);
            Ok(())
        }
        Some(p) => {
            let len = count(|c| p.write(c))?;
            put_varint(s, len)?;
            p.write(s)
        }
    }
}

/// Whether a property set would write nothing (lets acks use their short forms).
pub(crate) fn is_empty<P: PropertySet>(p: Option<&P>) -> Result<bool, CodecError> {
    match p {
        None => Ok(true),
        Some(p) => Ok(count(|c| p.write(c))? == 0),
    }
}

pub(crate) fn w_byte<S: Sink>(s: &mut S, id: u8, v: Option<u8>) -> Result<(), CodecError> {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u8(check_byte(v)?);
    }
    Ok(())
}

pub(crate) fn w_u16<S: Sink>(s: &mut S, id: u8, v: Option<u16>) -> Result<(), CodecError> {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u16(check_u16(id, v)?);
    }
    Ok(())
}

pub(crate) fn w_u32<S: Sink>(s: &mut S, id: u8, v: Option<u32>) -> Result<(), CodecError> {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u32(check_u32(id, v)?);
    }
    Ok(())
}

pub(crate) fn w_var<S: Sink>(s: &mut S, id: u8, v: u32) -> Result<(), CodecError> {
    let v = check_var(v as usize)?;
    s.put_u8(id);
    put_varint(s, v as usize)
}

pub(crate) fn w_str<S: Sink>(s: &mut S, id: u8, v: Option<&String>) -> Result<(), CodecError> {
    if let Some(v) = v {
        s.put_u8(id);
        put_str(s, v)?;
    }
    Ok(())
}

pub(crate) fn w_bin<S: Sink>(s: &mut S, id: u8, v: Option<&Bytes>) -> Result<(), CodecError> {
    if let Some(v) = v {
        s.put_u8(id);
        put_binary(s, v)?;
    }
    Ok(())
}

pub(crate) fn w_pairs<S: Sink>(s: &mut S, pairs: &[(String, String)]) -> Result<(), CodecError> {
    for (k, v) in pairs {
        s.put_u8(USER_PROPERTY);
        put_str(s, k)?;
        put_str(s, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::PublishProperties;
    use super::*;

    /// Found by fuzz/ (mqtt_codec): a PUBLISH whose property length was 0 written in
    /// two bytes decoded as `Some(default)`, which re-encodes as `None`.
    #[test]
    fn overlong_empty_property_length_is_none() {
        for wire in [
            &b"\x00"[..],
            b"\x80\x00",
            b"\x80\x80\x00",
            b"\x80\x80\x80\x00",
        ] {
            let mut r = Reader::new(Bytes::copy_from_slice(wire));
            let p = decode_opt::<PublishProperties>(&mut r).unwrap();
            assert_eq!(p, None, "{wire:02x?}");
            assert!(r.is_empty());
        }
        let mut r = Reader::new(Bytes::from_static(b"\x80\x01"));
        assert_eq!(
            decode_opt::<PublishProperties>(&mut r),
            Err(CodecError::Truncated("properties"))
        );
    }
}
