//! Broker state that must survive a restart besides the log: MQTT sessions (who
//! subscribed to what). A small, keyed table written through the same writer as the
//! log, so it shares its group commit. Retained messages, which have their own
//! accounting, are in [`super::retained`].

use super::{SESSIONS, Store, StoreError, redb_err};
use redb::ReadableTable;

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
}

/// Applies `change` inside the writer's transaction.
pub(super) fn apply(txn: &redb::WriteTransaction, change: &StateChange) -> Result<(), StoreError> {
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
    }
    Ok(())
}
