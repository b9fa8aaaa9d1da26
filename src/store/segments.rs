//! The log as a run of segment tables: seq `s` lives in table `log.<s / SEGMENT>`.
//!
//! Why: redb deletes key by key, rebuilding the touched leaf and branch pages at every
//! removal, and forwarded records have to go. Deleting 65,536 acknowledged records one by
//! one cost the writer more CPU than the drain that produced the acknowledgements (a third
//! of the drain rate on two cores); dropping the table that holds them frees its pages
//! without touching a single key. So acknowledged records are deleted a whole segment at a
//! time, and key by key only when space is short (or, cheaply, when nothing is left).
//!
//! Invariant: deletions only ever remove a prefix of the seqs (acknowledged records at or
//! below the smallest cursor, or retention popping the oldest), so the live records are
//! one contiguous run and so are the segment tables that hold them; a table in that run
//! may be missing only because everything in it was deleted.
//!
//! A store written before segments (one table, `log`) is moved into segments at open.

use super::{StoreError, StoredEvent, record, redb_err, retention};
use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    TableHandle, WriteTransaction,
};

/// Records per segment table: 65,536 (about 8 MiB of 100-byte events).
pub const SEGMENT: u64 = 1 << 16;

/// The single log table of stores written before segments.
const LEGACY: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

const PREFIX: &str = "log.";

/// Prefix of a segment table set aside because it could not be deleted (a damaged page).
pub const DAMAGED_PREFIX: &str = "damaged.";

/// Index of the segment holding `seq`.
pub fn index(seq: u64) -> u64 {
    seq / SEGMENT
}

/// The last seq segment `idx` can hold.
pub fn last_seq(idx: u64) -> u64 {
    idx.saturating_add(1)
        .saturating_mul(SEGMENT)
        .saturating_sub(1)
}

fn name(idx: u64) -> String {
    format!("{PREFIX}{idx:013}")
}

fn parse(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

fn def(name: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(name)
}

/// Opens (creating it if needed) segment `idx` in a write transaction.
pub fn open(
    txn: &WriteTransaction,
    idx: u64,
) -> Result<redb::Table<'_, u64, &'static [u8]>, StoreError> {
    txn.open_table(def(&name(idx))).map_err(redb_err)
}

/// Segment indices present, ascending (in a write or a read transaction).
fn present_write(txn: &WriteTransaction) -> Result<Vec<u64>, StoreError> {
    Ok(indices(txn.list_tables().map_err(redb_err)?))
}

fn present_read(txn: &ReadTransaction) -> Result<Vec<u64>, StoreError> {
    Ok(indices(txn.list_tables().map_err(redb_err)?))
}

fn indices(tables: impl Iterator<Item = impl TableHandle>) -> Vec<u64> {
    let mut v: Vec<u64> = tables.filter_map(|h| parse(h.name())).collect();
    v.sort_unstable();
    v
}

/// Records and accounted bytes in one segment table.
fn size(t: &impl ReadableTable<u64, &'static [u8]>) -> Result<(u64, u64), StoreError> {
    let (mut count, mut bytes) = (0u64, 0u64);
    for item in t.iter().map_err(redb_err)? {
        let (_, v) = item.map_err(redb_err)?;
        bytes += retention::cost(v.value().len());
        count += 1;
    }
    Ok((count, bytes))
}

/// Like [`size`] for a table with a damaged page, counting the records at or after seq
/// `from` only: the bytes of every one that can be read, and the records the table's own
/// header counts but no read reached are taken as that many of the mean size (and as at
/// or after `from`: the accounting errs towards full, never towards overfilling).
fn size_by_key(
    t: &redb::Table<'_, u64, &'static [u8]>,
    idx: u64,
    from: u64,
) -> Result<(u64, u64), StoreError> {
    let count = t.len().map_err(redb_err)?;
    let (mut read, mut tail, mut bytes) = (0u64, 0u64, 0u64);
    for seq in idx * SEGMENT..=last_seq(idx) {
        if read >= count {
            break;
        }
        let got = super::damage::caught(|| t.get(seq).map(|v| v.map(|v| v.value().len())));
        if let Ok(Ok(Some(len))) = got {
            read += 1;
            if seq >= from {
                tail += 1;
                bytes += retention::cost(len);
            }
        }
    }
    let unread = count - read.min(count);
    let mean = bytes.checked_div(tail).unwrap_or(0);
    Ok((tail + unread, bytes + unread * mean))
}

/// [`size`] of the records at or after `from` in segment `idx`, reading around a damaged
/// page ([`size_by_key`]).
fn tail_size(
    t: &redb::Table<'_, u64, &'static [u8]>,
    idx: u64,
    from: u64,
) -> Result<(u64, u64), StoreError> {
    let walk = || -> Result<(u64, u64), StoreError> {
        if from <= idx * SEGMENT {
            return size(t);
        }
        let (mut count, mut bytes) = (0u64, 0u64);
        for item in t.range(from..=last_seq(idx)).map_err(redb_err)? {
            let (_, v) = item.map_err(redb_err)?;
            count += 1;
            bytes += retention::cost(v.value().len());
        }
        Ok((count, bytes))
    };
    match super::damage::caught(walk) {
        Ok(Ok(held)) => Ok(held),
        _ => size_by_key(t, idx, from),
    }
}

/// Deletes segment `idx` whole; returns the records and bytes it held (for the
/// accounting), or zeros when it did not exist.
pub fn delete(txn: &WriteTransaction, idx: u64) -> Result<(u64, u64), StoreError> {
    let (held, damaged) = {
        let t = open(txn, idx)?;
        match super::damage::caught(|| size(&t)) {
            Ok(held) => (held?, None),
            // A damaged page: count what can be read key by key.
            Err(panic) => (size_by_key(&t, idx, 0)?, Some(panic)),
        }
    };
    match damaged {
        None => {
            txn.delete_table(def(&name(idx))).map_err(redb_err)?;
        }
        Some(why) => {
            // redb walks every page of a table it deletes, and panics on the damaged one:
            // the segment is set aside under another name instead (a change of the table
            // directory only). Its pages stay allocated until `ferry store salvage`
            // copies the store, which leaves it behind.
            let aside = format!("{DAMAGED_PREFIX}{}", name(idx));
            txn.rename_table(def(&name(idx)), def(&aside))
                .map_err(redb_err)?;
            tracing::error!(segment = %name(idx), table = %aside, error = %why,
                "a damaged log segment was passed by every cursor: set aside, not deleted (its space comes back with `ferry store salvage`)");
        }
    }
    Ok(held)
}

/// Inserts records in increasing seq order, keeping one segment table open at a time
/// (redb refuses to open a table twice in a transaction).
pub struct Appender<'t> {
    txn: &'t WriteTransaction,
    current: Option<(u64, redb::Table<'t, u64, &'static [u8]>)>,
}

impl<'t> Appender<'t> {
    pub fn new(txn: &'t WriteTransaction) -> Appender<'t> {
        Appender { txn, current: None }
    }

    pub fn insert(&mut self, seq: u64, record: &[u8]) -> Result<(), StoreError> {
        if self.current.as_ref().map(|(i, _)| *i) != Some(index(seq)) {
            drop(self.current.take());
            self.current = Some((index(seq), open(self.txn, index(seq))?));
        }
        if let Some((_, t)) = self.current.as_mut() {
            t.insert(seq, record).map_err(redb_err)?;
        }
        Ok(())
    }
}

/// Moves the records of a pre-segment store into segments (once, at open). Returns
/// whether there was anything to move.
pub fn migrate_legacy(txn: &WriteTransaction) -> Result<bool, StoreError> {
    let has_legacy = txn
        .list_tables()
        .map_err(redb_err)?
        .any(|h| h.name() == LEGACY.name());
    if !has_legacy {
        return Ok(false);
    }
    {
        let legacy = txn.open_table(LEGACY).map_err(redb_err)?;
        let mut segments = Appender::new(txn);
        for item in legacy.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            segments.insert(k.value(), v.value())?;
        }
    }
    txn.delete_table(LEGACY).map_err(redb_err)?;
    Ok(true)
}

/// What the log holds: its last seq, its size (count, bytes), and its oldest segment.
pub struct Extent {
    pub last_seq: Option<u64>,
    pub count: u64,
    pub bytes: u64,
    pub oldest: Option<u64>,
}

/// Measures the log: its last seq, its oldest segment, and the count and bytes of the
/// records at or after seq `size_from` (0: every record; `accounting.rs` counts only those
/// meta's accounting does not cover yet).
pub fn extent(txn: &WriteTransaction, size_from: u64) -> Result<Extent, StoreError> {
    let present = present_write(txn)?;
    let mut out = Extent {
        last_seq: None,
        count: 0,
        bytes: 0,
        oldest: present.first().copied(),
    };
    for idx in &present {
        let t = open(txn, *idx)?;
        if let Some((k, _)) = t.last().map_err(redb_err)? {
            out.last_seq = Some(k.value());
        }
        if last_seq(*idx) < size_from {
            continue;
        }
        let (count, bytes) = tail_size(&t, *idx, size_from)?;
        out.count += count;
        out.bytes += bytes;
    }
    Ok(out)
}

/// A record that failed its checksum or does not decode: skipped by every reader, never
/// sent upstream.
#[derive(Debug)]
pub struct Damaged {
    pub seq: u64,
    pub error: super::RecordError,
    /// The record's bytes as found, for the quarantine.
    pub bytes: Vec<u8>,
}

/// Decodes the record `seq` read as `bytes`: kept in `out` when destined for `mask`,
/// else skipped; one that does not decode (or fails its checksum) goes to `damaged`.
fn sort(seq: u64, bytes: &[u8], mask: u64, out: &mut Vec<StoredEvent>, damaged: &mut Vec<Damaged>) {
    match record::decode(seq, bytes) {
        Ok(rec) if rec.dests & mask != 0 => out.push(rec),
        Ok(_) => {}
        Err(error) => damaged.push(Damaged {
            seq,
            error,
            bytes: bytes.to_vec(),
        }),
    }
}

/// Reads up to `max` records destined for the upstream with mask bit `bit` with
/// seq > `after` and <= `upto`, scanning at most `4 * max` records. Returns them and
/// the last seq scanned.
pub fn read_after(
    txn: &ReadTransaction,
    after: u64,
    upto: u64,
    max: usize,
    bit: u8,
    damaged: &mut Vec<Damaged>,
) -> Result<(Vec<StoredEvent>, u64), StoreError> {
    let mut out = Vec::with_capacity(max.min(1024));
    let mut last = after;
    let mask = 1u64 << bit;
    let mut scanned = 0usize;
    let budget = max.saturating_mul(4);
    if after >= upto {
        return Ok((out, last));
    }
    for idx in index(after + 1)..=index(upto) {
        let t = match txn.open_table(def(&name(idx))) {
            Ok(t) => t,
            // Everything in it was deleted (acknowledged or dropped by retention).
            Err(TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(redb_err(e)),
        };
        for item in t.range(after + 1..=upto).map_err(redb_err)? {
            if out.len() >= max || scanned >= budget {
                return Ok((out, last));
            }
            scanned += 1;
            let (k, v) = item.map_err(redb_err)?;
            let seq = k.value();
            last = seq;
            // A damaged record counts as read (`last` passes it), so the reader's cursor
            // moves on instead of stopping there for good.
            sort(seq, v.value(), mask, &mut out, damaged);
        }
    }
    // The whole range was seen: records missing at its end were deleted (retention, or
    // the priority eviction, which can remove the newest), and the reader moves past them
    // instead of reading the same empty stretch again.
    Ok((out, upto))
}

/// Like [`read_after`], one key at a time, each read under `catch_unwind`: for a log
/// whose range read failed (redb panics on a damaged page of the table). A record that
/// cannot be read is damaged (its bytes unknown), a missing one was deleted; either way
/// the reader moves past it, so only the records on the damaged page are lost.
pub fn read_by_key(
    txn: &ReadTransaction,
    after: u64,
    upto: u64,
    max: usize,
    bit: u8,
    damaged: &mut Vec<Damaged>,
) -> (Vec<StoredEvent>, u64) {
    let mut out = Vec::new();
    let mut last = after;
    let mask = 1u64 << bit;
    let mut probed = 0usize;
    let budget = max.saturating_mul(4);
    if after >= upto {
        return (out, last);
    }
    for idx in index(after + 1)..=index(upto) {
        let first = (idx * SEGMENT).max(after + 1);
        let end = last_seq(idx).min(upto);
        let table = match super::damage::caught(|| txn.open_table(def(&name(idx)))) {
            Ok(Ok(t)) => t,
            Ok(Err(TableError::TableDoesNotExist(_))) => continue,
            Ok(Err(e)) => {
                damaged.push(unreadable(first, format!("table {}: {e}", name(idx))));
                last = end;
                continue;
            }
            Err(panic) => {
                damaged.push(unreadable(first, format!("table {}: {panic}", name(idx))));
                last = end;
                continue;
            }
        };
        for seq in first..=end {
            if out.len() >= max || probed >= budget {
                return (out, last);
            }
            probed += 1;
            last = seq;
            let read = super::damage::caught(|| {
                table
                    .get(seq)
                    .map(|v| v.map(|v| v.value().to_vec()))
                    .map_err(|e| e.to_string())
            });
            match read {
                Ok(Ok(Some(bytes))) => sort(seq, &bytes, mask, &mut out, damaged),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => damaged.push(unreadable(seq, e)),
                Err(panic) => damaged.push(unreadable(seq, panic)),
            }
        }
    }
    // As in `read_after`: the whole range was probed.
    (out, upto)
}

fn unreadable(seq: u64, why: String) -> Damaged {
    Damaged {
        seq,
        error: super::RecordError::Unreadable(why),
        bytes: Vec::new(),
    }
}

/// The record at `seq`, if it is stored and sound.
pub fn read_one(txn: &ReadTransaction, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
    let t = match txn.open_table(def(&name(index(seq)))) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(redb_err(e)),
    };
    let v = t.get(seq).map_err(redb_err)?;
    Ok(v.and_then(|v| record::decode(seq, v.value()).ok()))
}

/// Records in the log, over all segments.
pub fn len(txn: &ReadTransaction) -> Result<u64, StoreError> {
    let mut n = 0;
    for idx in present_read(txn)? {
        match txn.open_table(def(&name(idx))) {
            Ok(t) => n += t.len().map_err(redb_err)?,
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(redb_err(e)),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_map_to_segments_and_back() {
        assert_eq!(index(1), 0);
        assert_eq!(last_seq(0), SEGMENT - 1);
        assert_eq!(index(SEGMENT - 1), 0);
        assert_eq!(index(SEGMENT), 1);
        assert_eq!(parse(&name(42)), Some(42));
        assert_eq!(parse("log"), None);
        assert_eq!(parse("logs"), None);
    }
}
