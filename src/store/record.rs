//! The on-disk record: a format byte, then the postcard encoding of that format's struct.
//!
//! The format byte is what lets a newer ferry open a store written by an older one: a new
//! layout gets a new byte and a new struct, and `decode` keeps reading every old one.

use crate::event::Event;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Format byte of [`RecordV1`].
pub const FORMAT_V1: u8 = 1;

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
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is empty")]
    Empty,
    #[error("record format {0} is newer than this ferry understands")]
    UnknownFormat(u8),
    #[error("record does not decode: {0}")]
    Corrupt(#[from] postcard::Error),
}

/// Encodes `event` for the log into `out` (cleared first, reused across a batch).
pub fn encode(event: &Event, dests: u64, out: &mut Vec<u8>) -> Result<(), RecordError> {
    out.clear();
    out.push(FORMAT_V1);
    let rec = RecordV1 {
        received_ms: event.received_ms,
        topic: &event.topic,
        payload: &event.payload,
        qos: event.qos,
        retain: event.retain,
        origin: event.origin.as_u8(),
        dests,
        user_properties: event
            .user_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    };
    let encoded = postcard::to_extend(&rec, std::mem::take(out))?;
    *out = encoded;
    Ok(())
}

pub fn decode(seq: u64, bytes: &[u8]) -> Result<StoredEvent, RecordError> {
    let (&format, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    match format {
        FORMAT_V1 => {
            let r: RecordV1 = postcard::from_bytes(body)?;
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
            })
        }
        other => Err(RecordError::UnknownFormat(other)),
    }
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
        assert_eq!(buf[0], FORMAT_V1);
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

    /// The exact bytes of a V1 record are frozen: a store written today must decode in
    /// every later version.
    #[test]
    fn v1_bytes_are_stable() {
        let mut e = Event::new("t".into(), Bytes::from_static(b"p"), 1, false, Origin::Mqtt);
        e.received_ms = 300;
        let mut buf = Vec::new();
        encode(&e, 1, &mut buf).unwrap();
        assert_eq!(buf, vec![1, 0xac, 0x02, 1, b't', 1, b'p', 1, 0, 0, 1, 0]);
        assert!(decode(1, &buf).is_ok());
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
    }
}
