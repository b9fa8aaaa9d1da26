//! Broker state that must survive a restart besides the log: MQTT sessions (who
//! subscribed to what) and retained messages. Both are small, keyed tables written
//! through the same writer as the log, so they share its group commit.

use super::{RETAINED, SESSIONS, Store, StoreError, StoredEvent, record, redb_err};
use crate::event::Event;
use redb::ReadableTable;
use std::sync::Arc;

/// A change to the persistent broker state.
pub enum StateChange {
    /// Upsert a session's encoded record (its format is the MQTT module's business).
    PutSession {
        client_id: String,
        record: Vec<u8>,
    },
    DeleteSession {
        client_id: String,
    },
    PutRetained {
        event: Arc<Event>,
    },
    DeleteRetained {
        topic: Arc<str>,
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

    /// Every stored session record, by client id.
    pub fn load_sessions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        let table = txn.open_table(SESSIONS).map_err(redb_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every retained message.
    pub fn load_retained(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        let table = txn.open_table(RETAINED).map_err(redb_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(redb_err)? {
            let (_, v) = item.map_err(redb_err)?;
            out.push(record::decode(0, v.value())?);
        }
        Ok(out)
    }
}

/// Applies `change` inside the writer's transaction.
pub(super) fn apply(
    txn: &redb::WriteTransaction,
    change: &StateChange,
    scratch: &mut Vec<u8>,
) -> Result<(), StoreError> {
    match change {
        StateChange::PutSession { client_id, record } => {
            let mut t = txn.open_table(SESSIONS).map_err(redb_err)?;
            t.insert(client_id.as_str(), record.as_slice())
                .map_err(redb_err)?;
        }
        StateChange::DeleteSession { client_id } => {
            let mut t = txn.open_table(SESSIONS).map_err(redb_err)?;
            t.remove(client_id.as_str()).map_err(redb_err)?;
        }
        StateChange::PutRetained { event } => {
            record::encode(event, 0, scratch)?;
            let mut t = txn.open_table(RETAINED).map_err(redb_err)?;
            t.insert(&*event.topic, scratch.as_slice())
                .map_err(redb_err)?;
        }
        StateChange::DeleteRetained { topic } => {
            let mut t = txn.open_table(RETAINED).map_err(redb_err)?;
            t.remove(&**topic).map_err(redb_err)?;
        }
    }
    Ok(())
}
