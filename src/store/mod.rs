//! The durable log: redb tables, the handle the rest of ferry uses, and batch reads.
//!
//! Layout (one redb file, `<store.dir>/ferry.redb`, with `ferry.redb.marker` beside it: `marker.rs`):
//! - `log.<n>`: seq (u64, strictly increasing, never reused) -> [`record`] bytes, one
//!   table per 65,536 seqs ([`segments`])
//! - `cursors`: upstream name -> highest seq such that every record at or below it that
//!   is destined for that upstream has been acknowledged by it
//! - `upstream_bits`: upstream name -> its bit in a record's destination mask
//! - `meta`: "next_seq" -> the seq the next append gets (kept so seqs are never reused,
//!   even after every record was deleted), and the log's size below it ([`accounting`])
//! - `sessions`: MQTT client id -> persistent session record (subscriptions, expiry)
//! - `retained`: topic -> the retained message, as a log record; its bytes and count are
//!   kept in `meta` ("retained_bytes", "retained_count"), apart from the log's
//! - `session_subs`: (client id, filter) -> one subscription of a persistent session
//! - `session_queue`: (client id, qseq) -> a delivery queued for a persistent session
//! - `dead_letters`: (seq, upstream) -> an event that upstream refused ([`deadletter`])
//! - `quarantine`: id -> a damaged entry moved out of the way ([`quarantine`])
//!
//! Log records carry their own CRC-32C ([`record`]); every other row that holds data
//! (sessions, subscriptions, queued deliveries, dead letters, quarantine entries) is
//! sealed with one ([`seal`]). A damaged record or row is skipped, counted and moved to
//! the quarantine, never used.
//!
//! All writes go through one thread ([`writer`]); readers open their own read transactions.

mod accounting;
pub mod cli;
pub(crate) mod crc32c;
mod damage;
mod db;
pub mod deadletter;
pub mod inspect;
mod marker;
mod priorities;
pub mod quarantine;
mod queue;
mod record;
mod retained;
mod retention;
pub mod salvage;
mod seal;
mod segments;
mod state;
mod trim;
mod writer;

pub use db::{BackendFactory, Location};
pub use marker::MARKER_FILE;
pub use writer::Limits;

pub use queue::{QueueBound, QueueSignal, Queued, QueuedRow, encode as encode_queued};
pub use record::{RecordError, Routes, StoredEvent};
pub use retained::{RetainedChange, retained_cost};
pub use state::{StateChange, StoredSession};

use crate::event::Event;
use crate::metrics::Metrics;
use db::DbSlot;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use writer::Command;

pub(crate) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
pub(crate) const UPSTREAM_BITS: TableDefinition<&str, u8> = TableDefinition::new("upstream_bits");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
pub(crate) const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
/// One row per subscription of a persistent session, so a SUBSCRIBE writes one small row
/// instead of rewriting the whole session record.
pub(crate) const SESSION_SUBS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("session_subs");
/// The queued QoS 1/2 deliveries of persistent sessions, by (client id, qseq): see
/// [`queue`].
pub(crate) const SESSION_QUEUE: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("session_queue");

/// At most this many upstreams can ever be registered in one store (bits of a u64 mask).
/// An upstream registers one name per priority its rules use ([`lane_name`]).
pub const MAX_UPSTREAMS: usize = 64;

/// The priority of the lane an upstream always has: its own name.
const DEFAULT_LANE: u8 = crate::config::DEFAULT_PRIORITY;

/// The name under which the store knows an upstream's lane of `priority`: the upstream's
/// own name for the default priority (so a store written before priorities keeps its
/// cursor), else `<name>.p<priority>` ('.' never occurs in an upstream name).
pub fn lane_name(upstream: &str, priority: u8) -> String {
    if priority == DEFAULT_LANE {
        upstream.to_string()
    } else {
        format!("{upstream}.p{priority}")
    }
}

/// The upstream a lane belongs to, from its store name (see [`lane_name`]).
pub fn lane_upstream(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((upstream, p)) if lane_suffix(p).is_some() => upstream,
        _ => name,
    }
}

/// The priority in a lane name's suffix after the '.': `p0`..`p9`.
fn lane_suffix(suffix: &str) -> Option<u8> {
    match suffix.as_bytes() {
        [b'p', d @ b'0'..=b'9'] => Some(d - b'0'),
        _ => None,
    }
}

/// The priority of a lane from its store name (see [`lane_name`]).
pub fn lane_priority(name: &str) -> u8 {
    name.rsplit_once('.')
        .and_then(|(_, p)| lane_suffix(p))
        .unwrap_or(DEFAULT_LANE)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    /// Boxed: redb's error is large and this travels through every append's result.
    #[error("store: {0}")]
    Redb(Box<redb::Error>),
    #[error("store record: {0}")]
    Record(#[from] RecordError),
    #[error("store holds {0} upstreams; at most {MAX_UPSTREAMS} are supported")]
    TooManyUpstreams(usize),
    #[error("store writer has stopped")]
    Closed,
    #[error("no upstream named {0:?} in this store")]
    UnknownUpstream(String),
    /// `on_full = "reject_new"` and the store is at `max_bytes`.
    #[error("store is full (store.max_bytes reached, on_full = \"reject_new\")")]
    Full,
    /// The store is being reopened after an I/O error.
    #[error("store is temporarily unavailable (recovering from an I/O error)")]
    Unavailable,
    #[error("commit failed: {0}")]
    Commit(String),
    /// The store file is there but redb cannot open it (it reports corruption, or panics
    /// on it). Restarting cannot fix that: ferry stops with exit status 3.
    #[error(
        "store file {path} is damaged and cannot be opened ({reason}). ferry will not start \
         on it (exit status 3). To keep what can still be read, copy it into a new store \
         directory with `ferry store salvage {dir} NEWDIR` and point store.dir at NEWDIR; \
         to start with an empty store instead, move {path} aside and remove {dir}/{MARKER_FILE}",
        dir = parent_dir(.path)
    )]
    Damaged { path: String, reason: String },
    /// The marker says the directory held a store, but the store file is missing or
    /// empty: ferry will not put an empty store in its place (exit status 3).
    #[error(
        "store file {path} is {what}, but {marker} says it held a store: ferry will not \
         start an empty store in its place (exit status 3). Restore {path} (e.g. from a \
         backup), or remove {marker} to start with an empty store",
        what = if *.empty { "empty (0 bytes)" } else { "missing" }
    )]
    Lost {
        path: String,
        marker: String,
        empty: bool,
    },
}

impl StoreError {
    /// True when the store itself is unusable as it is ([`StoreError::Damaged`],
    /// [`StoreError::Lost`]): an operator has to act, restarting cannot help.
    pub fn needs_operator(&self) -> bool {
        matches!(self, StoreError::Damaged { .. } | StoreError::Lost { .. })
    }
}

/// The directory of a store file, for messages.
fn parent_dir(path: &str) -> String {
    Path::new(path)
        .parent()
        .map(|d| d.display().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| ".".into())
}

fn redb_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Redb(Box::new(e.into()))
}

/// Tuning for the writer, from `[store]`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_size: usize,
    pub max_batch: usize,
    pub linger: std::time::Duration,
    pub queue: usize,
    /// Bytes of events waiting for the writer (the budget's store share).
    pub queue_bytes: usize,
    pub limits: Limits,
}

/// One upstream as the store knows it: its persistent mask bit and where it stands.
#[derive(Debug, Clone)]
pub struct UpstreamSlot {
    pub name: Arc<str>,
    pub bit: u8,
    pub cursor: u64,
    /// `drain = "live_first"`: (split, live cursor) while a backlog drains behind live
    /// events: the backlog is the records in `cursor + 1 ..= split`, and everything in
    /// `split + 1 ..= live cursor` was acknowledged already. (0, 0): no backlog apart.
    /// Kept in `cursors` as `<name>.split` and `<name>.live`.
    pub live: (u64, u64),
}

/// The `cursors` keys of a slot's live-first state (see [`UpstreamSlot::live`]).
fn live_keys(name: &str) -> (String, String) {
    (format!("{name}.split"), format!("{name}.live"))
}

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    db: Arc<DbSlot>,
    ingest: Arc<tokio::sync::Semaphore>,
    ingest_limit: usize,
    tx: mpsc::Sender<Command>,
    committed: watch::Receiver<u64>,
    upstreams: Arc<Vec<UpstreamSlot>>,
    metrics: Arc<Metrics>,
    /// Each upstream's latest acknowledged seq, by slot, for the writer to persist.
    cursor_board: Arc<[std::sync::atomic::AtomicU64]>,
    /// Seqs of damaged records already reported (the most recent ones).
    damaged_seen: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
}

/// How many damaged seqs `Store::report_damage` remembers, to report each once.
const DAMAGED_REMEMBERED: usize = 4096;

/// Waits for the writer thread to finish; returned by [`Store::open`].
pub struct WriterJoin(std::thread::JoinHandle<()>);

impl WriterJoin {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, registers `upstreams` and starts the writer.
    /// A damaged store file is [`StoreError::Damaged`]; a missing or empty one where the
    /// marker says a store was is [`StoreError::Lost`] (`marker.rs`).
    pub fn open(
        dir: &Path,
        upstreams: &[String],
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, WriterJoin), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let file = dir.join("ferry.redb");
        let marker = marker::Marker::new(dir);
        let found = marker.check(&file)?;
        let opened = Store::open_at(Location::File(file), upstreams, opts, metrics)?;
        // Only a safety net for the next start: a store that cannot be marked still runs.
        match marker.write() {
            Ok(true) if found == marker::Found::New => {
                tracing::info!(dir = %dir.display(), "store: new, empty store created")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e,
                "cannot write the store marker {MARKER_FILE}: a store file lost later would not be noticed"),
        }
        Ok(opened)
    }

    /// Like [`Store::open`], at any location (tests use fault-injecting backends).
    pub fn open_at(
        location: Location,
        upstreams: &[String],
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, WriterJoin), StoreError> {
        let path = location.describe();
        let db = Arc::new(DbSlot::open(location, opts.cache_size)?);
        let handle = db.get()?;
        // The first reads of the file's tables meet damage the open itself did not.
        let init = damage::guarded(&path, || init(&handle, upstreams))?;
        drop(handle);
        metrics.store_bytes.set(init.live_bytes as i64);
        metrics.store_events.set(init.live_count as i64);
        metrics.store_retained_bytes.set(init.retained.bytes as i64);
        metrics.store_retained.set(init.retained.count as i64);
        metrics.store_queued_bytes.set(init.queues.bytes as i64);
        metrics.store_queued.set(init.queues.count as i64);
        let integrity = &metrics.integrity;
        integrity.quarantined.set(init.quarantine.count as i64);
        integrity.dead_letters.set(init.dead_letters.count as i64);
        integrity
            .dead_letter_bytes
            .set(init.dead_letters.bytes as i64);
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        // Per slot: its cursor, then its live-first split and live cursor.
        let cursor_board: Arc<[std::sync::atomic::AtomicU64]> = init
            .slots
            .iter()
            .flat_map(|s| [s.cursor, s.live.0, s.live.1])
            .map(std::sync::atomic::AtomicU64::new)
            .collect();
        let (committed_tx, committed) = watch::channel(init.next_seq - 1);
        // Lanes count toward their upstream's metrics.
        let upstream_metrics = init
            .slots
            .iter()
            .map(|s| metrics.upstream(lane_upstream(&s.name)))
            .collect();
        let join = writer::spawn(writer::Writer {
            db: db.clone(),
            rx,
            committed: committed_tx,
            next_seq: init.next_seq,
            cursors: init.slots.clone(),
            upstream_metrics,
            max_batch: opts.max_batch.max(1),
            linger: opts.linger,
            limits: opts.limits,
            live_bytes: init.live_bytes,
            live_count: init.live_count,
            unaccounted: 0,
            retained: init.retained,
            queues: init.queues,
            queue_full_log: Default::default(),
            oldest_segment: init.oldest,
            dead_letters: init.dead_letters,
            quarantine: init.quarantine,
            cursor_board: cursor_board.clone(),
            priorities: init.priorities,
            live_written: init.slots.iter().map(|s| s.live).collect(),
            metrics: metrics.clone(),
        })
        .map_err(|e| StoreError::Commit(format!("cannot start writer thread: {e}")))?;
        if let crate::config::Fsync::Interval(interval) = opts.limits.fsync {
            writer::spawn_sync_ticker(tx.downgrade(), interval)
                .map_err(|e| StoreError::Commit(format!("cannot start fsync ticker: {e}")))?;
        }
        Ok((
            Store {
                db,
                ingest: Arc::new(tokio::sync::Semaphore::new(opts.queue_bytes.max(64 * 1024))),
                ingest_limit: opts.queue_bytes.max(64 * 1024),
                tx,
                committed,
                upstreams: Arc::new(init.slots),
                metrics,
                cursor_board,
                damaged_seen: Arc::default(),
            },
            WriterJoin(join),
        ))
    }

    /// Takes the bytes of events waiting for the writer from `ingest` (of `limit` bytes),
    /// the memory budget's store-queue share, instead of a semaphore of its own: so
    /// `ferry_memory_used_bytes{part="store_queue"}` shows what is waiting.
    pub fn with_ingest(mut self, ingest: Arc<tokio::sync::Semaphore>, limit: usize) -> Store {
        self.ingest = ingest;
        self.ingest_limit = limit.max(64 * 1024);
        self
    }

    /// The upstreams with their persistent bits and the cursors they had at open.
    pub fn upstreams(&self) -> &[UpstreamSlot] {
        &self.upstreams
    }

    /// Queues `event` for the log, destined for the upstreams in `dests`. Waits while the
    /// writer's queue is full: that wait is ingest backpressure. The returned receiver
    /// resolves to the event's seq once its transaction has committed durably.
    pub async fn append(
        &self,
        event: Arc<Event>,
        dests: u64,
    ) -> Result<oneshot::Receiver<Result<u64, StoreError>>, StoreError> {
        self.append_routed(event, dests, Routes::new()).await
    }

    /// [`Store::append`] with the forward rule of each destination (see [`Routes`]).
    pub async fn append_routed(
        &self,
        event: Arc<Event>,
        dests: u64,
        routes: Routes,
    ) -> Result<oneshot::Receiver<Result<u64, StoreError>>, StoreError> {
        let (done, rx) = oneshot::channel();
        // Backpressure in bytes: wait until the writer's queue has room for this event.
        let permit =
            crate::budget::Budget::ingest(&self.ingest, self.ingest_limit, event.weight()).await;
        self.metrics.store_queue.add(1);
        let sent = self
            .tx
            .send(Command::Append {
                event,
                dests,
                routes,
                done: Some(done),
                _permit: permit,
            })
            .await;
        if sent.is_err() {
            self.metrics.store_queue.add(-1);
            return Err(StoreError::Closed);
        }
        Ok(rx)
    }

    /// Records that `upstream` (by slot index) has acknowledged everything up to `seq`.
    /// Persisted with the writer's next commit; records every upstream has passed are
    /// deleted in that same transaction.
    ///
    /// Never waits behind ingest: the cursor is written to a board the writer reads at
    /// every batch, and the writer is only woken (a `Wake` command, not sent when its
    /// queue is full: it is busy then and reads the board at its next batch). A drain that
    /// waited in the bounded queue behind the publishes it should make room for would stop
    /// polling its upstream meanwhile.
    pub async fn advance_cursor(&self, slot: usize, seq: u64) -> Result<(), StoreError> {
        if let Some(cell) = self.cursor_board.get(slot * 3) {
            cell.fetch_max(seq, std::sync::atomic::Ordering::Release);
        }
        self.wake()
    }

    /// Records the live-first state of `slot` (see [`UpstreamSlot::live`]); persisted
    /// with the writer's next commit, as cursors are, and never waiting behind ingest.
    /// Set it before the live events it covers are sent, and clear it only after the
    /// cursor passed the split: a crash then resends at most, never skips.
    pub fn set_live(&self, slot: usize, split: u64, live: u64) -> Result<(), StoreError> {
        for (i, v) in [(1, split), (2, live)] {
            if let Some(cell) = self.cursor_board.get(slot * 3 + i) {
                cell.store(v, std::sync::atomic::Ordering::Release);
            }
        }
        self.wake()
    }

    /// The seq of the last record committed once everything queued before this call has
    /// been committed (or refused): a reload's new forward rules hold for every event
    /// stored after it.
    pub async fn barrier(&self) -> Result<u64, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Command::Barrier(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        // A failed commit drops the sender: what was queued is refused, not stored.
        Ok(rx.await.unwrap_or_else(|_| *self.committed.borrow()))
    }

    /// Where `slot` stands now, as its link last reported it (its cursor, and its
    /// live-first split and live cursor): a link started again resumes from here.
    pub fn lane_state(&self, slot: usize) -> Option<(u64, (u64, u64))> {
        let get = |i: usize| {
            self.cursor_board
                .get(slot * 3 + i)
                .map(|c| c.load(std::sync::atomic::Ordering::Acquire))
        };
        Some((get(0)?, (get(1)?, get(2)?)))
    }

    fn wake(&self) -> Result<(), StoreError> {
        match self.tx.try_send(Command::Wake) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::Closed),
        }
    }

    /// Mean bytes of a stored record (in the size accounting), 0 when the store is empty.
    pub fn mean_record_bytes(&self) -> u64 {
        let events = self.metrics.store_events.get().max(0) as u64;
        let bytes = self.metrics.store_bytes.get().max(0) as u64;
        bytes.checked_div(events).unwrap_or(0)
    }

    /// Seq of the last committed record (0 when none ever was).
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Whether the store can take writes and serve reads now: false once the writer has
    /// stopped, and while the database is being reopened after an I/O error (appends
    /// wait or fail meanwhile). Cheap: for `/health`.
    pub fn is_usable(&self) -> bool {
        !self.tx.is_closed() && self.db.is_open()
    }

    /// Asks the writer to finish what is queued and stop.
    pub async fn close(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }

    /// Reads up to `max` records destined for `bit` with seq > `after`, scanning at most
    /// `4 * max` records. Returns them and the last seq scanned (so a reader can move past
    /// records that are not for it). Blocking: call from a blocking context.
    pub fn read_after(
        &self,
        after: u64,
        max: usize,
        bit: u8,
    ) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        self.read_between(after, u64::MAX, max, bit)
    }

    /// Like [`Store::read_after`], reading no further than seq `until` (a live-first
    /// backlog ends at its split).
    pub fn read_between(
        &self,
        after: u64,
        until: u64,
        max: usize,
        bit: u8,
    ) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        let upto = (*self.committed.borrow()).min(until);
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        let mut damaged = Vec::new();
        // A damaged page of a segment table makes redb panic in the range read (or fail
        // it): read that stretch again key by key, losing only the records on that page.
        let ranged = damage::caught(|| {
            let mut found = Vec::new();
            segments::read_after(&txn, after, upto, max, bit, &mut found).map(|r| (r, found))
        });
        let read = match ranged {
            Ok(Ok((read, found))) => {
                damaged = found;
                read
            }
            Ok(Err(StoreError::Redb(e))) if matches!(*e, redb::Error::Corrupted(_)) => {
                segments::read_by_key(&txn, after, upto, max, bit, &mut damaged)
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => segments::read_by_key(&txn, after, upto, max, bit, &mut damaged),
        };
        for d in damaged {
            self.report_damage(d);
        }
        Ok(read)
    }

    /// A record that failed its checksum or does not decode was skipped: counted and
    /// logged once per record (each upstream's reader meets it), and handed to the writer
    /// to be moved into the quarantine, after which nobody meets it again.
    fn report_damage(&self, d: segments::Damaged) {
        {
            let mut seen = self.damaged_seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(&d.seq) {
                return;
            }
            if seen.len() >= DAMAGED_REMEMBERED {
                seen.pop_first();
            }
            seen.insert(d.seq);
        }
        self.metrics.store_corrupt.inc();
        if d.bytes.is_empty() {
            // redb cannot read it: there is nothing to move (and the writer must not
            // read that page either); the cursor passes it, and the segment goes whole.
            tracing::error!(seq = d.seq, error = %d.error,
                "stored record unreadable (a damaged page of the store file): skipped, never forwarded (counted in ferry_store_corrupt_total); `ferry store check` with ferry stopped lists the damage");
            return;
        }
        tracing::error!(seq = d.seq, error = %d.error,
            "stored record damaged (checksum or format): skipped, never forwarded, moved to the quarantine (counted in ferry_store_corrupt_total)");
        let entry =
            quarantine::Entry::new(quarantine::Source::Log { seq: d.seq }, &d.error, &d.bytes);
        self.set_aside(entry);
    }

    /// Hands a damaged entry (already counted and logged) to the writer for the
    /// quarantine. Never waits: when the writer's queue is full the entry stays where it
    /// is, skipped, and is met (and handed over) again after a restart.
    pub(crate) fn set_aside(&self, entry: quarantine::Entry) {
        if self.tx.try_send(Command::Quarantine(entry)).is_err() {
            tracing::debug!("store writer busy: damaged entry left in place for now");
        }
    }

    /// Copies the record at `refusal.seq` into the dead-letter table. Resolves once that
    /// is committed: true if it was copied, false if the record was no longer stored
    /// (retention dropped it). The caller moves its cursor past the record only after.
    pub async fn dead_letter(&self, refusal: deadletter::Refusal) -> Result<bool, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::DeadLetter { refusal, done })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The stored event at `seq`, if there is one and it is sound (a resend after a
    /// refusal). Blocking: call from a blocking context.
    pub fn read_seq(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        segments::read_one(&txn, seq)
    }

    /// True when no record is waiting for any upstream.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Number of records in the log (all upstreams), for status and tests.
    pub fn len(&self) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        segments::len(&txn)
    }
}

/// What `init` learns from the store at open.
struct Init {
    next_seq: u64,
    slots: Vec<UpstreamSlot>,
    live_bytes: u64,
    live_count: u64,
    retained: retained::Tally,
    queues: queue::Queues,
    /// Index of the oldest segment table that may exist.
    oldest: u64,
    dead_letters: deadletter::Tally,
    quarantine: quarantine::Tally,
    priorities: priorities::Priorities,
}

/// Layout of the log, in `meta` as "log_layout": 2 = segment tables (1, implicit: the
/// single `log` table of older stores, moved into segments at open).
const LOG_LAYOUT: u64 = 2;

/// The `cursors` key that marks a lane `ferry store forget` released: it is no longer
/// kept as a slot while its upstream is not configured.
pub(crate) fn forgotten_key(name: &str) -> String {
    format!("{name}.forgotten")
}

/// Creates the tables, assigns bits to new upstreams (whose cursor starts at the end of
/// the log: they get events from now on) and reads the log's size accounting (computing
/// it once for a store written before ferry kept it). A lane registered before and not
/// in `upstreams` (its upstream was removed from the config, or no rule uses that
/// priority any more) is a slot too, after the configured ones: its cursor holds its
/// backlog until it is configured again or `ferry store forget` releases it.
fn init(db: &Database, upstreams: &[String]) -> Result<Init, StoreError> {
    let txn = db.begin_write().map_err(redb_err)?;
    let mut slots = Vec::with_capacity(upstreams.len());
    let next_seq;
    let (live_bytes, live_count);
    let oldest;
    let retained;
    let queues;
    let dead_letters;
    let quarantined;
    let mut lanes = Vec::new();
    {
        let migrated = segments::migrate_legacy(&txn)?;
        txn.open_table(SESSIONS).map_err(redb_err)?;
        txn.open_table(SESSION_SUBS).map_err(redb_err)?;
        txn.open_table(RETAINED).map_err(redb_err)?;
        queues = queue::init(&txn)?;
        retained = retained::init(&txn)?;
        dead_letters = deadletter::init(&txn)?;
        quarantined = quarantine::init(&txn)?;
        let accounting = accounting::read(&txn)?;
        next_seq = accounting.next_seq;
        oldest = accounting.oldest;
        (live_bytes, live_count) = (accounting.live_bytes, accounting.live_count);
        accounting::write(&txn, next_seq, live_bytes, live_count)?;
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        let mut bits = txn.open_table(UPSTREAM_BITS).map_err(redb_err)?;
        let mut cursors = txn.open_table(CURSORS).map_err(redb_err)?;
        meta.insert("format", u64::from(record::FORMAT_V1))
            .map_err(redb_err)?;
        meta.insert("log_layout", LOG_LAYOUT).map_err(redb_err)?;
        if migrated {
            tracing::info!(
                records = live_count,
                "store: moved the log of an older ferry into segment tables"
            );
        }

        let mut used: u64 = 0;
        for item in bits.iter().map_err(redb_err)? {
            let (_, v) = item.map_err(redb_err)?;
            used |= 1u64 << v.value();
        }
        for name in upstreams {
            let existing = bits
                .get(name.as_str())
                .map_err(redb_err)?
                .map(|v| v.value());
            let bit = match existing {
                Some(b) => b,
                None => {
                    let free = (0..MAX_UPSTREAMS as u8)
                        .find(|b| used & (1u64 << b) == 0)
                        .ok_or(StoreError::TooManyUpstreams(MAX_UPSTREAMS + 1))?;
                    used |= 1u64 << free;
                    bits.insert(name.as_str(), free).map_err(redb_err)?;
                    free
                }
            };
            let stored = cursors
                .get(name.as_str())
                .map_err(redb_err)?
                .map(|v| v.value());
            let cursor = match stored {
                Some(c) => c,
                None => {
                    cursors
                        .insert(name.as_str(), next_seq - 1)
                        .map_err(redb_err)?;
                    next_seq - 1
                }
            };
            let (split_key, live_key) = live_keys(name);
            let get = |key: &str| -> Result<u64, StoreError> {
                Ok(cursors.get(key).map_err(redb_err)?.map_or(0, |v| v.value()))
            };
            let live = (get(&split_key)?, get(&live_key)?);
            slots.push(UpstreamSlot {
                name: name.as_str().into(),
                bit,
                cursor,
                // A split the cursor has passed is over (cleared, or the crash came first).
                live: if live.0 > cursor { live } else { (0, 0) },
            });
        }
        for item in bits.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            lanes.push((k.value().to_string(), v.value()));
        }
        // 1: forgotten. Written as 0 (not removed: a table's first removal costs binary
        // size) when the lane is configured again.
        let forgotten = |cursors: &mut redb::Table<&str, u64>, name: &str, clear: bool| {
            let key = forgotten_key(name);
            let set = cursors
                .get(key.as_str())
                .map_err(redb_err)?
                .map(|v| v.value())
                == Some(1);
            if set && clear {
                cursors.insert(key.as_str(), 0).map_err(redb_err)?;
            }
            Ok::<bool, StoreError>(set)
        };
        for name in upstreams {
            forgotten(&mut cursors, name, true)?;
        }
        for (name, bit) in &lanes {
            if upstreams.contains(name) || forgotten(&mut cursors, name, false)? {
                continue;
            }
            let cursor = cursors
                .get(name.as_str())
                .map_err(redb_err)?
                .map_or(next_seq - 1, |v| v.value());
            let owed = next_seq - 1 - cursor.min(next_seq - 1);
            if owed > 0 {
                tracing::warn!(lane = %name, cursor, at_most = owed,
                    "this upstream lane is not in the configuration: its backlog is kept (configure it again, or `ferry store forget DIR NAME` with ferry stopped)");
            }
            slots.push(UpstreamSlot {
                name: name.as_str().into(),
                bit: *bit,
                cursor,
                live: (0, 0),
            });
        }
    }
    // After `meta` is closed above: the priorities' rows are in it.
    let lane_priorities = priorities::Priorities::load(&txn, &lanes, oldest)?;
    txn.commit().map_err(redb_err)?;
    Ok(Init {
        next_seq,
        slots,
        live_bytes,
        live_count,
        retained,
        queues,
        oldest,
        dead_letters,
        quarantine: quarantined,
        priorities: lane_priorities,
    })
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod crash_tests_fsync;
#[cfg(test)]
mod sim_disk;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_integrity;
#[cfg(test)]
mod tests_priorities;
#[cfg(test)]
mod tests_queue;
#[cfg(test)]
mod tests_segments;
