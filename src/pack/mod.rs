//! `ferry-batch-v1`: many stored events packed into one upstream message, for metered or
//! slow links where a message per event costs too much in headers and round trips.
//!
//! This module is the format only, without I/O: a [`Packer`] that a forwarding link fills
//! with [`PackEvent`]s until [`Packer::fits`] says no, then [`Packer::finish`]es into one
//! message; and [`unpack`], which checks a batch and gives back its events with their
//! idempotency keys, as the cloud side must. docs/batch-format.md specifies every byte;
//! tests/vectors/batch/ holds committed batches that the encoder must keep producing, and
//! tools/ferry_batch.py is a second, independent decoder of the same spec.

pub mod cli;
mod decode;
mod encode;
pub mod jsonl;
mod varint;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_refusals;
#[cfg(test)]
mod tests_vectors;

// The batch checksum is the store's CRC-32C.
use crate::store::crc32c;

pub use decode::{UnpackError, unpack};
pub use encode::{PackError, Packer};

use bytes::Bytes;

/// The value of the `pack` key that selects this format.
pub const FORMAT_NAME: &str = "ferry-batch-v1";

/// First bytes of every batch. The first is not ASCII, so a batch is never taken for text
/// and a channel that clears the 8th bit is caught at once.
pub const MAGIC: [u8; 4] = [0xFB, b'F', b'R', b'Y'];

/// The format version this module writes and reads; a decoder refuses any other.
pub const VERSION: u8 = 1;

/// Compression id reserved for zstd (docs/batch-format.md: not built in, too large for
/// the binary budget); a decoder that does not implement it refuses it as unknown.
pub const ZSTD_ID: u8 = 2;

/// Longest gateway id a batch can carry, in bytes. The id is repeated in every event's
/// key, so the cap is what keeps the keys of a hostile batch from growing with the square
/// of its size. Host names are at most 253 bytes.
pub const MAX_GATEWAY_LEN: usize = 255;

/// Most events in one batch: bounds what a decoder allocates per event.
pub const MAX_EVENTS: usize = 65_535;

/// Largest uncompressed body, in bytes: 256 MiB, ferry's largest `mqtt.max_packet_size`,
/// so an event alone always fits. A decoder allocates no more than this, and for an lz4
/// body no more than 255 times the compressed bytes (the most LZ4 can expand).
pub const MAX_RAW_LEN: usize = 256 << 20;

/// Fewest bytes an event takes in a body: seq, time, flags, topic length, payload length.
const MIN_EVENT_LEN: usize = 5;

/// The most LZ4 can expand: a byte of a match length adds at most 255 output bytes.
const LZ4_MAX_RATIO: u64 = 255;

/// Event flag bits: QoS in bits 0-1, then retain, then "user properties follow".
const FLAG_QOS: u8 = 0b0011;
const FLAG_RETAIN: u8 = 0b0100;
const FLAG_PROPERTIES: u8 = 0b1000;

/// How a batch body is compressed (the `compression` key of an upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// One LZ4 block (not the LZ4 frame format): the length is in the batch header.
    Lz4,
}

/// A `compression` value that is not one of the names [`Compression::parse`] knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}: expected \"none\" or \"lz4\"")]
pub struct UnknownCompression(pub String);

impl Compression {
    /// The config value: `"none"` or `"lz4"`.
    pub fn parse(name: &str) -> Result<Compression, UnknownCompression> {
        match name {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            other => Err(UnknownCompression(other.to_string())),
        }
    }

    /// The config value, as [`Compression::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }

    /// The compression id byte of the header.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }

    fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            _ => None,
        }
    }
}

/// One stored event as a link packs it: borrowed from the store's `StoredEvent`, with the
/// topic already rewritten by the forwarding rule.
#[derive(Debug, Clone, Copy)]
pub struct PackEvent<'a> {
    /// Store sequence number: the key is `<gateway id>-<seq>`.
    pub seq: u64,
    /// When ferry received it, milliseconds since the Unix epoch.
    pub received_ms: u64,
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// 0, 1 or 2.
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 user properties, in order.
    pub user_properties: &'a [(String, String)],
}

/// A batch that [`unpack`] checked and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The gateway that packed it: the first part of every key.
    pub gateway: String,
    /// How the body was compressed on the wire.
    pub compression: Compression,
    pub events: Vec<UnpackedEvent>,
}

/// One event of a [`Batch`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedEvent {
    /// The idempotency key, `<gateway id>-<seq>`, as ferry sends it in the `ferry-id`
    /// user property of an unpacked MQTT 5 message: what the cloud side de-duplicates on.
    pub key: String,
    pub seq: u64,
    pub received_ms: u64,
    pub topic: String,
    /// A slice of one buffer holding the whole body: one allocation for every payload.
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub user_properties: Vec<(String, String)>,
}
