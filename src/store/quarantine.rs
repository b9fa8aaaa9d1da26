//! The quarantine: damaged entries moved out of the way, with what was found wrong.
//!
//! A reader that meets a record failing its checksum (or not decoding) skips it and asks
//! the writer to move it here, so it is never sent anywhere, never met again, and still
//! there for `ferry store dump`/`info` and whoever wants to look at the bytes.
//!
//! Table `quarantine`: id (u64, from `meta` "quarantine_next", never reused) -> a sealed
//! [`Entry`]. Bounded by `store.quarantine_max_bytes`: past it the oldest entries are
//! dropped (counted in `ferry_store_quarantine_dropped_total`).
//!
//! The move is conditional: the writer removes the source row only if it still holds the
//! very bytes found damaged (a retained message or a session can be written again between
//! the read and the move; the new, good row stays).

use super::queue::Queues;
use super::retained::{self, RetainedChange};
use super::retention;
use super::segments;
use super::{
    META, RETAINED, RecordError, SESSION_QUEUE, SESSION_SUBS, SESSIONS, StoreError, redb_err, seal,
};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

pub(crate) const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");

/// Format byte of [`Entry`] (inside its seal).
const ENTRY_FORMAT_V1: u8 = 1;

/// Where a damaged entry was found.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Log { seq: u64 },
    Retained { topic: String },
    Session { client_id: String },
    Subscription { client_id: String, filter: String },
    QueueRow { client_id: String, qseq: u64 },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Log { seq } => write!(f, "log seq {seq}"),
            Source::Retained { topic } => write!(f, "retained message on {topic:?}"),
            Source::Session { client_id } => write!(f, "session {client_id:?}"),
            Source::Subscription { client_id, filter } => {
                write!(f, "subscription {filter:?} of session {client_id:?}")
            }
            Source::QueueRow { client_id, qseq } => {
                write!(f, "queued delivery {qseq} of session {client_id:?}")
            }
        }
    }
}

/// One quarantined entry: where it was, when it was moved, why, and its bytes as found.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at_ms: u64,
    pub source: Source,
    pub error: String,
    pub bytes: Vec<u8>,
}

impl Entry {
    pub fn new(source: Source, error: &RecordError, bytes: &[u8]) -> Entry {
        Entry {
            at_ms: crate::event::now_ms(),
            source,
            error: error.to_string(),
            bytes: bytes.to_vec(),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        seal::encode(ENTRY_FORMAT_V1, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, RecordError> {
        seal::decode(ENTRY_FORMAT_V1, bytes)
    }
}

/// Entries and bytes in the quarantine (kept in `meta`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

/// Bytes an entry is counted for: its row, key and redb's per-entry overhead.
pub(super) fn cost(row_len: usize) -> u64 {
    row_len as u64 + 8 + 32
}

pub(super) fn init(txn: &WriteTransaction) -> Result<Tally, StoreError> {
    let meta = txn.open_table(META).map_err(redb_err)?;
    let get = |k: &str| -> Result<u64, StoreError> {
        Ok(meta.get(k).map_err(redb_err)?.map_or(0, |v| v.value()))
    };
    let tally = Tally {
        count: get("quarantine_count")?,
        bytes: get("quarantine_bytes")?,
    };
    drop(meta);
    txn.open_table(QUARANTINE).map_err(redb_err)?;
    Ok(tally)
}

/// What moving entries freed from the log (for its accounting) and dropped from the
/// quarantine (past its quota).
#[derive(Debug, Default)]
pub(super) struct Moved {
    pub log_count: u64,
    pub log_bytes: u64,
    pub dropped: u64,
}

/// Moves `entries` into the quarantine inside the writer's transaction: each source row
/// still holding the damaged bytes is removed (with its accounting), then the oldest
/// entries go while the quarantine is over `quota` bytes.
pub(super) fn apply<'a>(
    txn: &WriteTransaction,
    entries: impl Iterator<Item = &'a Entry>,
    tally: &mut Tally,
    quota: u64,
    retained_tally: &mut retained::Tally,
    queues: &mut Queues,
) -> Result<Moved, StoreError> {
    let mut moved = Moved::default();
    let mut entries = entries.peekable();
    if entries.peek().is_none() {
        return Ok(moved);
    }
    let meta = txn.open_table(META).map_err(redb_err)?;
    let mut next = meta
        .get("quarantine_next")
        .map_err(redb_err)?
        .map_or(1, |v| v.value());
    drop(meta);
    for entry in entries {
        if !remove_source(txn, entry, &mut moved, retained_tally, queues)? {
            // Already gone or written again: nothing damaged is left to move.
            continue;
        }
        let row = entry.encode()?;
        let mut q = txn.open_table(QUARANTINE).map_err(redb_err)?;
        q.insert(next, row.as_slice()).map_err(redb_err)?;
        next += 1;
        tally.count += 1;
        tally.bytes += cost(row.len());
    }
    {
        let mut q = txn.open_table(QUARANTINE).map_err(redb_err)?;
        while tally.bytes > quota {
            let Some((_, v)) = q.pop_first().map_err(redb_err)? else {
                break;
            };
            tally.bytes = tally.bytes.saturating_sub(cost(v.value().len()));
            tally.count = tally.count.saturating_sub(1);
            moved.dropped += 1;
        }
    }
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    meta.insert("quarantine_next", next).map_err(redb_err)?;
    meta.insert("quarantine_count", tally.count)
        .map_err(redb_err)?;
    meta.insert("quarantine_bytes", tally.bytes)
        .map_err(redb_err)?;
    Ok(moved)
}

/// Removes the entry's source row if it still holds the damaged bytes; true if it did.
fn remove_source(
    txn: &WriteTransaction,
    entry: &Entry,
    moved: &mut Moved,
    retained_tally: &mut retained::Tally,
    queues: &mut Queues,
) -> Result<bool, StoreError> {
    let same =
        |v: Option<redb::AccessGuard<'_, &[u8]>>| v.is_some_and(|v| v.value() == entry.bytes);
    match &entry.source {
        Source::Log { seq } => {
            let mut t = segments::open(txn, segments::index(*seq))?;
            if !same(t.get(*seq).map_err(redb_err)?) {
                return Ok(false);
            }
            t.remove(*seq).map_err(redb_err)?;
            moved.log_count += 1;
            moved.log_bytes += retention::cost(entry.bytes.len());
        }
        Source::Retained { topic } => {
            let t = txn.open_table(RETAINED).map_err(redb_err)?;
            if !same(t.get(topic.as_str()).map_err(redb_err)?) {
                return Ok(false);
            }
            drop(t);
            let delete = RetainedChange::Delete(topic.as_str().into());
            retained::apply(txn, std::iter::once(&delete), retained_tally)?;
        }
        Source::Session { client_id } => {
            let t = txn.open_table(SESSIONS).map_err(redb_err)?;
            if !same(t.get(client_id.as_str()).map_err(redb_err)?) {
                return Ok(false);
            }
            drop(t);
            // Without its record (expiry, owner) the session cannot be restored: it goes
            // as an expired one would, with its subscriptions and queue.
            let delete = super::StateChange::DeleteSession {
                client_id: client_id.clone(),
            };
            super::state::apply(txn, &delete, queues)?;
        }
        Source::Subscription { client_id, filter } => {
            let mut t = txn.open_table(SESSION_SUBS).map_err(redb_err)?;
            let key = (client_id.as_str(), filter.as_str());
            if !same(t.get(key).map_err(redb_err)?) {
                return Ok(false);
            }
            t.remove(key).map_err(redb_err)?;
        }
        Source::QueueRow { client_id, qseq } => {
            let t = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
            if !same(t.get((client_id.as_str(), *qseq)).map_err(redb_err)?) {
                return Ok(false);
            }
            drop(t);
            queues.remove(txn, client_id, *qseq)?;
        }
    }
    Ok(true)
}

/// A quarantined entry by its id, or why its own row cannot be read.
pub type Listed = (u64, Result<Entry, RecordError>);

/// Every quarantined entry, oldest first (a damaged entry row is reported as such).
pub fn list(txn: &redb::ReadTransaction) -> Result<Vec<Listed>, StoreError> {
    let t = match txn.open_table(QUARANTINE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_err(e)),
    };
    let mut out = Vec::new();
    for item in t.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        out.push((k.value(), Entry::decode(v.value())));
    }
    Ok(out)
}
