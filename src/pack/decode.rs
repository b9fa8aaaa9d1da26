//! The decoder: a batch checked from its magic bytes to its checksum before any event is
//! read, and every length checked against the bytes that are really there before
//! anything is allocated for it. What it refuses is listed in docs/batch-format.md.

use super::varint::{self, VarintError};
use super::{
    Batch, Compression, FLAG_PROPERTIES, FLAG_QOS, FLAG_RETAIN, LZ4_MAX_RATIO, MAGIC, MAX_EVENTS,
    MAX_GATEWAY_LEN, MAX_RAW_LEN, MIN_EVENT_LEN, UnpackedEvent, VERSION, crc32c,
};
use bytes::Bytes;

/// Why a batch was refused. `what` names the field being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    #[error("not a ferry batch: bad magic bytes")]
    BadMagic,
    #[error("batch version {0} is not supported (this decoder reads version {VERSION})")]
    UnknownVersion(u8),
    #[error("batch header flags {0:#04x} set bits that version {VERSION} does not define")]
    UnknownFlags(u8),
    #[error("unknown compression id {0}")]
    UnknownCompression(u8),
    #[error("truncated: the input ends inside the {0}")]
    Truncated(&'static str),
    #[error("{what} is not the shortest varint encoding of a 64-bit value")]
    BadVarint { what: &'static str },
    #[error("{what} is {len}, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("uncompressed body is {raw} bytes but the compressed body is {body} bytes")]
    LengthMismatch { raw: u64, body: u64 },
    #[error("{0} bytes after the end of the batch")]
    TrailingBytes(usize),
    #[error("lz4 body does not decompress to its declared length")]
    Decompress,
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("{0} is not valid UTF-8")]
    BadUtf8(&'static str),
    #[error("event {index}: flags {flags:#04x} (qos 3 or undefined bits)")]
    BadEventFlags { index: usize, flags: u8 },
    #[error("event {index}: user properties flagged but none follow")]
    EmptyProperties { index: usize },
    #[error("{0} bytes in the body after its last declared event")]
    BodyTrailingBytes(usize),
    #[error("header declares {declared} events, more than a {raw}-byte body can hold")]
    CountTooLarge { declared: u64, raw: u64 },
    #[error("header declares {declared} events but the body holds {found}")]
    CountMismatch { declared: u64, found: u64 },
}

/// Checks and decodes one batch (docs/batch-format.md).
///
/// Allocates at most the declared uncompressed body (no more than [`MAX_RAW_LEN`], and
/// for LZ4 no more than 255 times the bytes given) plus a few dozen bytes per event (no
/// more than one per 5 body bytes, at most [`MAX_EVENTS`]).
pub fn unpack(batch: &[u8]) -> Result<Batch, UnpackError> {
    let h = header(batch)?;
    let wire = &batch[h.len..h.len + h.body_len];
    let tail = &batch[h.len + h.body_len..];
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    // The checksum covers the header and the uncompressed body side by side: so they are
    // without compression; decompressed behind a copy of the header with LZ4.
    let body = match h.compression {
        Compression::None => {
            verify(&batch[..h.len + h.body_len], stored)?;
            Bytes::copy_from_slice(wire)
        }
        Compression::Lz4 => {
            let mut buf = vec![0u8; h.len + h.raw_len];
            buf[..h.len].copy_from_slice(&batch[..h.len]);
            match lz4_flex::block::decompress_into(wire, &mut buf[h.len..]) {
                Ok(n) if n == h.raw_len => {}
                _ => return Err(UnpackError::Decompress),
            }
            verify(&buf, stored)?;
            Bytes::from(buf).slice(h.len..)
        }
    };
    let events = events(&h.gateway, h.count, &body)?;
    Ok(Batch {
        gateway: h.gateway,
        compression: h.compression,
        events,
    })
}

/// A header whose lengths were checked against the limits and the input.
struct Header {
    compression: Compression,
    gateway: String,
    count: u64,
    raw_len: usize,
    body_len: usize,
    /// Bytes of the header: where the body starts.
    len: usize,
}

/// Reads the header and checks every length in it: the body and the checksum are then
/// exactly the rest of `batch`, and `raw_len` is within the limits.
fn header(batch: &[u8]) -> Result<Header, UnpackError> {
    if batch.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(batch) {
            UnpackError::Truncated("magic bytes")
        } else {
            UnpackError::BadMagic
        });
    }
    let mut r = Reader { buf: batch, pos: 0 };
    if r.take(MAGIC.len(), "magic bytes")? != MAGIC {
        return Err(UnpackError::BadMagic);
    }
    let version = r.byte("version")?;
    if version != VERSION {
        return Err(UnpackError::UnknownVersion(version));
    }
    let flags = r.byte("header flags")?;
    if flags != 0 {
        return Err(UnpackError::UnknownFlags(flags));
    }
    let id = r.byte("compression id")?;
    let compression = Compression::from_id(id).ok_or(UnpackError::UnknownCompression(id))?;
    let gateway = r.str("gateway id", MAX_GATEWAY_LEN as u64)?;
    let count = r.varint("event count")?;
    limit("event count", count, MAX_EVENTS as u64)?;
    let raw_len = r.varint("uncompressed length")?;
    limit("uncompressed length", raw_len, MAX_RAW_LEN as u64)?;
    let body_len = r.varint("body length")?;
    let body_ok = match compression {
        Compression::None => body_len == raw_len,
        Compression::Lz4 => raw_len <= body_len.saturating_mul(LZ4_MAX_RATIO),
    };
    if !body_ok {
        return Err(UnpackError::LengthMismatch {
            raw: raw_len,
            body: body_len,
        });
    }
    // Whole events need at least MIN_EVENT_LEN bytes each: refused before any allocation.
    if count > raw_len / MIN_EVENT_LEN as u64 {
        return Err(UnpackError::CountTooLarge {
            declared: count,
            raw: raw_len,
        });
    }
    let left = (batch.len() - r.pos) as u64;
    let want = body_len.saturating_add(4);
    if left < want {
        return Err(UnpackError::Truncated(if left < body_len {
            "body"
        } else {
            "checksum"
        }));
    }
    if left > want {
        return Err(UnpackError::TrailingBytes((left - want) as usize));
    }
    // body_len now fits in the input, and raw_len is under MAX_RAW_LEN: both are usizes.
    Ok(Header {
        compression,
        gateway,
        count,
        raw_len: raw_len as usize,
        body_len: body_len as usize,
        len: r.pos,
    })
}

fn verify(covered: &[u8], stored: u32) -> Result<(), UnpackError> {
    let computed = crc32c::checksum(covered);
    if computed != stored {
        return Err(UnpackError::Checksum { stored, computed });
    }
    Ok(())
}

/// The `count` events of a checked, uncompressed body.
fn events(gateway: &str, count: u64, body: &Bytes) -> Result<Vec<UnpackedEvent>, UnpackError> {
    let mut r = Reader { buf: body, pos: 0 };
    let mut events = Vec::with_capacity(count as usize);
    let (mut seq, mut ms) = (0u64, 0u64);
    for index in 0..count as usize {
        if r.pos == body.len() {
            return Err(UnpackError::CountMismatch {
                declared: count,
                found: index as u64,
            });
        }
        seq = varint::undelta(seq, r.varint("event seq")?);
        ms = varint::undelta(ms, r.varint("event time")?);
        let flags = r.byte("event flags")?;
        if flags & !(FLAG_QOS | FLAG_RETAIN | FLAG_PROPERTIES) != 0 || flags & FLAG_QOS == 3 {
            return Err(UnpackError::BadEventFlags { index, flags });
        }
        let topic = r.str("topic", u64::MAX)?;
        let len = r.varint("payload length")?;
        let start = r.pos;
        r.take(usize::try_from(len).unwrap_or(usize::MAX), "payload")?;
        let payload = body.slice(start..r.pos);
        let mut user_properties = Vec::new();
        if flags & FLAG_PROPERTIES != 0 {
            let n = r.varint("user property count")?;
            if n == 0 {
                return Err(UnpackError::EmptyProperties { index });
            }
            // Each property takes at least its two length bytes.
            if n > (body.len() - r.pos) as u64 / 2 {
                return Err(UnpackError::Truncated("user properties"));
            }
            user_properties.reserve_exact(n as usize);
            for _ in 0..n {
                let k = r.str("user property name", u64::MAX)?;
                let v = r.str("user property value", u64::MAX)?;
                user_properties.push((k, v));
            }
        }
        events.push(UnpackedEvent {
            key: format!("{gateway}-{seq}"),
            seq,
            received_ms: ms,
            topic,
            payload,
            qos: flags & FLAG_QOS,
            retain: flags & FLAG_RETAIN != 0,
            user_properties,
        });
    }
    if r.pos != body.len() {
        return Err(UnpackError::BodyTrailingBytes(body.len() - r.pos));
    }
    Ok(events)
}

fn limit(what: &'static str, len: u64, max: u64) -> Result<(), UnpackError> {
    if len > max {
        return Err(UnpackError::TooLarge { what, len, max });
    }
    Ok(())
}

/// A read position in a byte slice; every read is checked against its end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], UnpackError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(UnpackError::Truncated(what))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, UnpackError> {
        Ok(self.take(1, what)?[0])
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, UnpackError> {
        let (v, n) = varint::get(&self.buf[self.pos..]).map_err(|e| match e {
            VarintError::Truncated => UnpackError::Truncated(what),
            VarintError::NonCanonical => UnpackError::BadVarint { what },
        })?;
        self.pos += n;
        Ok(v)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn str(&mut self, what: &'static str, max: u64) -> Result<String, UnpackError> {
        let len = self.varint(what)?;
        limit(what, len, max)?;
        let bytes = self.take(usize::try_from(len).unwrap_or(usize::MAX), what)?;
        let s = std::str::from_utf8(bytes).map_err(|_| UnpackError::BadUtf8(what))?;
        Ok(s.to_string())
    }
}
