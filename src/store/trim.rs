//! Removing records from the front of the segmented log, inside the writer's
//! transaction: acknowledged records (reclaim) and retention (max age, drop oldest).
//!
//! Both only ever remove a prefix of the seqs, which keeps the invariant of
//! [`super::segments`]. What they change in [`Front`] is applied by the caller only once
//! the transaction has committed.

use super::retention::{self, Dropped};
use super::segments::{self, index, last_seq};
use super::{StoreError, redb_err};
use redb::{ReadableTableMetadata, WriteTransaction};

/// Where the front of the log stands.
#[derive(Debug, Clone, Copy)]
pub struct Front {
    /// Index of the oldest segment table that may exist.
    pub oldest: u64,
    /// Every acknowledged record at or below this seq has been deleted.
    pub reclaimed: u64,
}

/// What was removed: records and their bytes in the accounting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    pub count: u64,
    pub bytes: u64,
}

/// Deletes acknowledged records (at or below `min`, the smallest cursor), in whole
/// segments: every segment that `min` has passed, and the one holding `min` too when
/// nothing is stored above it (`next_seq` = the seq the next append gets). Key by key only
/// when `short` (space is short, and acknowledged records must never push out
/// unacknowledged ones nor cause a refusal).
pub fn reclaim(
    txn: &WriteTransaction,
    front: &mut Front,
    min: u64,
    next_seq: u64,
    short: bool,
) -> Result<Freed, StoreError> {
    let mut freed = Freed::default();
    if min <= front.reclaimed {
        return Ok(freed);
    }
    let all_acked = min + 1 >= next_seq;
    let whole_to = if all_acked {
        Some(index(min))
    } else {
        index(min + 1).checked_sub(1)
    };
    if let Some(to) = whole_to.filter(|to| *to >= front.oldest) {
        for idx in front.oldest..=to {
            let (count, bytes) = segments::delete(txn, idx)?;
            freed.count += count;
            freed.bytes += bytes;
        }
        front.oldest = (to + 1).min(index(next_seq));
        front.reclaimed = if all_acked { min } else { last_seq(to) };
    }
    if short && front.reclaimed < min {
        let mut t = segments::open(txn, index(min))?;
        let mut removed = t
            .extract_from_if(front.reclaimed + 1..=min, |_, _| true)
            .map_err(redb_err)?;
        for item in removed.by_ref() {
            let (_, v) = item.map_err(redb_err)?;
            freed.count += 1;
            freed.bytes += retention::cost(v.value().len());
        }
        front.reclaimed = min;
    }
    Ok(freed)
}

/// Drops the oldest records until `need` bytes are freed or the log is empty.
pub fn drop_oldest(
    txn: &WriteTransaction,
    front: &mut Front,
    next_seq: u64,
    need: u64,
    owed: &dyn Fn(u64, u64) -> u64,
    out: &mut Dropped,
) -> Result<(), StoreError> {
    let start = out.bytes;
    each_oldest(
        txn,
        front,
        next_seq,
        |t, out| {
            let got = out.bytes - start;
            if got >= need {
                return Ok(true);
            }
            retention::drop_oldest(t, need - got, owed, out)?;
            Ok(out.bytes - start >= need)
        },
        out,
    )
}

/// Drops records received before `cutoff_ms`, oldest first, at most `limit` per call.
pub fn drop_older_than(
    txn: &WriteTransaction,
    front: &mut Front,
    next_seq: u64,
    cutoff_ms: u64,
    limit: usize,
    owed: &dyn Fn(u64, u64) -> u64,
    out: &mut Dropped,
) -> Result<(), StoreError> {
    let start = out.count;
    each_oldest(
        txn,
        front,
        next_seq,
        |t, out| {
            let done = (out.count - start) as usize;
            if done >= limit {
                return Ok(true);
            }
            let stopped_early = retention::drop_older_than(t, cutoff_ms, limit - done, owed, out)?;
            Ok(stopped_early || (out.count - start) as usize >= limit)
        },
        out,
    )
}

type LogTable<'t> = redb::Table<'t, u64, &'static [u8]>;

/// Runs `f` on the segments from the oldest on, until it reports it is done; a segment
/// it leaves empty is deleted (it may still be written to when it is the last one: it
/// is created again then).
fn each_oldest(
    txn: &WriteTransaction,
    front: &mut Front,
    next_seq: u64,
    mut f: impl FnMut(&mut LogTable<'_>, &mut Dropped) -> Result<bool, StoreError>,
    out: &mut Dropped,
) -> Result<(), StoreError> {
    let last = index(next_seq.saturating_sub(1));
    let mut idx = front.oldest;
    while idx <= last {
        let (done, empty) = {
            let mut t = segments::open(txn, idx)?;
            let done = f(&mut t, out)?;
            (done, t.is_empty().map_err(redb_err)?)
        };
        if !empty {
            return Ok(());
        }
        segments::delete(txn, idx)?;
        front.oldest = (idx + 1).min(index(next_seq));
        if done {
            return Ok(());
        }
        idx += 1;
    }
    Ok(())
}
