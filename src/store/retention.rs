//! Retention inside a write transaction: dropping the oldest records to make room
//! (`on_full = "drop_oldest"`) or because they are older than `max_age`.
//!
//! Every dropped record is counted for each upstream that had not yet acknowledged it:
//! a drop is never silent.

use super::{StoreError, record, redb_err};
use redb::{ReadableTable, Table};

/// Bytes a record costs in the accounting: its value plus its key.
pub fn cost(value_len: usize) -> u64 {
    value_len as u64 + 8
}

/// What a retention pass removed.
#[derive(Debug, Default)]
pub struct Dropped {
    pub count: u64,
    pub bytes: u64,
    /// `owed[bit]`: dropped records that the upstream with that bit had not acknowledged.
    pub owed: Vec<(u8, u64)>,
}

impl Dropped {
    pub(super) fn add(&mut self, bytes: u64, owed_mask: u64) {
        self.count += 1;
        self.bytes += bytes;
        for bit in 0..64u8 {
            if owed_mask & (1u64 << bit) != 0 {
                match self.owed.iter_mut().find(|(b, _)| *b == bit) {
                    Some((_, n)) => *n += 1,
                    None => self.owed.push((bit, 1)),
                }
            }
        }
    }
}

/// Removes oldest records until at least `need` bytes are freed (or the log is empty).
pub fn drop_oldest(
    log: &mut Table<u64, &[u8]>,
    need: u64,
    owed: &dyn Fn(u64, u64) -> u64,
    out: &mut Dropped,
) -> Result<(), StoreError> {
    let mut freed = 0;
    while freed < need {
        let Some((k, v)) = log.pop_first().map_err(redb_err)? else {
            break;
        };
        let seq = k.value();
        let bytes = cost(v.value().len());
        let dests = record::decode(seq, v.value()).map(|r| r.dests).unwrap_or(0);
        freed += bytes;
        out.add(bytes, owed(seq, dests));
    }
    Ok(())
}

/// Removes records received before `cutoff_ms`, oldest first, at most `limit` per call
/// (the rest go in later commits) so one commit stays short. Returns true when it
/// stopped at a record that is recent enough (nothing older is left in this table).
pub fn drop_older_than(
    log: &mut Table<u64, &[u8]>,
    cutoff_ms: u64,
    limit: usize,
    owed: &dyn Fn(u64, u64) -> u64,
    out: &mut Dropped,
) -> Result<bool, StoreError> {
    for _ in 0..limit {
        let first = log.first().map_err(redb_err)?.map(|(k, v)| {
            let seq = k.value();
            (seq, record::decode(seq, v.value()).ok())
        });
        let Some((_, Some(rec))) = first else {
            return Ok(first.is_some());
        };
        if rec.received_ms >= cutoff_ms {
            return Ok(true);
        }
        let Some((k, v)) = log.pop_first().map_err(redb_err)? else {
            break;
        };
        out.add(cost(v.value().len()), owed(k.value(), rec.dests));
    }
    Ok(false)
}
