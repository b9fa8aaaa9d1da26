//! Priorities in the log: which priority each record has, which priorities each segment
//! may hold, and retention that drops the lowest priority first (`on_full =
//! "drop_oldest"` with `[[forward]] priority`).
//!
//! A record's priority is the highest of the lanes it is for (each destination bit is an
//! upstream's lane of one priority: `lane_name`), since a record is kept or dropped whole.
//! `meta` keeps, per segment, a mask of the priorities it may hold (`prio.<index>`), so
//! that finding the lowest priority present never reads the whole log.
//!
//! Invariant: a segment's mask is never missing a priority of a record it holds (it may
//! name priorities it no longer holds; the eviction then reads that segment once and
//! narrows the mask). A segment with no row holds default-priority records only: every
//! store written before priorities, and every segment no other priority was appended to,
//! costs nothing here. Masks narrowed inside a transaction take effect only once it has
//! committed; widened ones at once (a wider mask is never wrong).
//!
//! Priority eviction removes records from the middle of the log, so the live seqs are no
//! longer one contiguous run there: readers treat a missing record as a deleted one, as
//! they treat a missing segment table.

use super::retention::{self, Dropped};
use super::segments::{self, index};
use super::trim::Front;
use super::{META, StoreError, record, redb_err};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

/// Rows of `meta`, reused rather than a table of their own (each new key and value type
/// of a redb table, and each first removal from one, costs some 15 to 40 KB of binary):
/// `prio.<slot>` -> `segment index << 16 | mask of the priorities it may hold` (bit p:
/// priority p), segment `idx` in slot `idx % SLOTS`. A ring, so rows are overwritten,
/// never removed, and there are at most `SLOTS` of them. Two live segments in one slot
/// (a log of more than 67 million records) lose the older one's row: a segment whose slot
/// holds another live segment's row is taken to hold every priority, never fewer.
const KEY: &str = "prio.";
const SLOTS: u64 = 1024;
/// Every priority: what a segment whose row was overwritten may hold.
const ALL: u16 = (1 << 10) - 1;

fn key(idx: u64) -> String {
    format!("{KEY}{:04}", idx % SLOTS)
}

/// The priority of records for the default lanes only.
pub const DEFAULT: u8 = crate::config::DEFAULT_PRIORITY;

fn bit(priority: u8) -> u16 {
    1 << priority.min(15)
}

/// The writer's view of the priorities in the log. Few segments (one per 65,536 records)
/// and fewer changes per commit: plain vectors.
#[derive(Debug)]
pub struct Priorities {
    /// The priority of each destination bit, from its lane's name.
    of_bit: [u8; 64],
    /// Committed masks by segment index, ascending, of segments at or past the front;
    /// segments missing here hold the default priority only (or, when another live
    /// segment holds their slot, any).
    masks: Vec<(u64, u16)>,
    /// Masks changed in the open transaction (None: forgotten, the segment is gone).
    staged: Vec<(u64, Option<u16>)>,
    /// Segments whose rows were widened by appends: cleared only once written and
    /// committed.
    dirty: Vec<u64>,
}

impl Priorities {
    /// Reads the masks of the segments from `oldest` on and maps each registered lane's
    /// bit to its priority (`lanes`: (store name, bit) of every lane ever registered,
    /// configured or not).
    pub fn load(
        txn: &WriteTransaction,
        lanes: &[(String, u8)],
        oldest: u64,
    ) -> Result<Priorities, StoreError> {
        let mut of_bit = [DEFAULT; 64];
        for (name, b) in lanes {
            if let Some(slot) = of_bit.get_mut(usize::from(*b)) {
                *slot = super::lane_priority(name);
            }
        }
        let meta = txn.open_table(META).map_err(redb_err)?;
        let mut p = Priorities {
            of_bit,
            masks: Vec::new(),
            staged: Vec::new(),
            dirty: Vec::new(),
        };
        for item in meta.range(KEY..).map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            if !k.value().starts_with(KEY) {
                break;
            }
            let (idx, mask) = (v.value() >> 16, (v.value() & 0xffff) as u16);
            // Rows of segments deleted since are left to be overwritten.
            if idx >= oldest {
                p.set_committed(idx, Some(mask));
            }
        }
        Ok(p)
    }

    /// The priority of a record for `dests`: the highest of its lanes'.
    pub fn of(&self, dests: u64) -> u8 {
        (0..64u8)
            .filter(|b| dests & (1u64 << b) != 0)
            .map(|b| self.of_bit[usize::from(b)])
            .max()
            .unwrap_or(DEFAULT)
    }

    fn committed_mask(&self, idx: u64) -> Option<u16> {
        self.masks
            .binary_search_by_key(&idx, |(i, _)| *i)
            .ok()
            .map(|at| self.masks[at].1)
    }

    fn mask(&self, idx: u64) -> u16 {
        if let Some((_, staged)) = self.staged.iter().find(|(i, _)| *i == idx) {
            return staged.unwrap_or(0);
        }
        if let Some(m) = self.committed_mask(idx) {
            return m;
        }
        // Every row kept is of a live segment: one in this slot took the row of `idx`.
        let shared = self.masks.iter().any(|(i, _)| i % SLOTS == idx % SLOTS);
        if shared { ALL } else { bit(DEFAULT) }
    }

    fn set_committed(&mut self, idx: u64, mask: Option<u16>) {
        match (self.masks.binary_search_by_key(&idx, |(i, _)| *i), mask) {
            (Ok(at), Some(m)) => self.masks[at].1 = m,
            (Ok(at), None) => {
                self.masks.remove(at);
            }
            (Err(at), Some(m)) => self.masks.insert(at, (idx, m)),
            (Err(_), None) => {}
        }
    }

    fn stage(&mut self, idx: u64, mask: Option<u16>) {
        match self.staged.iter_mut().find(|(i, _)| *i == idx) {
            Some(entry) => entry.1 = mask,
            None => self.staged.push((idx, mask)),
        }
    }

    /// True when some segment may hold a priority other than the default: only then does
    /// retention need to look at priorities.
    pub fn mixed(&self) -> bool {
        self.masks.iter().any(|(_, m)| *m != bit(DEFAULT))
            || self
                .staged
                .iter()
                .any(|(_, m)| m.is_some_and(|m| m != bit(DEFAULT)))
    }

    /// A record for `dests` is being appended at `seq`.
    pub fn appended(&mut self, seq: u64, dests: u64) {
        let p = self.of(dests);
        if p == DEFAULT {
            return;
        }
        let idx = index(seq);
        // What this segment is known to hold, not `mask`'s "any" for a shared slot: the
        // row must be written, or it would be missing once the other segment is gone.
        let mask = match self.staged.iter().find(|(i, _)| *i == idx) {
            Some((_, staged)) => staged.unwrap_or(0),
            None => self.committed_mask(idx).unwrap_or(bit(DEFAULT)),
        };
        if mask & bit(p) == 0 {
            // A segment without a row may already hold default-priority records.
            let wider = mask | bit(p);
            self.set_committed(idx, Some(wider));
            if let Some(entry) = self.staged.iter_mut().find(|(i, _)| *i == idx) {
                entry.1 = Some(wider);
            }
            if !self.dirty.contains(&idx) {
                self.dirty.push(idx);
            }
        }
    }

    /// Writes the changed rows in `txn`, and forgets rows of segments below `oldest`
    /// (deleted whole since).
    pub fn save(&mut self, txn: &WriteTransaction, oldest: u64) -> Result<(), StoreError> {
        let gone: Vec<u64> = self
            .masks
            .iter()
            .take_while(|(i, _)| *i < oldest)
            .map(|(i, _)| *i)
            .collect();
        for idx in gone {
            self.stage(idx, None);
        }
        if self.staged.is_empty() && self.dirty.is_empty() {
            return Ok(());
        }
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        let row = |idx: u64, m: u16| (idx << 16) | u64::from(m);
        // A forgotten segment's row stays until its slot is used again.
        for (idx, mask) in &self.staged {
            if let Some(m) = mask {
                meta.insert(key(*idx).as_str(), row(*idx, *m))
                    .map_err(redb_err)?;
            }
        }
        for idx in &self.dirty {
            if self.staged.iter().all(|(i, _)| i != idx) {
                if let Some(m) = self.committed_mask(*idx) {
                    meta.insert(key(*idx).as_str(), row(*idx, m))
                        .map_err(redb_err)?;
                }
            }
        }
        Ok(())
    }

    /// The transaction that [`Priorities::save`] wrote to has committed.
    pub fn committed(&mut self) {
        for (idx, mask) in std::mem::take(&mut self.staged) {
            self.set_committed(idx, mask);
        }
        self.dirty.clear();
    }

    /// It failed: narrowed masks are forgotten, rows to write stay to write.
    pub fn rolled_back(&mut self) {
        self.staged.clear();
    }

    /// Drops records until `need` bytes are freed: the lowest priority present first,
    /// oldest first within it. Records every lane has acknowledged go as any other (they
    /// are reclaimed before retention runs, so few are left).
    pub fn drop_lowest(
        &mut self,
        txn: &WriteTransaction,
        front: &mut Front,
        next_seq: u64,
        need: u64,
        owed: &dyn Fn(u64, u64) -> u64,
        out: &mut Dropped,
    ) -> Result<(), StoreError> {
        let start = out.bytes;
        let last = index(next_seq.saturating_sub(1));
        while out.bytes - start < need {
            let live = front.oldest..=last;
            let present = live.clone().fold(0u16, |m, idx| m | self.mask(idx));
            if present == 0 {
                return Ok(());
            }
            let lowest = present.trailing_zeros() as u8;
            let holding: Vec<u64> = live
                .filter(|idx| self.mask(*idx) & bit(lowest) != 0)
                .collect();
            for idx in holding {
                let got = out.bytes - start;
                let (kept, empty) =
                    self.drop_in(txn, idx, lowest, need - got.min(need), owed, out)?;
                if empty {
                    // A row with no priorities, not none (which would mean "default"):
                    // the eviction skips the gap. Pruned once the front passes it.
                    segments::delete(txn, idx)?;
                    self.stage(idx, Some(0));
                    if idx == front.oldest {
                        front.oldest = (idx + 1).min(index(next_seq));
                    }
                } else {
                    self.stage(idx, Some(kept));
                }
                if out.bytes - start >= need {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Drops records of `priority` from segment `idx`, oldest first, until `need` bytes
    /// went; returns the mask of what it still holds (read whole, so exact) and whether
    /// it is empty.
    fn drop_in(
        &self,
        txn: &WriteTransaction,
        idx: u64,
        priority: u8,
        need: u64,
        owed: &dyn Fn(u64, u64) -> u64,
        out: &mut Dropped,
    ) -> Result<(u16, bool), StoreError> {
        let mut t = segments::open(txn, idx)?;
        let mut kept = 0u16;
        let mut freed = 0u64;
        let mut removed = Vec::new();
        for item in t.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            let seq = k.value();
            // A record that does not decode is the quarantine's business: kept here.
            let Ok(rec) = record::decode(seq, v.value()) else {
                kept |= bit(DEFAULT);
                continue;
            };
            let p = self.of(rec.dests);
            if p == priority && freed < need {
                let bytes = retention::cost(v.value().len());
                freed += bytes;
                out.add(bytes, owed(seq, rec.dests));
                removed.push(seq);
            } else {
                kept |= bit(p);
            }
        }
        for seq in &removed {
            t.remove(seq).map_err(redb_err)?;
        }
        let empty = t.is_empty().map_err(redb_err)?;
        Ok((kept, empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, backends::InMemoryBackend};

    fn reload(db: &Database, lanes: &[(String, u8)], oldest: u64) -> Priorities {
        let txn = db.begin_write().unwrap();
        let p = Priorities::load(&txn, lanes, oldest).unwrap();
        txn.commit().unwrap();
        p
    }

    /// Masks survive a reopen; two live segments in one slot leave the older one taken
    /// for "any priority", never for fewer than it holds.
    #[test]
    fn masks_are_kept_and_a_shared_slot_over_approximates() {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .unwrap();
        let lanes = vec![
            ("u".to_string(), 0),
            ("u.p7".to_string(), 1),
            ("u.p2".to_string(), 2),
        ];
        let mut p = reload(&db, &lanes, 0);
        assert_eq!((p.of(0b001), p.of(0b011), p.of(0b100)), (5, 7, 2));
        let seg = segments::SEGMENT;
        p.appended(3, 0b010); // segment 0: priority 7
        p.appended(seg * SLOTS + 1, 0b100); // segment 1024, slot 0 too: priority 2
        p.appended(seg + 1, 0b001); // segment 1: the default, no row
        assert!(p.mixed());
        let txn = db.begin_write().unwrap();
        p.save(&txn, 0).unwrap();
        txn.commit().unwrap();
        p.committed();
        assert_eq!(p.mask(0), bit(5) | bit(7), "in memory: exact");
        let p = reload(&db, &lanes, 0);
        assert_eq!(p.mask(SLOTS), bit(5) | bit(2));
        assert_eq!(p.mask(0), ALL, "its row was overwritten");
        assert_eq!(p.mask(1), bit(5));
        // Once segment 0 is gone, slot 0 is segment 1024's alone.
        let p = reload(&db, &lanes, 1);
        assert_eq!((p.mask(SLOTS), p.mask(1)), (bit(5) | bit(2), bit(5)));
    }
}
