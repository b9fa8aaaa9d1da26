//! The single writer: group commit of appends and cursor moves, then the acks.
//!
//! Invariant 1 (docs/ARCHITECTURE.md) is kept here: an append's `done` fires with `Ok`
//! only after the transaction holding it has committed with `Durability::Immediate`
//! (fsync before `commit` returns). Invariant 2 too: records are deleted only at or
//! below the smallest cursor of the configured upstreams, in the transaction that
//! persists that cursor.

use super::{CURSORS, LOG, META, StoreError, UpstreamSlot, record};
use crate::event::Event;
use crate::metrics::Metrics;
use redb::{Database, Durability};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

pub(super) enum Command {
    Append {
        event: Arc<Event>,
        dests: u64,
        done: Option<oneshot::Sender<Result<u64, StoreError>>>,
    },
    Cursor {
        slot: usize,
        seq: u64,
    },
    State(super::StateChange),
    Shutdown,
}

pub(super) struct Writer {
    pub db: Arc<Database>,
    pub rx: mpsc::Receiver<Command>,
    pub committed: watch::Sender<u64>,
    pub next_seq: u64,
    pub cursors: Vec<UpstreamSlot>,
    pub max_batch: usize,
    pub linger: Duration,
    pub metrics: Arc<Metrics>,
}

pub(super) fn spawn(writer: Writer) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ferry-store".into())
        .spawn(move || writer.run())
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Command> = Vec::with_capacity(self.max_batch);
        let mut scratch = Vec::with_capacity(512);
        let mut deleted_upto = 0u64;
        let mut dirty_cursors = false;
        let mut stop = false;
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
            stop = batch.iter().any(|c| matches!(c, Command::Shutdown));
            let appends = batch
                .iter()
                .filter(|c| matches!(c, Command::Append { .. }))
                .count();
            self.metrics.store_queue.add(-(appends as i64));
            let first_seq = self.next_seq;
            for c in &batch {
                if let Command::Cursor { slot, seq } = c {
                    if let Some(s) = self.cursors.get_mut(*slot) {
                        if *seq > s.cursor {
                            s.cursor = *seq;
                            dirty_cursors = true;
                        }
                    }
                }
            }
            match self.commit(&batch, &mut scratch, dirty_cursors, &mut deleted_upto) {
                Ok(()) => {
                    dirty_cursors = false;
                    let mut seq = first_seq;
                    for c in batch.drain(..) {
                        if let Command::Append { done, .. } = c {
                            if let Some(done) = done {
                                let _ = done.send(Ok(seq));
                            }
                            seq += 1;
                        }
                    }
                    self.next_seq = seq;
                    self.metrics.store_commits.inc();
                    self.metrics.events_stored.add(appends as u64);
                    if appends > 0 {
                        self.committed.send_replace(seq - 1);
                    }
                }
                Err(e) => {
                    self.metrics.store_errors.inc();
                    tracing::error!(error = %e, events = appends, "store commit failed; appends refused");
                    let msg = e.to_string();
                    for c in batch.drain(..) {
                        if let Command::Append {
                            done: Some(done), ..
                        } = c
                        {
                            let _ = done.send(Err(StoreError::Commit(msg.clone())));
                        }
                    }
                }
            }
        }
        tracing::debug!("store writer stopped");
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
        &self,
        batch: &[Command],
        scratch: &mut Vec<u8>,
        dirty_cursors: bool,
        deleted_upto: &mut u64,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(super::redb_err)?;
        txn.set_durability(Durability::Immediate);
        let mut new_deleted = *deleted_upto;
        {
            let mut log = txn.open_table(LOG).map_err(super::redb_err)?;
            let mut seq = self.next_seq;
            for c in batch {
                if let Command::Append { event, dests, .. } = c {
                    record::encode(event, *dests, scratch)?;
                    log.insert(seq, scratch.as_slice())
                        .map_err(super::redb_err)?;
                    seq += 1;
                }
            }
            for c in batch {
                if let Command::State(change) = c {
                    super::state::apply(&txn, change, scratch)?;
                }
            }
            if seq != self.next_seq {
                let mut meta = txn.open_table(META).map_err(super::redb_err)?;
                meta.insert("next_seq", seq).map_err(super::redb_err)?;
            }
            if dirty_cursors {
                let mut cursors = txn.open_table(CURSORS).map_err(super::redb_err)?;
                for s in &self.cursors {
                    cursors
                        .insert(&*s.name, s.cursor)
                        .map_err(super::redb_err)?;
                }
                let min = self.cursors.iter().map(|s| s.cursor).min().unwrap_or(0);
                if min > *deleted_upto {
                    log.retain_in(*deleted_upto + 1..=min, |_, _| false)
                        .map_err(super::redb_err)?;
                    new_deleted = min;
                }
            }
        }
        txn.commit().map_err(super::redb_err)?;
        *deleted_upto = new_deleted;
        Ok(())
    }
}
