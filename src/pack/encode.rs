//! The packer: events appended one by one to an uncompressed body, and a batch made of
//! them on [`Packer::finish`]. docs/batch-format.md gives the layout.
//!
//! A link asks [`Packer::fits`] before each [`Packer::push`] and finishes the batch when
//! it says no (or `pack_linger` runs out): [`Packer::encoded_len`] is exact for an
//! uncompressed batch and an upper bound for a compressed one, so a batch never passes
//! `max_bytes` unless it holds a single event larger than that, which goes alone.

use super::{
    Compression, FLAG_PROPERTIES, FLAG_QOS, FLAG_RETAIN, MAGIC, MAX_EVENTS, MAX_GATEWAY_LEN,
    MAX_RAW_LEN, PackEvent, VERSION, crc32c, varint,
};
use bytes::Bytes;

/// Why a batch could not be started or an event not packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    #[error("gateway id is {0} bytes, over the {MAX_GATEWAY_LEN} a batch can carry")]
    GatewayTooLong(usize),
    /// Over [`MAX_RAW_LEN`] even alone in a batch: it must be forwarded unpacked.
    #[error("event seq {seq} takes {len} bytes, over the {MAX_RAW_LEN} bytes of a batch body")]
    EventTooLarge { seq: u64, len: usize },
    #[error("event seq {seq} has qos {qos}")]
    BadQos { seq: u64, qos: u8 },
    /// [`Packer::fits`] said no, or the batch holds [`MAX_EVENTS`] already.
    #[error("batch is full")]
    Full,
}

/// Builds one batch at a time; reused across batches so its buffers are allocated once.
#[derive(Debug)]
pub struct Packer {
    gateway: String,
    compression: Compression,
    max_events: usize,
    max_bytes: usize,
    /// The events so far, uncompressed.
    body: Vec<u8>,
    count: usize,
    /// Seq and time of the last event pushed: the next ones are written as deltas.
    prev_seq: u64,
    prev_ms: u64,
    /// Where the body is compressed, kept between batches.
    scratch: Vec<u8>,
}

impl Packer {
    /// A packer for `gateway`'s events, finishing batches of at most `max_events` events
    /// and `max_bytes` bytes (capped at [`MAX_EVENTS`] and [`MAX_RAW_LEN`]; 0 counts as 1).
    pub fn new(
        gateway: &str,
        compression: Compression,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Packer, PackError> {
        if gateway.len() > MAX_GATEWAY_LEN {
            return Err(PackError::GatewayTooLong(gateway.len()));
        }
        Ok(Packer {
            gateway: gateway.to_string(),
            compression,
            max_events: max_events.clamp(1, MAX_EVENTS),
            max_bytes: max_bytes.clamp(1, MAX_RAW_LEN),
            body: Vec::new(),
            count: 0,
            prev_seq: 0,
            prev_ms: 0,
            scratch: Vec::new(),
        })
    }

    /// Events pushed since the last [`Packer::finish`].
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes [`Packer::finish`] would return now at most: exact without compression (or
    /// when compressing does not shrink the body, which is then sent as it is).
    pub fn encoded_len(&self) -> usize {
        self.len_with(self.body.len(), self.count)
    }

    /// Whether `ev` can join this batch within `max_events` and `max_bytes`. Always true
    /// for an empty packer: an event larger than `max_bytes` goes alone.
    pub fn fits(&self, ev: &PackEvent<'_>) -> bool {
        self.count == 0
            || (self.count < self.max_events
                && self.len_with(
                    self.body.len().saturating_add(self.event_len(ev)),
                    self.count + 1,
                ) <= self.max_bytes)
    }

    /// Appends `ev`. The caller asks [`Packer::fits`] first; an error leaves the batch as
    /// it was.
    pub fn push(&mut self, ev: &PackEvent<'_>) -> Result<(), PackError> {
        if ev.qos > 2 {
            return Err(PackError::BadQos {
                seq: ev.seq,
                qos: ev.qos,
            });
        }
        if self.count >= MAX_EVENTS {
            return Err(PackError::Full);
        }
        let len = self.event_len(ev);
        if self.body.len().saturating_add(len) > MAX_RAW_LEN {
            return Err(if self.count == 0 {
                PackError::EventTooLarge { seq: ev.seq, len }
            } else {
                PackError::Full
            });
        }
        let out = &mut self.body;
        varint::put(out, varint::delta(self.prev_seq, ev.seq));
        varint::put(out, varint::delta(self.prev_ms, ev.received_ms));
        let mut flags = ev.qos & FLAG_QOS;
        if ev.retain {
            flags |= FLAG_RETAIN;
        }
        if !ev.user_properties.is_empty() {
            flags |= FLAG_PROPERTIES;
        }
        out.push(flags);
        put_bytes(out, ev.topic.as_bytes());
        put_bytes(out, ev.payload);
        if !ev.user_properties.is_empty() {
            varint::put(out, ev.user_properties.len() as u64);
            for (k, v) in ev.user_properties {
                put_bytes(out, k.as_bytes());
                put_bytes(out, v.as_bytes());
            }
        }
        self.count += 1;
        self.prev_seq = ev.seq;
        self.prev_ms = ev.received_ms;
        Ok(())
    }

    /// The batch of every event pushed since the last call, and a fresh start for the
    /// next. With [`Compression::Lz4`] the body is sent uncompressed (compression id 0)
    /// when LZ4 does not make it smaller.
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        let raw = &self.body;
        let mut compressed = None;
        if self.compression == Compression::Lz4 {
            self.scratch.clear();
            self.scratch
                .resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
            // The output is sized to LZ4's bound, so this cannot fail; if it did, the
            // batch is simply sent uncompressed.
            if let Ok(n) = lz4_flex::block::compress_into(raw, &mut self.scratch) {
                if n < raw.len() {
                    compressed = Some(&self.scratch[..n]);
                }
            }
        }
        let (id, wire) = match compressed {
            Some(c) => (Compression::Lz4, c),
            None => (Compression::None, &raw[..]),
        };
        self.write_header(&mut out, id, raw.len(), wire.len());
        // The checksum covers the header and the body as it was before compression: the
        // body is appended for it, then replaced by the compressed bytes (within the
        // capacity reserved above, which counts the uncompressed body).
        let header_len = out.len();
        out.extend_from_slice(raw);
        let crc = crc32c::checksum(&out);
        if id != Compression::None {
            out.truncate(header_len);
            out.extend_from_slice(wire);
        }
        out.extend_from_slice(&crc.to_le_bytes());
        self.reset();
        Bytes::from(out)
    }

    fn reset(&mut self) {
        self.body.clear();
        self.count = 0;
        self.prev_seq = 0;
        self.prev_ms = 0;
        // A single huge event must not keep its buffers for good.
        let keep = self.max_bytes.saturating_mul(2);
        if self.body.capacity() > keep {
            self.body.shrink_to(self.max_bytes);
        }
        if self.scratch.capacity() > keep {
            self.scratch = Vec::new();
        }
    }

    /// Bytes `ev` takes in the body after the events pushed so far.
    fn event_len(&self, ev: &PackEvent<'_>) -> usize {
        let mut len = varint::len(varint::delta(self.prev_seq, ev.seq))
            + varint::len(varint::delta(self.prev_ms, ev.received_ms))
            + 1
            + bytes_len(ev.topic.len())
            + bytes_len(ev.payload.len());
        if !ev.user_properties.is_empty() {
            len += varint::len(ev.user_properties.len() as u64);
            for (k, v) in ev.user_properties {
                len += bytes_len(k.len()) + bytes_len(v.len());
            }
        }
        len
    }

    /// Bytes of an uncompressed batch of `count` events in `body_len` bytes.
    fn len_with(&self, body_len: usize, count: usize) -> usize {
        MAGIC.len()
            + 3
            + bytes_len(self.gateway.len())
            + varint::len(count as u64)
            + 2 * varint::len(body_len as u64)
            + body_len
            + 4
    }

    fn write_header(&self, out: &mut Vec<u8>, id: Compression, raw_len: usize, wire_len: usize) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, 0, id.id()]);
        put_bytes(out, self.gateway.as_bytes());
        varint::put(out, self.count as u64);
        varint::put(out, raw_len as u64);
        varint::put(out, wire_len as u64);
    }
}

/// A length-prefixed byte string.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    varint::put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn bytes_len(len: usize) -> usize {
    varint::len(len as u64) + len
}
