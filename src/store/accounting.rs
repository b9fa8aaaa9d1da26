//! The log's accounting in `meta`: `next_seq` (seqs are never reused), `live_bytes` and
//! `live_count` (what retention and the metrics go by).
//!
//! **Invariant**, in every committed state: meta's `live_bytes` and `live_count` count
//! exactly the log's records below meta's `next_seq`, and no record below it is added
//! later. The writer keeps it by rewriting the three keys in every commit that removes a
//! record (a trim, a drop, a quarantine move), and in an append-only commit only once
//! [`CHECKPOINT`] bytes were appended since the last rewrite. An append-only commit thus
//! leaves meta's B-tree alone: one page less per commit written to an SD card (about 7%
//! of the bytes of a small commit). The records at or after meta's `next_seq` are
//! counted when the store opens ([`read`]): at most `CHECKPOINT` bytes and one batch.
//!
//! Meta and the log change in the same transaction, so a crash or a power cut, which
//! takes the store back to its last durable commit, keeps the invariant.

use super::{META, StoreError, redb_err, segments};
use redb::{ReadableTable, WriteTransaction};

/// Bytes (as [`super::retention::cost`] counts them) an append-only writer may add
/// before it rewrites meta's accounting.
pub const CHECKPOINT: u64 = 1 << 20;

/// The log's accounting as the store opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    pub next_seq: u64,
    pub live_bytes: u64,
    pub live_count: u64,
    /// The oldest segment's index (the next one's, for an empty log).
    pub oldest: u64,
}

/// Reads meta and counts the records it does not cover; a store that never kept the
/// accounting (written by an older ferry) is counted whole.
pub fn read(txn: &WriteTransaction) -> Result<Accounting, StoreError> {
    let meta = txn.open_table(META).map_err(redb_err)?;
    let get = |k: &str| -> Result<Option<u64>, StoreError> {
        Ok(meta.get(k).map_err(redb_err)?.map(|v| v.value()))
    };
    let stored_next = get("next_seq")?.unwrap_or(1).max(1);
    let kept = get("live_bytes")?.zip(get("live_count")?);
    drop(meta);
    let from = if kept.is_some() { stored_next } else { 0 };
    let extent = segments::extent(txn, from)?;
    let (bytes, count) = kept.unwrap_or((0, 0));
    let next_seq = stored_next.max(extent.last_seq.map_or(0, |s| s + 1));
    Ok(Accounting {
        next_seq,
        live_bytes: bytes + extent.bytes,
        live_count: count + extent.count,
        oldest: extent.oldest.unwrap_or(segments::index(next_seq)),
    })
}

/// Rewrites meta's accounting (the invariant holds again for everything below
/// `next_seq`).
pub fn write(
    txn: &WriteTransaction,
    next_seq: u64,
    live_bytes: u64,
    live_count: u64,
) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    meta.insert("next_seq", next_seq).map_err(redb_err)?;
    meta.insert("live_bytes", live_bytes).map_err(redb_err)?;
    meta.insert("live_count", live_count).map_err(redb_err)?;
    Ok(())
}
