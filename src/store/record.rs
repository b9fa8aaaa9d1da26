//! The on-disk record: a format byte, then the postcard encoding of that format's struct,
//! then (from format 2) the CRC-32C of everything before it, little-endian. Format 3 adds
//! the forward rule of each destination ([`Routes`]), written when there are any.
//!
//! The format byte is what lets a newer ferry open a store written by an older one: a new
//! layout gets a new byte and a new struct, and `decode` keeps reading every old one.
//! Format 2 is format 1's fields with the checksum after them, so a flipped bit in a
//! payload (which would still decode) is caught on every read; format 1 records, written
//! before checksums, are read as they are.

use crate::event::Event;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Format byte of [`RecordV1`] without a checksum (stores written before format 2).
pub const FORMAT_V1: u8 = 1;
/// Format byte of [`RecordV1`]'s fields followed by their CRC-32C: what `encode` writes
/// for an event without routes.
pub const FORMAT_V2: u8 = 2;
/// Format byte of [`RecordV3`] (format 2's fields and the routes) and its CRC-32C: what
/// `encode` writes for an event with routes.
pub const FORMAT_V3: u8 = 3;

/// Per destination lane of a record, in the order of its bits in `dests`: the index of
/// the forward rule that selected it among its upstream's rules (`forward::Forwarding`),
/// so a link never matches the rules again. At most four (events for more upstreams
/// keep the first four; the others are matched when sent).
pub type Routes = heapless::Vec<u16, 4>;
/// Bytes of the checksum at the end of a format 2 record.
const CHECKSUM_LEN: usize = 4;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct RecordV1<'a> {
    received_ms: u64,
    topic: &'a str,
    payload: &'a [u8],
    qos: u8,
    retain: bool,
    origin: u8,
    /// Bit i set: the upstream with persistent bit i must forward this record.
    dests: u64,
    user_properties: Vec<(&'a str, &'a str)>,
}

/// Format 3: format 2's fields, then the routes.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct RecordV3<'a> {
    received_ms: u64,
    topic: &'a str,
    payload: &'a [u8],
    qos: u8,
    retain: bool,
    origin: u8,
    dests: u64,
    user_properties: Vec<(&'a str, &'a str)>,
    routes: Routes,
}

/// A record read back from the log, ready to forward.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub received_ms: u64,
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub origin: u8,
    pub dests: u64,
    pub user_properties: Vec<(String, String)>,
    /// Empty for records written before format 3, or by a dead-letter replay.
    pub routes: Routes,
}

impl StoredEvent {
    /// The index of the rule that sent this record to the lane with bit `bit`, if the
    /// record says.
    pub fn route_for(&self, bit: u8) -> Option<usize> {
        let below = self.dests & ((1u64 << bit) - 1);
        self.routes
            .get(below.count_ones() as usize)
            .map(|r| usize::from(*r))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is empty")]
    Empty,
    #[error("record format {0} is newer than this ferry understands")]
    UnknownFormat(u8),
    #[error("record does not decode: {0}")]
    Corrupt(#[from] postcard::Error),
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    /// The database could not read the record at all (a damaged page of its table).
    #[error("record unreadable: {0}")]
    Unreadable(String),
}

/// Encodes `event` for the log into `out` (cleared first, reused across a batch).
pub fn encode(event: &Event, dests: u64, out: &mut Vec<u8>) -> Result<(), RecordError> {
    encode_routed(event, dests, &Routes::new(), out)
}

/// Like [`encode`], with the rule of each destination (format 3 when there are any).
pub fn encode_routed(
    event: &Event,
    dests: u64,
    routes: &Routes,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    out.clear();
    // One allocation: the fields, their lengths and the checksum fit in this.
    let props: usize = event
        .user_properties
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum();
    out.reserve(event.topic.len() + event.payload.len() + props + 64 + 16 * routes.len());
    let user_properties = event
        .user_properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut encoded = if routes.is_empty() {
        out.push(FORMAT_V2);
        let rec = RecordV1 {
            received_ms: event.received_ms,
            topic: &event.topic,
            payload: &event.payload,
            qos: event.qos,
            retain: event.retain,
            origin: event.origin.as_u8(),
            dests,
            user_properties,
        };
        postcard::to_extend(&rec, std::mem::take(out))?
    } else {
        out.push(FORMAT_V3);
        let rec = RecordV3 {
            received_ms: event.received_ms,
            topic: &event.topic,
            payload: &event.payload,
            qos: event.qos,
            retain: event.retain,
            origin: event.origin.as_u8(),
            dests,
            user_properties,
            routes: routes.clone(),
        };
        postcard::to_extend(&rec, std::mem::take(out))?
    };
    let crc = super::crc32c::checksum(&encoded);
    encoded.extend_from_slice(&crc.to_le_bytes());
    *out = encoded;
    Ok(())
}

/// The body of a format 2 record (between the format byte and the checksum), once its
/// checksum matched.
fn checked_body(bytes: &[u8]) -> Result<&[u8], RecordError> {
    if bytes.len() < 1 + CHECKSUM_LEN {
        return Err(RecordError::Corrupt(
            postcard::Error::DeserializeUnexpectedEnd,
        ));
    }
    let (covered, tail) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = super::crc32c::checksum(covered);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok(&covered[1..])
}

/// `bytes` (a record of any format, checked) written again as a format 2 record with
/// `dests` as its destinations: how a dead letter goes back into the log.
pub fn redirect(bytes: &[u8], dests: u64) -> Result<Vec<u8>, RecordError> {
    let r = decode(0, bytes)?;
    // The routes were for the old destinations: the link matches this one's rule.
    let r = RecordV1 {
        received_ms: r.received_ms,
        topic: &r.topic,
        payload: &r.payload,
        qos: r.qos,
        retain: r.retain,
        origin: r.origin,
        dests,
        user_properties: r
            .user_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    };
    let mut out = postcard::to_extend(&r, vec![FORMAT_V2])?;
    let crc = super::crc32c::checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

pub fn decode(seq: u64, bytes: &[u8]) -> Result<StoredEvent, RecordError> {
    let (&format, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    let (r, routes) = match format {
        FORMAT_V1 => (postcard::from_bytes::<RecordV1>(body)?, Routes::new()),
        FORMAT_V2 => (postcard::from_bytes(checked_body(bytes)?)?, Routes::new()),
        FORMAT_V3 => {
            let r: RecordV3 = postcard::from_bytes(checked_body(bytes)?)?;
            let v1 = RecordV1 {
                received_ms: r.received_ms,
                topic: r.topic,
                payload: r.payload,
                qos: r.qos,
                retain: r.retain,
                origin: r.origin,
                dests: r.dests,
                user_properties: r.user_properties,
            };
            (v1, r.routes)
        }
        other => return Err(RecordError::UnknownFormat(other)),
    };
    Ok(StoredEvent {
        seq,
        received_ms: r.received_ms,
        topic: r.topic.to_string(),
        payload: Bytes::copy_from_slice(r.payload),
        qos: r.qos,
        retain: r.retain,
        origin: r.origin,
        dests: r.dests,
        user_properties: r
            .user_properties
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;

    #[test]
    fn round_trip() {
        let mut e = Event::new(
            "a/b".into(),
            Bytes::from_static(b"hello"),
            1,
            true,
            Origin::Nats,
        );
        e.user_properties.push(("k".into(), "v".into()));
        let mut buf = Vec::new();
        encode(&e, 0b101, &mut buf).unwrap();
        assert_eq!(buf[0], FORMAT_V2);
        let back = decode(42, &buf).unwrap();
        assert_eq!(back.seq, 42);
        assert_eq!(back.topic, "a/b");
        assert_eq!(&back.payload[..], b"hello");
        assert_eq!(
            (back.qos, back.retain, back.origin, back.dests),
            (1, true, 1, 0b101)
        );
        assert_eq!(
            back.user_properties,
            vec![("k".to_string(), "v".to_string())]
        );
    }

    /// Format 3 carries each destination's rule; format 2 (no routes) is still what an
    /// event without routes is written as, and a redirected record loses its routes.
    #[test]
    fn format_3_carries_the_routes() {
        let e = Event::new("t".into(), Bytes::from_static(b"p"), 1, false, Origin::Mqtt);
        let routes = Routes::from_slice(&[2, 0]).unwrap();
        let mut buf = Vec::new();
        encode_routed(&e, 0b1010, &routes, &mut buf).unwrap();
        assert_eq!(buf[0], FORMAT_V3);
        let back = decode(7, &buf).unwrap();
        assert_eq!(
            (back.dests, back.routes.as_slice()),
            (0b1010, &[2u16, 0][..])
        );
        assert_eq!(
            (back.route_for(1), back.route_for(3), back.route_for(5)),
            (Some(2), Some(0), None)
        );
        let mut plain = Vec::new();
        encode(&e, 0b1010, &mut plain).unwrap();
        assert_eq!(plain[0], FORMAT_V2);
        assert_eq!(decode(7, &plain).unwrap().route_for(1), None);
        let moved = redirect(&buf, 0b1).unwrap();
        assert_eq!(moved[0], FORMAT_V2);
        assert_eq!(decode(7, &moved).unwrap().dests, 0b1);
        let mut flipped = buf.clone();
        flipped[3] ^= 1;
        assert!(matches!(
            decode(7, &flipped),
            Err(RecordError::Checksum { .. })
        ));
    }

    /// The exact bytes of both formats are frozen: a store written by any version must
    /// decode in every later one. Format 1 is what ferry wrote before checksums.
    #[test]
    fn v1_and_v2_bytes_are_stable() {
        let v1 = [1, 0xac, 0x02, 1, b't', 1, b'p', 1, 0, 0, 1, 0];
        let old = decode(1, &v1).unwrap();
        assert_eq!(
            (old.received_ms, old.topic.as_str(), &old.payload[..]),
            (300, "t", &b"p"[..])
        );
        assert_eq!(
            (old.qos, old.retain, old.origin, old.dests),
            (1, false, 0, 1)
        );

        let mut e = Event::new("t".into(), Bytes::from_static(b"p"), 1, false, Origin::Mqtt);
        e.received_ms = 300;
        let mut buf = Vec::new();
        encode(&e, 1, &mut buf).unwrap();
        let mut v2 = vec![2];
        v2.extend_from_slice(&v1[1..]);
        v2.extend_from_slice(&crate::store::crc32c::checksum(&v2).to_le_bytes());
        assert_eq!(buf, v2);
        assert_eq!(decode(1, &buf).unwrap(), old);
    }

    /// Any single flipped bit of a format 2 record is caught; in the payload it would
    /// still have decoded.
    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let e = Event::new(
            "a/b".into(),
            Bytes::from_static(b"payload"),
            1,
            false,
            Origin::Mqtt,
        );
        let mut buf = Vec::new();
        encode(&e, 1, &mut buf).unwrap();
        for byte in 1..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode(1, &bad).is_err(),
                    "byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn rejects_unknown_and_corrupt() {
        assert!(matches!(decode(1, &[]), Err(RecordError::Empty)));
        assert!(matches!(
            decode(1, &[9, 0]),
            Err(RecordError::UnknownFormat(9))
        ));
        assert!(matches!(
            decode(1, &[1, 0xff]),
            Err(RecordError::Corrupt(_))
        ));
        assert!(matches!(decode(1, &[2, 0]), Err(RecordError::Corrupt(_))));
        assert!(matches!(
            decode(1, &[2, 0, 0, 0, 0, 0]),
            Err(RecordError::Checksum { .. })
        ));
    }
}
