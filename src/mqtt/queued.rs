//! A persistent session's QoS 1/2 deliveries read back from its store queue
//! (`store/queue.rs`), as in-flight slots free up, and the rows the client has
//! acknowledged removed. Memory holds only what is in flight: the queue itself, online
//! or offline, is on disk.

use super::connection::Conn;
use super::session::SessionState;
use crate::event::now_ms;
use crate::store::StateChange;

impl Conn {
    /// Sends queued deliveries while the client's in-flight window has room and rows
    /// may be waiting. Rows that are expired, damaged or too large for the client are
    /// not sent and leave the queue.
    pub(super) fn fill_from_queue(&mut self, state: &mut SessionState) {
        let Some(store) = self.ctx.hub.store.clone() else {
            return;
        };
        loop {
            let room = state.room(self.client_receive_max);
            let Some(spool) = state.spool.as_mut() else {
                return;
            };
            if !spool.more || room == 0 {
                return;
            }
            let rows = match store.read_queue(&spool.client_id, spool.after, room) {
                Ok(rows) => rows,
                Err(e) => {
                    // Tried again at the next commit for this session, or reconnect.
                    spool.more = false;
                    if let Some(suppressed) = self.ctx.hub.limit_log.allow() {
                        tracing::warn!(client_id = %spool.client_id, error = %e, suppressed, "cannot read the session's queue");
                    }
                    return;
                }
            };
            if rows.len() < room {
                spool.more = false;
            }
            if let Some(last) = rows.last() {
                spool.after = last.qseq;
            }
            for row in rows {
                let d = match row.delivery {
                    Ok(d) => d,
                    Err(e) => {
                        // The store counted, logged and quarantined it: skip it.
                        tracing::debug!(client_id = %state.client_id, qseq = row.qseq, error = %e,
                            "queued delivery damaged; skipped");
                        self.acked.push(row.qseq);
                        continue;
                    }
                };
                if d.event.remaining_secs(now_ms()) == Some(0) {
                    self.ctx.hub.metrics.dropped_expired.inc();
                    self.acked.push(row.qseq);
                    continue;
                }
                let copy = d.clone();
                match state.start_queued(d, row.qseq) {
                    Ok(pkid) => {
                        if !self.write_publish(&copy, pkid, false) {
                            self.acked.push(state.abandon(pkid));
                        }
                    }
                    Err(_) => {
                        // Not reached: at most `room` rows were read. Read it again later.
                        if let Some(spool) = state.spool.as_mut() {
                            spool.after = spool.after.min(row.qseq - 1);
                            spool.more = true;
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Removes from the store queue the rows the client acknowledged since the last call.
    pub(super) async fn remove_acked(&mut self, state: &SessionState) {
        if self.acked.is_empty() {
            return;
        }
        let (Some(store), Some(spool)) = (&self.ctx.hub.store, &state.spool) else {
            self.acked.clear();
            return;
        };
        for qseq in self.acked.drain(..).filter(|q| *q != 0) {
            let change = StateChange::Dequeue {
                client_id: spool.client_id.to_string(),
                qseq,
            };
            if store.change_state(change).await.is_err() {
                // The writer stopped (shutdown): the row stays and is delivered again.
                break;
            }
        }
        self.acked.clear();
    }
}
