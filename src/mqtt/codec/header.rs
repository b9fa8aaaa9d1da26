//! Fixed header (spec 2.1) and the Variable Byte Integer it uses (1.5.5).

use super::error::CodecError;
use super::primitives::Sink;
use super::{Protocol, QoS};

/// Largest value a 4-byte Variable Byte Integer can hold.
pub const MAX_VARINT: usize = 268_435_455;

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;
pub(crate) const AUTH: u8 = 15;

/// The parsed first bytes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub packet_type: u8,
    pub flags: u8,
    /// Bytes taken by the type byte plus the remaining-length integer (2..=5).
    pub header_len: usize,
    pub remaining: usize,
}

impl FixedHeader {
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining
    }
}

/// Parses the fixed header at the start of `buf` without consuming it.
///
/// `Ok(None)` means more bytes are needed to know the length. A fourth
/// length byte that still has its continuation bit set is an error at once,
/// whatever follows, so a peer cannot stall us with a bogus length.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<FixedHeader>, CodecError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(FixedHeader {
                packet_type: first >> 4,
                flags: first & 0x0F,
                header_len: 2 + i,
                remaining: value,
            }));
        }
    }
    Err(CodecError::MalformedRemainingLength)
}

/// Checks the packet type against the protocol and its reserved flag bits
/// (spec 2.1.3). Only needs the first byte, so it runs before the body arrives.
pub(crate) fn check_type_and_flags(
    packet_type: u8,
    flags: u8,
    protocol: Option<Protocol>,
) -> Result<(), CodecError> {
    let Some(protocol) = protocol else {
        return match packet_type {
            CONNECT if flags == 0 => Ok(()),
            CONNECT => Err(CodecError::InvalidFlags),
            0 => Err(CodecError::UnknownPacketType(0)),
            _ => Err(CodecError::ExpectedConnect),
        };
    };
    let ok = match packet_type {
        0 => return Err(CodecError::UnknownPacketType(0)),
        AUTH if protocol != Protocol::V5 => return Err(CodecError::UnknownPacketType(AUTH)),
        PUBLISH => return publish_flags(flags).map(|_| ()),
        // MQTT 3.1 set the DUP bit on retransmitted PUBREL/SUBSCRIBE/UNSUBSCRIBE.
        PUBREL | SUBSCRIBE | UNSUBSCRIBE if protocol == Protocol::V31 => flags & 0b0111 == 0b0010,
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => flags == 0b0010,
        // CONNECT is always strict: we do not know its version yet when it arrives.
        CONNECT => flags == 0,
        // MQTT 3.1 called the other flags "not used" rather than reserved.
        _ if protocol == Protocol::V31 => true,
        _ => flags == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(CodecError::InvalidFlags)
    }
}

/// Splits PUBLISH flags into (dup, qos, retain), rejecting QoS 3 and DUP on QoS 0.
pub(crate) fn publish_flags(flags: u8) -> Result<(bool, QoS, bool), CodecError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(CodecError::InvalidFlags)?;
    let dup = flags & 0b1000 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(CodecError::InvalidFlags);
    }
    Ok((dup, qos, flags & 1 != 0))
}

/// Number of bytes `value` takes as a Variable Byte Integer.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a Variable Byte Integer; anything above [`MAX_VARINT`] cannot be
/// expressed, which in practice means the packet is too large.
pub(crate) fn put_varint<S: Sink>(s: &mut S, value: usize) -> Result<(), CodecError> {
    if value > MAX_VARINT {
        return Err(CodecError::PacketTooLarge {
            size: value,
            max: MAX_VARINT,
        });
    }
    let mut v = value;
    loop {
        // Truncation is the point: the low 7 bits go out, the rest loops.
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        s.put_u8(b);
        if v == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn enc(v: usize) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_varint(&mut b, v).unwrap();
        b.to_vec()
    }

    #[test]
    fn varint_spec_boundaries() {
        // Spec table 1.5.5: boundary values and their encodings.
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (v, bytes) in cases {
            assert_eq!(enc(*v), *bytes, "encoding {v}");
            assert_eq!(varint_len(*v), bytes.len());
            let mut pkt = vec![0x30];
            pkt.extend_from_slice(bytes);
            let h = parse(&pkt).unwrap().unwrap();
            assert_eq!(h.remaining, *v);
            assert_eq!(h.header_len, 1 + bytes.len());
        }
        assert!(put_varint(&mut BytesMut::new(), MAX_VARINT + 1).is_err());
    }

    #[test]
    fn header_needs_more_bytes() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&[0x30]).unwrap(), None);
        assert_eq!(parse(&[0x30, 0x80]).unwrap(), None);
        assert_eq!(parse(&[0x30, 0x80, 0x80, 0x80]).unwrap(), None);
    }

    #[test]
    fn five_byte_varint_is_malformed_even_when_short() {
        assert_eq!(
            parse(&[0x30, 0x80, 0x80, 0x80, 0x80]),
            Err(CodecError::MalformedRemainingLength)
        );
    }

    #[test]
    fn flags() {
        let v4 = Some(Protocol::V311);
        assert!(check_type_and_flags(SUBSCRIBE, 2, v4).is_ok());
        assert!(check_type_and_flags(SUBSCRIBE, 0, v4).is_err());
        assert!(check_type_and_flags(SUBSCRIBE, 0b1010, v4).is_err());
        assert!(check_type_and_flags(SUBSCRIBE, 0b1010, Some(Protocol::V31)).is_ok());
        assert!(check_type_and_flags(PUBACK, 1, v4).is_err());
        assert!(check_type_and_flags(PUBLISH, 0b0110, v4).is_err());
        assert!(check_type_and_flags(PUBLISH, 0b1000, v4).is_err());
        assert!(check_type_and_flags(PUBLISH, 0b1011, v4).is_ok());
        assert_eq!(
            check_type_and_flags(AUTH, 0, v4),
            Err(CodecError::UnknownPacketType(15))
        );
        assert!(check_type_and_flags(AUTH, 0, Some(Protocol::V5)).is_ok());
        assert_eq!(
            check_type_and_flags(PUBLISH, 0, None),
            Err(CodecError::ExpectedConnect)
        );
        assert_eq!(
            check_type_and_flags(CONNECT, 1, None),
            Err(CodecError::InvalidFlags)
        );
    }
}
