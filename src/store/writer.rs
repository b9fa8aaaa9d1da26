//! The single writer: group commit of appends, cursor moves and state changes, with
//! retention, then the acks.
//!
//! Invariant 1 (docs/ARCHITECTURE.md) is kept here: an append's `done` fires with `Ok`
//! only after the transaction holding it has committed (fsynced before `commit` returns
//! with `fsync = "always"`). Invariant 2 too: records are deleted only at or below the
//! smallest cursor of the configured upstreams, in the transaction that persists those
//! cursors or a later one, or by retention, which counts every drop per upstream, or
//! (damaged, never deliverable) by a move into the quarantine. A dead letter is copied
//! before anything in its commit is reclaimed.

use super::db::DbSlot;
use super::retention::{self, Dropped};
use super::segments;
use super::trim::{self, Front};
use super::{CURSORS, StoreError, UpstreamSlot, record};
use crate::config::{Fsync, OnFull};
use crate::event::{Event, now_ms};
use crate::metrics::{Metrics, UpstreamMetrics};
use redb::Durability;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Longest a cursor-only change waits for an fsync (see `run`).
const CURSOR_SYNC: Duration = Duration::from_secs(1);

pub(super) enum Command {
    Append {
        event: Arc<Event>,
        dests: u64,
        routes: super::Routes,
        done: Option<oneshot::Sender<Result<u64, StoreError>>>,
        /// Store-queue budget held until the command is done with (dropped).
        _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// Cursors moved on the board ([`super::Store::advance_cursor`]): a reason to commit.
    Wake,
    State(super::StateChange),
    /// A delivery queued for a persistent session ([`super::queue`]).
    Enqueue {
        client_id: Arc<str>,
        row: Vec<u8>,
        bound: super::QueueBound,
        /// Told once the row is committed (the session's connection reads it then) or
        /// refused.
        signal: Arc<super::QueueSignal>,
        done: oneshot::Sender<Result<super::Queued, StoreError>>,
        /// Store-queue budget held until the command is done with (dropped).
        _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// Moves a damaged entry into the quarantine ([`super::quarantine`]).
    Quarantine(super::quarantine::Entry),
    /// Copies an event an upstream refused into the dead-letter table
    /// ([`super::deadletter`]); `done` learns whether it is there (false: the record was
    /// already gone) once committed.
    DeadLetter {
        refusal: super::deadletter::Refusal,
        done: oneshot::Sender<Result<bool, StoreError>>,
    },
    Retained {
        change: super::RetainedChange,
        /// Store-queue budget held until the command is done with (dropped).
        _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// Answered with the last seq stored once everything queued before it is committed
    /// ([`super::Store::barrier`]).
    Barrier(oneshot::Sender<u64>),
    Shutdown,
}

/// Retention and durability settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub on_full: OnFull,
    pub fsync: Fsync,
    /// With `fsync = "always"`: most commits (each one fsync) a second; 0: no cap.
    pub max_fsyncs_per_sec: u32,
    /// Disk quotas of the dead-letter table and the quarantine.
    pub dead_letter_bytes: u64,
    pub quarantine_bytes: u64,
}

pub(super) struct Writer {
    pub db: Arc<DbSlot>,
    pub rx: mpsc::Receiver<Command>,
    pub committed: watch::Sender<u64>,
    pub next_seq: u64,
    pub cursors: Vec<UpstreamSlot>,
    pub upstream_metrics: Vec<Arc<UpstreamMetrics>>,
    pub max_batch: usize,
    pub linger: Duration,
    pub limits: Limits,
    pub live_bytes: u64,
    pub live_count: u64,
    /// Bytes appended since meta's accounting was last written (`accounting.rs`).
    pub unaccounted: u64,
    /// The `retained` table's accounting, apart from the log's.
    pub retained: super::retained::Tally,
    /// The session queues' accounting.
    pub queues: super::queue::Queues,
    /// Session queues at their bound: refusals are logged at most once a second.
    pub queue_full_log: crate::transport::listen::RateLimitedLog,
    /// Index of the oldest log segment at open.
    pub oldest_segment: u64,
    pub dead_letters: super::deadletter::Tally,
    pub quarantine: super::quarantine::Tally,
    /// Each upstream's latest acknowledged seq, by slot (read at every batch).
    pub cursor_board: Arc<[std::sync::atomic::AtomicU64]>,
    /// Priorities of records and segments, for the priority eviction.
    pub priorities: super::priorities::Priorities,
    /// Each slot's live-first state as last committed.
    pub live_written: Vec<(u64, u64)>,
    pub metrics: Arc<Metrics>,
}

pub(super) fn spawn(writer: Writer) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ferry-store".into())
        .spawn(move || writer.run())
}

/// With `fsync` an interval: wakes the writer a tenth of an interval apart (at least
/// 10 ms), so what was committed without an fsync is made durable about one interval
/// after the last fsync even when nothing else comes. Ends with the store (every sender
/// gone) or the writer.
pub(super) fn spawn_sync_ticker(
    tx: mpsc::WeakSender<Command>,
    interval: Duration,
) -> std::io::Result<()> {
    let tick = (interval / 10).max(Duration::from_millis(10));
    std::thread::Builder::new()
        .name("ferry-store-sync".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                let Some(tx) = tx.upgrade() else { return };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Command::Wake) {
                    return;
                }
            }
        })
        .map(drop)
}

/// What one commit did, for the acks and the counters.
struct Outcome {
    /// Per append in batch order: its seq, or why it was refused.
    results: Vec<Result<u64, StoreError>>,
    /// Per enqueue in batch order.
    queued: Vec<super::Queued>,
    /// Per dead-letter command in batch order: whether its record was copied.
    dead_lettered: Vec<bool>,
    /// Rows the quotas of the dead-letter table and the quarantine pushed out.
    dead_letters_dropped: u64,
    quarantine_dropped: u64,
    dropped_full: Dropped,
    dropped_age: Dropped,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Command> = Vec::with_capacity(self.max_batch);
        let mut front = Front {
            oldest: self.oldest_segment,
            reclaimed: 0,
        };
        let mut dirty_cursors = false;
        let mut last_sync = Instant::now();
        // The fsync budget: commits at least this far apart (`max_fsyncs_per_sec`).
        let gap = match (self.limits.fsync, self.limits.max_fsyncs_per_sec) {
            (Fsync::Always, n) if n > 0 => Duration::from_secs(1) / n,
            _ => Duration::ZERO,
        };
        let mut last_commit = Instant::now().checked_sub(gap).unwrap_or_else(Instant::now);
        // Something was committed without an fsync (`fsync` an interval): the next
        // durable commit is owed within the interval, even with nothing new to write.
        let mut unsynced = false;
        let mut stop = false;
        self.publish_gauges();
        while !stop {
            let Some(first) = self.rx.blocking_recv() else {
                break;
            };
            batch.push(first);
            self.fill(&mut batch);
            if !self.linger.is_zero() && batch.len() < self.max_batch {
                std::thread::sleep(self.linger);
                self.fill(&mut batch);
            }
            // Under an fsync budget the commit waits for its turn, gathering what arrives
            // meanwhile: at most one commit (one fsync) per `gap`, and an acknowledgement
            // waits at most `gap` longer than without the budget.
            let wait = gap.saturating_sub(last_commit.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
                self.fill(&mut batch);
            }
            stop = batch.iter().any(|c| matches!(c, Command::Shutdown));
            let appends = batch
                .iter()
                .filter(|c| matches!(c, Command::Append { .. }))
                .count();
            self.metrics.store_queue.add(-(appends as i64));
            for (s, cells) in self.cursors.iter_mut().zip(self.cursor_board.chunks(3)) {
                let [cursor, split, live] = cells else {
                    continue;
                };
                let seq = cursor.load(std::sync::atomic::Ordering::Acquire);
                if seq > s.cursor {
                    s.cursor = seq;
                    dirty_cursors = true;
                }
                let state = (
                    split.load(std::sync::atomic::Ordering::Acquire),
                    live.load(std::sync::atomic::Ordering::Acquire),
                );
                if state != s.live {
                    s.live = state;
                    dirty_cursors = true;
                }
            }
            // With an fsync interval, most commits are written without fsync and one
            // is made durable once the interval has passed (and always the last one).
            // A commit that only moves cursors acknowledges nothing to anyone: it is
            // written without fsync too (a crash of ferry loses nothing; a power cut
            // can only bring back an older cursor, i.e. resends, never a loss) and is
            // fsynced at least every CURSOR_SYNC.
            // Removing an acknowledged queue row acknowledges nothing either: a crash
            // can only bring it back, i.e. deliver it again.
            // Dead letters and quarantine moves acknowledge nothing either, and are
            // always in the same or an earlier commit than the cursor that passes them.
            let acks_publishers = batch.iter().any(|c| match c {
                Command::State(super::StateChange::Dequeue { .. })
                | Command::Quarantine(_)
                | Command::DeadLetter { .. } => false,
                Command::Append { .. }
                | Command::State(_)
                | Command::Retained { .. }
                | Command::Enqueue { .. } => true,
                Command::Wake | Command::Barrier(_) | Command::Shutdown => false,
            });
            let durability = if stop {
                Durability::Immediate
            } else {
                match self.limits.fsync {
                    Fsync::Always if acks_publishers => Durability::Immediate,
                    Fsync::Always if last_sync.elapsed() >= CURSOR_SYNC => Durability::Immediate,
                    // Written to the file at once, so a crash of ferry keeps it; redb
                    // 2.6 fsyncs it on Linux too (FileBackend::sync_data ignores
                    // `eventual` there).
                    Fsync::Always => Durability::Eventual,
                    Fsync::Interval(d) if last_sync.elapsed() >= d => Durability::Immediate,
                    // In memory until the next durable commit: no flush at all (redb
                    // writes the pages but keeps the new root in memory, so a crash
                    // finds the last durable commit, whole).
                    Fsync::Interval(_) => Durability::None,
                }
            };
            let durable = !matches!(durability, Durability::None);
            // Nothing to write: a wake-up whose cursors did not move, or the interval's
            // tick with nothing committed since the last fsync.
            let idle = batch.iter().all(|c| matches!(c, Command::Wake))
                && !dirty_cursors
                && !(unsynced && durable);
            if idle {
                batch.clear();
                continue;
            }
            let started = Instant::now();
            // A damaged page of the file can make redb panic inside the transaction: that
            // is a failed commit like an I/O error (refused, reopened, counted), not the
            // end of the writer thread and of every publish after it.
            let outcome = super::damage::caught(|| {
                self.commit(&batch, dirty_cursors, &mut front, durability)
            })
            .unwrap_or_else(|panic| {
                Err(StoreError::Damaged {
                    path: "the store file".into(),
                    reason: format!("redb gave up in an internal check at {panic}"),
                })
            });
            match outcome {
                Ok(outcome) => {
                    last_commit = Instant::now();
                    if durable {
                        last_sync = last_commit;
                        self.metrics.store_fsyncs.inc();
                    }
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    dirty_cursors = false;
                    // Readers (the links) see only what is durable: an event a crash can
                    // take back was never sent upstream, so its seq, used again after
                    // the restart, names one event only.
                    unsynced = !durable;
                    if durable {
                        let last = self.next_seq - 1;
                        self.committed.send_if_modified(|seen| {
                            let newer = *seen < last;
                            *seen = last.max(*seen);
                            newer
                        });
                    }
                    self.finish(&mut batch, outcome);
                }
                Err(e) => {
                    self.metrics.store_errors.inc();
                    tracing::error!(error = %e, events = appends, "store commit failed; these events are refused");
                    let msg = e.to_string();
                    for c in batch.drain(..) {
                        match c {
                            Command::Append {
                                done: Some(done), ..
                            } => {
                                let _ = done.send(Err(StoreError::Commit(msg.clone())));
                            }
                            Command::Enqueue { done, .. } => {
                                let _ = done.send(Err(StoreError::Commit(msg.clone())));
                            }
                            Command::DeadLetter { done, .. } => {
                                let _ = done.send(Err(StoreError::Commit(msg.clone())));
                            }
                            _ => {}
                        }
                    }
                    self.recover();
                    // The queue figures may count rows that were not written: count
                    // them again from what the store holds.
                    self.queues.reload(&self.db);
                }
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Reopens the database after a failed commit (redb refuses all work after an I/O
    /// error until then), retrying every second; commands that arrive meanwhile wait in
    /// the bounded queue, which slows publishers instead of losing anything.
    fn recover(&mut self) {
        let mut attempt = 0u32;
        loop {
            match self.db.reopen() {
                Ok(()) => {
                    if attempt > 0 || self.metrics.store_errors.get() > 0 {
                        tracing::info!("store reopened after an I/O error");
                    }
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    if attempt == 1 || attempt % 60 == 0 {
                        tracing::error!(error = %e, attempt, "cannot reopen the store; retrying every second");
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Acknowledges what the commit did. Readers learned of the new records (when they
    /// are durable) before any publisher is acknowledged.
    fn finish(&mut self, batch: &mut Vec<Command>, outcome: Outcome) {
        let stored = outcome.results.iter().filter(|r| r.is_ok()).count() as u64;
        // Counters and gauges first, so whoever is acknowledged sees them current.
        for (dropped, reason) in [
            (&outcome.dropped_full, "full"),
            (&outcome.dropped_age, "max_age"),
        ] {
            if dropped.count == 0 {
                continue;
            }
            tracing::warn!(
                events = dropped.count,
                bytes = dropped.bytes,
                reason,
                "store retention dropped the oldest events"
            );
            for (bit, n) in &dropped.owed {
                if let Some(i) = self.cursors.iter().position(|s| s.bit == *bit) {
                    if let Some(m) = self.upstream_metrics.get(i) {
                        if reason == "full" {
                            m.dropped_full.add(*n);
                            let p = usize::from(self.priorities.of(1u64 << bit));
                            if let Some(c) = m.dropped_full_by_priority.get(p) {
                                c.add(*n);
                            }
                        } else {
                            m.dropped_age.add(*n)
                        }
                    }
                }
            }
        }
        let integrity = &self.metrics.integrity;
        if outcome.dead_letters_dropped > 0 {
            integrity
                .dead_letters_dropped
                .add(outcome.dead_letters_dropped);
            tracing::warn!(
                dropped = outcome.dead_letters_dropped,
                quota = self.limits.dead_letter_bytes,
                "oldest dead letters dropped: the table is at store.dead_letter_max_bytes"
            );
        }
        if outcome.quarantine_dropped > 0 {
            integrity.quarantine_dropped.add(outcome.quarantine_dropped);
            tracing::warn!(
                dropped = outcome.quarantine_dropped,
                quota = self.limits.quarantine_bytes,
                "oldest quarantined entries dropped: the quarantine is at store.quarantine_max_bytes"
            );
        }
        self.metrics.store_commits.inc();
        self.metrics.events_stored.add(stored);
        self.publish_gauges();
        let mut results = outcome.results.into_iter();
        let mut queued = outcome.queued.into_iter();
        let mut dead_lettered = outcome.dead_lettered.into_iter();
        for c in batch.drain(..) {
            match c {
                Command::DeadLetter { refusal, done } => {
                    let added = dead_lettered.next().unwrap_or(false);
                    if added {
                        self.metrics
                            .integrity
                            .dead_lettered(&refusal.upstream, &refusal.reason);
                    }
                    let _ = done.send(Ok(added));
                }
                Command::Append { done, .. } => {
                    let result = results.next().unwrap_or(Err(StoreError::Unavailable));
                    if result.is_err() {
                        self.metrics.store_rejected.inc();
                    }
                    if let Some(done) = done {
                        let _ = done.send(result);
                    }
                }
                Command::Enqueue {
                    client_id,
                    bound,
                    signal,
                    done,
                    ..
                } => {
                    let result = queued.next().unwrap_or(super::Queued::NoSession);
                    match result {
                        super::Queued::Stored(_) => signal.wake.notify_one(),
                        super::Queued::Full => {
                            signal
                                .refused
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            self.metrics.dropped_offline_overflow.inc();
                            if let Some(suppressed) = self.queue_full_log.allow() {
                                tracing::warn!(%client_id, max_bytes = bound.bytes, max_messages = bound.count, suppressed,
                                    "message for a persistent session not queued: its queue is at mqtt.max_queued_bytes (or mqtt.max_queued)");
                            }
                        }
                        super::Queued::NoSession => {}
                    }
                    let _ = done.send(Ok(result));
                }
                Command::Barrier(done) => {
                    let _ = done.send(self.next_seq - 1);
                }
                _ => {}
            }
        }
    }

    fn publish_gauges(&self) {
        self.metrics.store_bytes.set(self.live_bytes as i64);
        self.metrics.store_events.set(self.live_count as i64);
        self.metrics
            .store_retained_bytes
            .set(self.retained.bytes as i64);
        self.metrics.store_retained.set(self.retained.count as i64);
        self.metrics
            .store_queued_bytes
            .set(self.queues.bytes as i64);
        self.metrics.store_queued.set(self.queues.count as i64);
        let integrity = &self.metrics.integrity;
        integrity.quarantined.set(self.quarantine.count as i64);
        integrity.dead_letters.set(self.dead_letters.count as i64);
        integrity
            .dead_letter_bytes
            .set(self.dead_letters.bytes as i64);
        self.metrics.store_file_bytes.set(self.db.file_len() as i64);
    }

    /// Takes what is already queued, up to the batch limit, without waiting.
    fn fill(&mut self, batch: &mut Vec<Command>) {
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
    }

    fn commit(
        &mut self,
        batch: &[Command],
        dirty_cursors: bool,
        front: &mut Front,
        durability: Durability,
    ) -> Result<Outcome, StoreError> {
        // Whatever an earlier failed commit staged was rolled back with it.
        self.priorities.rolled_back();
        let db = self.db.get()?;
        let mut txn = db.begin_write().map_err(super::redb_err)?;
        txn.set_durability(durability);
        // Encode first: retention needs to know how many bytes are coming.
        let mut encoded: Vec<(Vec<u8>, u64)> = Vec::new();
        for c in batch {
            if let Command::Append {
                event,
                dests,
                routes,
                ..
            } = c
            {
                let mut buf = Vec::new();
                record::encode_routed(event, *dests, routes, &mut buf)?;
                encoded.push((buf, *dests));
            }
        }
        let cursors: Vec<(u8, u64)> = self.cursors.iter().map(|s| (s.bit, s.cursor)).collect();
        let owed = move |seq: u64, dests: u64| -> u64 {
            cursors
                .iter()
                .filter(|(bit, cursor)| dests & (1u64 << bit) != 0 && seq > *cursor)
                .fold(0, |m, (bit, _)| m | (1u64 << bit))
        };
        let mut out = Outcome {
            queued: Vec::new(),
            dead_lettered: Vec::new(),
            dead_letters_dropped: 0,
            quarantine_dropped: 0,
            results: Vec::with_capacity(encoded.len()),
            dropped_full: Dropped::default(),
            dropped_age: Dropped::default(),
        };
        let mut live = self.live_bytes;
        let mut count = self.live_count;
        let mut unaccounted = self.unaccounted;
        let mut retained = self.retained;
        let mut seq = self.next_seq;
        let incoming: u64 = encoded.iter().map(|(e, _)| retention::cost(e.len())).sum();
        let min = self.cursors.iter().map(|s| s.cursor).min().unwrap_or(0);
        // Changed only once the transaction has committed.
        let mut new_front = *front;
        let mut dead_letters = self.dead_letters;
        let mut quarantine = self.quarantine;
        {
            // Set aside first: a refused record must be copied before the cursor that
            // passes it lets it be reclaimed below.
            let refusals = batch.iter().filter_map(|c| match c {
                Command::DeadLetter { refusal, .. } => Some(refusal),
                _ => None,
            });
            let quota = self.limits.dead_letter_bytes;
            let applied = super::deadletter::apply(&txn, refusals, &mut dead_letters, quota)?;
            out.dead_lettered = applied.added;
            out.dead_letters_dropped = applied.dropped;
            let damaged = batch.iter().filter_map(|c| match c {
                Command::Quarantine(entry) => Some(entry),
                _ => None,
            });
            let quota = self.limits.quarantine_bytes;
            let moved = super::quarantine::apply(
                &txn,
                damaged,
                &mut quarantine,
                quota,
                &mut retained,
                &mut self.queues,
            )?;
            live = live.saturating_sub(moved.log_bytes);
            count = count.saturating_sub(moved.log_count);
            out.quarantine_dropped = moved.dropped;
            // Acknowledged records go first, before retention looks for room.
            let short = live + incoming > self.limits.max_bytes;
            let freed = trim::reclaim(&txn, &mut new_front, min, seq, short)?;
            live = live.saturating_sub(freed.bytes);
            count = count.saturating_sub(freed.count);
            if !self.limits.max_age.is_zero() {
                let cutoff = now_ms().saturating_sub(self.limits.max_age.as_millis() as u64);
                let d = &mut out.dropped_age;
                trim::drop_older_than(&txn, &mut new_front, seq, cutoff, 10_000, &owed, d)?;
                live = live.saturating_sub(out.dropped_age.bytes);
                count = count.saturating_sub(out.dropped_age.count);
            }
            if self.limits.on_full == OnFull::DropOldest && live + incoming > self.limits.max_bytes
            {
                let need = live + incoming - self.limits.max_bytes;
                let d = &mut out.dropped_full;
                let mixed = self.priorities.mixed()
                    || encoded
                        .iter()
                        .any(|(_, dests)| self.priorities.of(*dests) != super::priorities::DEFAULT);
                if mixed {
                    // The lowest priority present loses first (`[[forward]] priority`).
                    self.priorities
                        .drop_lowest(&txn, &mut new_front, seq, need, &owed, d)?;
                } else {
                    trim::drop_oldest(&txn, &mut new_front, seq, need, &owed, d)?;
                }
                live = live.saturating_sub(out.dropped_full.bytes);
                count = count.saturating_sub(out.dropped_full.count);
            }
            let removed = count < self.live_count || live < self.live_bytes;
            let before_appends = live;
            let mut log = segments::Appender::new(&txn);
            for (buf, dests) in &encoded {
                let c = retention::cost(buf.len());
                if live + c > self.limits.max_bytes {
                    // reject_new, or a single event larger than the whole store.
                    out.results.push(Err(StoreError::Full));
                    continue;
                }
                log.insert(seq, buf)?;
                self.priorities.appended(seq, *dests);
                out.results.push(Ok(seq));
                live += c;
                count += 1;
                seq += 1;
            }
            drop(log);
            // State changes and queue rows in the order they arrived: a row queued
            // after its session was deleted finds no session record.
            for c in batch {
                match c {
                    Command::State(change) => super::state::apply(&txn, change, &mut self.queues)?,
                    Command::Enqueue {
                        client_id,
                        row,
                        bound,
                        ..
                    } => {
                        let total = self.limits.max_bytes / 4;
                        let queued = self.queues.push(&txn, client_id, row, *bound, total)?;
                        out.queued.push(queued);
                    }
                    _ => {}
                }
            }
            let retained_changes = batch.iter().filter_map(|c| match c {
                Command::Retained { change, .. } => Some(change),
                _ => None,
            });
            super::retained::apply(&txn, retained_changes, &mut retained)?;
            if dirty_cursors {
                let mut table = txn.open_table(CURSORS).map_err(super::redb_err)?;
                for (s, written) in self.cursors.iter().zip(&self.live_written) {
                    table.insert(&*s.name, s.cursor).map_err(super::redb_err)?;
                    if s.live != *written {
                        let (split_key, live_key) = super::live_keys(&s.name);
                        table
                            .insert(split_key.as_str(), s.live.0)
                            .map_err(super::redb_err)?;
                        table
                            .insert(live_key.as_str(), s.live.1)
                            .map_err(super::redb_err)?;
                    }
                }
            }
            self.priorities.save(&txn, new_front.oldest)?;
            // Meta's accounting only when records went or enough came (the invariant
            // and why: `accounting.rs`).
            unaccounted += live.saturating_sub(before_appends);
            if removed || unaccounted >= super::accounting::CHECKPOINT {
                super::accounting::write(&txn, seq, live, count)?;
                unaccounted = 0;
            }
        }
        txn.commit().map_err(super::redb_err)?;
        self.priorities.committed();
        if dirty_cursors {
            self.live_written = self.cursors.iter().map(|s| s.live).collect();
        }
        *front = new_front;
        self.next_seq = seq;
        self.live_bytes = live;
        self.live_count = count;
        self.unaccounted = unaccounted;
        self.retained = retained;
        self.dead_letters = dead_letters;
        self.quarantine = quarantine;
        Ok(out)
    }
}
