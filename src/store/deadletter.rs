//! Dead letters: events an upstream refused `max_attempts` times, kept with why, so they
//! can be listed, replayed once the cause is fixed, or purged. They no longer hold up
//! the rest of that upstream's backlog, which goes on in order.
//!
//! Table `dead_letters`: `seq << 6 | upstream bit` -> a sealed [`DeadLetter`] holding the
//! log record as it was stored (with its own checksum). One u64 key (the log's own key
//! type, so no second B-tree instantiation in the binary): ordered by seq, so the first
//! row is the oldest (seqs only grow) and the quota drops from the front; an event refused
//! again after a crash lands on its own row again, never twice. The bit is the upstream's
//! persistent bit (`upstream_bits`), as in a record's destinations. Bounded by
//! `store.dead_letter_max_bytes` (oldest dropped, counted in
//! `ferry_store_dead_letters_dropped_total`).
//!
//! The writer copies the record into this table in the same transaction as, or before,
//! the one that moves the upstream's cursor past it (the link only advances its cursor
//! once the dead-letter command is queued, and the writer applies dead letters before it
//! reclaims anything), so a refused event is always in one place or the other.

use super::{META, RecordError, StoreError, redb_err, seal, segments};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

pub(crate) const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");

/// The row key of `seq` refused by the upstream with persistent bit `bit` (< 64).
pub fn key(seq: u64, bit: u8) -> u64 {
    seq << 6 | u64::from(bit & 63)
}

/// (seq, bit) of a row key.
pub fn split(key: u64) -> (u64, u8) {
    (key >> 6, (key & 63) as u8)
}

/// Format byte of [`DeadLetter`] (inside its seal).
const FORMAT_V1: u8 = 1;

/// Why and when an event was given up on.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub at_ms: u64,
    /// Short and bounded, for the metric label: an MQTT reason code ("0x87") or a word
    /// ("too_large").
    pub reason: String,
    /// For people: what the upstream or ferry said.
    pub detail: String,
    pub attempts: u32,
    /// The log record (format byte, fields, checksum) as stored.
    pub record: Vec<u8>,
}

impl DeadLetter {
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        seal::encode(FORMAT_V1, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<DeadLetter, RecordError> {
        seal::decode(FORMAT_V1, bytes)
    }
}

/// A request to dead-letter one event, from an upstream link to the writer.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// For the metric's label and logs.
    pub upstream: std::sync::Arc<str>,
    /// The upstream's persistent bit: the row's key.
    pub bit: u8,
    pub seq: u64,
    pub reason: String,
    pub detail: String,
    pub attempts: u32,
}

/// Rows and bytes in the table (kept in `meta`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

/// Bytes a row is counted for: its value, key and redb's per-entry overhead.
pub fn cost(row_len: usize) -> u64 {
    (row_len + 8 + 32) as u64
}

pub(super) fn init(txn: &WriteTransaction) -> Result<Tally, StoreError> {
    txn.open_table(DEAD_LETTERS).map_err(redb_err)?;
    let meta = txn.open_table(META).map_err(redb_err)?;
    let get = |k: &str| -> Result<u64, StoreError> {
        Ok(meta.get(k).map_err(redb_err)?.map_or(0, |v| v.value()))
    };
    Ok(Tally {
        count: get("dead_letter_count")?,
        bytes: get("dead_letter_bytes")?,
    })
}

fn store_tally(txn: &WriteTransaction, tally: Tally) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    meta.insert("dead_letter_count", tally.count)
        .map_err(redb_err)?;
    meta.insert("dead_letter_bytes", tally.bytes)
        .map_err(redb_err)?;
    Ok(())
}

/// What [`apply`] did: rows added per refusal (false: the record was already gone, e.g.
/// dropped by retention) and rows the quota pushed out.
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub added: Vec<bool>,
    pub dropped: u64,
}

/// Copies each refused record into the table, then drops the oldest rows while it is
/// over `quota` bytes. Inside the writer's transaction, before anything is reclaimed.
pub(super) fn apply<'a>(
    txn: &WriteTransaction,
    refusals: impl Iterator<Item = &'a Refusal>,
    tally: &mut Tally,
    quota: u64,
) -> Result<Applied, StoreError> {
    let mut out = Applied::default();
    let mut refusals = refusals.peekable();
    if refusals.peek().is_none() {
        return Ok(out);
    }
    for r in refusals {
        let record = {
            let log = segments::open(txn, segments::index(r.seq))?;
            log.get(r.seq)
                .map_err(redb_err)?
                .map(|v| v.value().to_vec())
        };
        let Some(record) = record else {
            out.added.push(false);
            continue;
        };
        let row = DeadLetter {
            at_ms: crate::event::now_ms(),
            reason: r.reason.clone(),
            detail: r.detail.clone(),
            attempts: r.attempts,
            record,
        }
        .encode()?;
        let mut t = txn.open_table(DEAD_LETTERS).map_err(redb_err)?;
        let old = t
            .insert(key(r.seq, r.bit), row.as_slice())
            .map_err(redb_err)?
            .map(|v| v.value().len());
        if let Some(len) = old {
            tally.bytes = tally.bytes.saturating_sub(cost(len));
            tally.count = tally.count.saturating_sub(1);
        }
        tally.bytes += cost(row.len());
        tally.count += 1;
        out.added.push(true);
    }
    out.dropped = enforce_quota(txn, tally, quota)?;
    store_tally(txn, *tally)?;
    Ok(out)
}

fn enforce_quota(txn: &WriteTransaction, tally: &mut Tally, quota: u64) -> Result<u64, StoreError> {
    let mut t = txn.open_table(DEAD_LETTERS).map_err(redb_err)?;
    let mut dropped = 0;
    while tally.bytes > quota {
        let Some((_, v)) = t.pop_first().map_err(redb_err)? else {
            break;
        };
        tally.bytes = tally.bytes.saturating_sub(cost(v.value().len()));
        tally.count = tally.count.saturating_sub(1);
        dropped += 1;
    }
    Ok(dropped)
}

/// One row as listed: its key and what it holds (or why it cannot be read).
#[derive(Debug)]
pub struct Listed {
    pub seq: u64,
    pub upstream: String,
    pub letter: Result<DeadLetter, RecordError>,
}

/// The upstreams' persistent bits, by bit.
fn names(txn_bits: impl Iterator<Item = (String, u8)>) -> [Option<String>; 64] {
    let mut by_bit: [Option<String>; 64] = std::array::from_fn(|_| None);
    for (name, bit) in txn_bits {
        if let Some(slot) = by_bit.get_mut(usize::from(bit)) {
            *slot = Some(name);
        }
    }
    by_bit
}

fn bits_of(t: &impl ReadableTable<&'static str, u8>) -> Result<Vec<(String, u8)>, StoreError> {
    let mut out = Vec::new();
    for item in t.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        out.push((k.value().to_string(), v.value()));
    }
    Ok(out)
}

/// The bit of `upstream` (None: every upstream); Err if the store has no such upstream.
fn wanted(by_bit: &[Option<String>; 64], upstream: Option<&str>) -> Result<Option<u8>, StoreError> {
    let Some(name) = upstream else {
        return Ok(None);
    };
    by_bit
        .iter()
        .position(|n| n.as_deref() == Some(name))
        .map(|b| Some(b as u8))
        .ok_or_else(|| StoreError::UnknownUpstream(name.to_string()))
}

/// The dead letters (of `upstream`, or all), oldest first.
pub fn list(
    txn: &redb::ReadTransaction,
    upstream: Option<&str>,
) -> Result<Vec<Listed>, StoreError> {
    let t = match txn.open_table(DEAD_LETTERS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_err(e)),
    };
    let by_bit =
        names(bits_of(&txn.open_table(super::UPSTREAM_BITS).map_err(redb_err)?)?.into_iter());
    let only = wanted(&by_bit, upstream)?;
    let mut out = Vec::new();
    for item in t.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        let (seq, bit) = split(k.value());
        if only.is_some_and(|b| b != bit) {
            continue;
        }
        out.push(Listed {
            seq,
            upstream: by_bit[usize::from(bit)]
                .clone()
                .unwrap_or_else(|| format!("(bit {bit})")),
            letter: DeadLetter::decode(v.value()),
        });
    }
    Ok(out)
}

/// Removes the dead letters (of `upstream`, or all); returns how many.
pub fn purge(txn: &WriteTransaction, upstream: Option<&str>) -> Result<u64, StoreError> {
    let by_bit =
        names(bits_of(&txn.open_table(super::UPSTREAM_BITS).map_err(redb_err)?)?.into_iter());
    let only = wanted(&by_bit, upstream)?;
    let mut tally = init(txn)?;
    let mut n = 0;
    {
        let mut t = txn.open_table(DEAD_LETTERS).map_err(redb_err)?;
        let mut removed = t
            .extract_if(|k, _| only.is_none_or(|b| split(k).1 == b))
            .map_err(redb_err)?;
        for item in removed.by_ref() {
            let (_, v) = item.map_err(redb_err)?;
            tally.bytes = tally.bytes.saturating_sub(cost(v.value().len()));
            tally.count = tally.count.saturating_sub(1);
            n += 1;
        }
    }
    store_tally(txn, tally)?;
    Ok(n)
}

/// What [`replay`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Dead letters appended to the log again, at its end.
    pub replayed: u64,
    /// Rows left where they were: damaged.
    pub skipped: u64,
}

/// Puts the dead letters (of `upstream`, or all) back at the end of the log, each
/// destined for the upstream that refused it only, with a new seq (so it comes after
/// that upstream's cursor and everything already owed to it), and removes them from the
/// table. Run with ferry stopped (the store's writer owns `next_seq` while it runs).
pub fn replay(txn: &WriteTransaction, upstream: Option<&str>) -> Result<Replayed, StoreError> {
    let by_bit =
        names(bits_of(&txn.open_table(super::UPSTREAM_BITS).map_err(redb_err)?)?.into_iter());
    let only = wanted(&by_bit, upstream)?;
    let mut out = Replayed::default();
    let rows = {
        let t = txn.open_table(DEAD_LETTERS).map_err(redb_err)?;
        let mut rows = Vec::new();
        for item in t.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            if only.is_none_or(|b| split(k.value()).1 == b) {
                rows.push((k.value(), v.value().to_vec()));
            }
        }
        rows
    };
    if rows.is_empty() {
        return Ok(out);
    }
    let mut tally = init(txn)?;
    // Meta may not cover the last appends (`accounting.rs`): counted here.
    let at = super::accounting::read(txn)?;
    let (mut next_seq, mut live_bytes, mut live_count) =
        (at.next_seq, at.live_bytes, at.live_count);
    {
        let mut log = segments::Appender::new(txn);
        let mut t = txn.open_table(DEAD_LETTERS).map_err(redb_err)?;
        for (k, row) in rows {
            let bit = split(k).1;
            let record = DeadLetter::decode(&row)
                .and_then(|letter| super::record::redirect(&letter.record, 1u64 << bit));
            let Ok(record) = record else {
                out.skipped += 1;
                continue;
            };
            log.insert(next_seq, &record)?;
            next_seq += 1;
            live_bytes += super::retention::cost(record.len());
            live_count += 1;
            t.remove(k).map_err(redb_err)?;
            tally.bytes = tally.bytes.saturating_sub(cost(row.len()));
            tally.count = tally.count.saturating_sub(1);
            out.replayed += 1;
        }
    }
    super::accounting::write(txn, next_seq, live_bytes, live_count)?;
    store_tally(txn, tally)?;
    Ok(out)
}
