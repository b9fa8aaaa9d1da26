//! Broker state that must survive a restart besides the log: MQTT sessions (who
//! subscribed to what). Small, keyed tables written through the same writer as the log,
//! so they share its group commit. A session is one record (its expiry and owner) plus
//! one row per subscription, so a SUBSCRIBE or an UNSUBSCRIBE writes one row, never the
//! whole session. Its queued deliveries are rows of [`super::queue`]. Retained messages,
//! which have their own accounting, are in [`super::retained`]. Rows are sealed with a
//! checksum ([`super::seal`]); a damaged one is left out at load and quarantined.

use super::quarantine::{Entry, Source};
use super::{RecordError, SESSION_SUBS, SESSIONS, Store, StoreError, redb_err, seal};
use redb::ReadableTable;

/// A stored session: its record and its subscription rows (filter, encoded options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub client_id: String,
    pub record: Vec<u8>,
    pub subs: Vec<(String, Vec<u8>)>,
}

/// A change to the persistent broker state.
pub enum StateChange {
    /// Upsert a session's encoded record (its format is the MQTT module's business).
    PutSession {
        client_id: String,
        record: Vec<u8>,
    },
    /// Deletes the session record and every subscription row of the client.
    DeleteSession {
        client_id: String,
    },
    /// Upserts one subscription of a persistent session (options encoded by the MQTT
    /// module).
    PutSubscription {
        client_id: String,
        filter: String,
        options: Vec<u8>,
    },
    DeleteSubscription {
        client_id: String,
        filter: String,
    },
    /// Removes one queued delivery of a persistent session: the subscriber acknowledged
    /// it. Committed without waiting for an fsync (a crash can only bring the row back,
    /// and the delivery is made again).
    Dequeue {
        client_id: String,
        qseq: u64,
    },
}

impl Store {
    /// Queues a state change for the writer's next commit. Waits while the writer's
    /// queue is full.
    pub async fn change_state(&self, change: StateChange) -> Result<(), StoreError> {
        self.tx
            .send(super::writer::Command::State(change))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Every stored session, by client id, with its subscription rows.
    pub fn load_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        let table = txn.open_table(SESSIONS).map_err(redb_err)?;
        let subs = txn.open_table(SESSION_SUBS).map_err(redb_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            let client_id = k.value().to_string();
            let record = match seal::open(v.value()) {
                Ok(r) => r.to_vec(),
                Err(error) => {
                    let source = Source::Session { client_id };
                    self.damaged(source, &error, v.value());
                    continue;
                }
            };
            let mut rows = Vec::new();
            for row in subs.range((client_id.as_str(), "")..).map_err(redb_err)? {
                let (key, options) = row.map_err(redb_err)?;
                let (client, filter) = key.value();
                if client != client_id {
                    break;
                }
                match seal::open(options.value()) {
                    Ok(o) => rows.push((filter.to_string(), o.to_vec())),
                    Err(error) => {
                        let source = Source::Subscription {
                            client_id: client_id.clone(),
                            filter: filter.to_string(),
                        };
                        self.damaged(source, &error, options.value());
                    }
                }
            }
            out.push(StoredSession {
                client_id,
                record,
                subs: rows,
            });
        }
        Ok(out)
    }

    /// A damaged row other than a log record (session, subscription, queued delivery,
    /// retained message): counted in `ferry_store_corrupt_total`, logged, and moved to
    /// the quarantine; the caller leaves it out.
    pub(crate) fn damaged(&self, source: Source, error: &RecordError, bytes: &[u8]) {
        self.metrics.store_corrupt.inc();
        tracing::error!(%source, %error,
            "stored entry damaged (checksum or format): not used, moved to the quarantine (counted in ferry_store_corrupt_total)");
        self.set_aside(Entry::new(source, error, bytes));
    }
}

/// Applies `change` inside the writer's transaction.
pub(super) fn apply(
    txn: &redb::WriteTransaction,
    change: &StateChange,
    queues: &mut super::queue::Queues,
) -> Result<(), StoreError> {
    match change {
        StateChange::PutSession { client_id, record } => {
            let mut t = txn.open_table(SESSIONS).map_err(redb_err)?;
            t.insert(client_id.as_str(), seal::seal(record).as_slice())
                .map_err(redb_err)?;
        }
        StateChange::DeleteSession { client_id } => {
            let mut t = txn.open_table(SESSIONS).map_err(redb_err)?;
            t.remove(client_id.as_str()).map_err(redb_err)?;
            let mut subs = txn.open_table(SESSION_SUBS).map_err(redb_err)?;
            let mut filters = Vec::new();
            for row in subs.range((client_id.as_str(), "")..).map_err(redb_err)? {
                let (key, _) = row.map_err(redb_err)?;
                let (client, filter) = key.value();
                if client != client_id {
                    break;
                }
                filters.push(filter.to_string());
            }
            for filter in &filters {
                subs.remove((client_id.as_str(), filter.as_str()))
                    .map_err(redb_err)?;
            }
            queues.clear(txn, client_id)?;
        }
        StateChange::Dequeue { client_id, qseq } => queues.remove(txn, client_id, *qseq)?,
        StateChange::PutSubscription {
            client_id,
            filter,
            options,
        } => {
            let mut t = txn.open_table(SESSION_SUBS).map_err(redb_err)?;
            let row = seal::seal(options);
            t.insert((client_id.as_str(), filter.as_str()), row.as_slice())
                .map_err(redb_err)?;
        }
        StateChange::DeleteSubscription { client_id, filter } => {
            let mut t = txn.open_table(SESSION_SUBS).map_err(redb_err)?;
            t.remove((client_id.as_str(), filter.as_str()))
                .map_err(redb_err)?;
        }
    }
    Ok(())
}
