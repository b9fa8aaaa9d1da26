//! The `retained` table: topic -> the retained message as a log record, and its own
//! accounting (bytes and count in `meta`), kept apart from the log's so that retention
//! under `store.max_bytes` never weighs or drops a retained message.
//!
//! What goes in is bounded by the broker's retained table (`mqtt.max_retained`,
//! `mqtt.max_retained_bytes`): the store holds the same set, so that is its quota. The
//! accounting here is what the file holds for it (record + key), reported as
//! `ferry_store_bytes{table="retained"}`, taken from the old value on every replace and
//! delete so it cannot drift from the table.

use super::writer::Command;
use super::{META, RETAINED, Store, StoreError, StoredEvent, record, redb_err};
use crate::event::Event;
use redb::ReadableTable;
use std::sync::Arc;

/// A change to the stored retained messages.
pub enum RetainedChange {
    Put(Arc<Event>),
    Delete(Arc<str>),
}

/// Bytes and messages in the `retained` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub bytes: u64,
    pub count: u64,
}

/// What one retained message costs in the accounting: its record plus its key.
fn cost(record_len: usize, topic_len: usize) -> u64 {
    (record_len + topic_len) as u64
}

/// What `event` would cost in the `retained` table (the same measure as
/// `ferry_store_bytes{table="retained"}`).
pub fn retained_cost(event: &Event) -> Result<u64, StoreError> {
    let mut buf = Vec::new();
    record::encode(event, 0, &mut buf)?;
    Ok(cost(buf.len(), event.topic.len()))
}

impl Store {
    /// Queues a retained change for the writer's next commit. A put first waits for room
    /// in the store queue's byte budget, like an append: retained messages waiting for
    /// the writer are bounded in bytes, not only in count.
    pub async fn change_retained(&self, change: RetainedChange) -> Result<(), StoreError> {
        let permit = match &change {
            RetainedChange::Put(event) => {
                crate::budget::Budget::ingest(&self.ingest, self.ingest_limit, event.weight()).await
            }
            RetainedChange::Delete(_) => None,
        };
        self.tx
            .send(Command::Retained {
                change,
                _permit: permit,
            })
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Every retained message. A damaged one (checksum, format) is left out, counted in
    /// `ferry_store_corrupt_total` and logged with its topic: it must not keep the
    /// broker from starting.
    pub fn load_retained(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        let table = txn.open_table(RETAINED).map_err(redb_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            match record::decode(0, v.value()) {
                Ok(e) => out.push(e),
                Err(error) => {
                    let topic = k.value().to_string();
                    let source = super::quarantine::Source::Retained { topic };
                    self.damaged(source, &error, v.value());
                }
            }
        }
        Ok(out)
    }
}

/// Reads the table's accounting from `meta`, computing it once (and keeping it) for a
/// store written before ferry kept it.
pub(super) fn init(txn: &redb::WriteTransaction) -> Result<Tally, StoreError> {
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    let bytes = meta
        .get("retained_bytes")
        .map_err(redb_err)?
        .map(|v| v.value());
    let count = meta
        .get("retained_count")
        .map_err(redb_err)?
        .map(|v| v.value());
    if let (Some(bytes), Some(count)) = (bytes, count) {
        return Ok(Tally { bytes, count });
    }
    let table = txn.open_table(RETAINED).map_err(redb_err)?;
    let mut tally = Tally::default();
    for item in table.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        tally.bytes += cost(v.value().len(), k.value().len());
        tally.count += 1;
    }
    store(&mut meta, tally)?;
    Ok(tally)
}

fn store(meta: &mut redb::Table<&str, u64>, tally: Tally) -> Result<(), StoreError> {
    meta.insert("retained_bytes", tally.bytes)
        .map_err(redb_err)?;
    meta.insert("retained_count", tally.count)
        .map_err(redb_err)?;
    Ok(())
}

/// Applies `changes` inside the writer's transaction and keeps `tally` (and its copy in
/// `meta`) in step with what the table holds.
pub(super) fn apply<'a>(
    txn: &redb::WriteTransaction,
    changes: impl Iterator<Item = &'a RetainedChange>,
    tally: &mut Tally,
) -> Result<(), StoreError> {
    let mut changes = changes.peekable();
    if changes.peek().is_none() {
        return Ok(());
    }
    let mut t = txn.open_table(RETAINED).map_err(redb_err)?;
    let mut scratch = Vec::new();
    for change in changes {
        let (topic, old) = match change {
            RetainedChange::Put(event) => {
                record::encode(event, 0, &mut scratch)?;
                tally.bytes += cost(scratch.len(), event.topic.len());
                tally.count += 1;
                let old = t
                    .insert(&*event.topic, scratch.as_slice())
                    .map_err(redb_err)?
                    .map(|v| v.value().len());
                (&event.topic, old)
            }
            RetainedChange::Delete(topic) => {
                let old = t
                    .remove(&**topic)
                    .map_err(redb_err)?
                    .map(|v| v.value().len());
                (topic, old)
            }
        };
        if let Some(len) = old {
            tally.bytes = tally.bytes.saturating_sub(cost(len, topic.len()));
            tally.count = tally.count.saturating_sub(1);
        }
    }
    drop(t);
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    store(&mut meta, *tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use crate::metrics::Metrics;
    use crate::store::tests::{close, ev, opts, stored};
    use bytes::Bytes;
    use redb::Database;

    fn retained(topic: &str, len: usize) -> Arc<Event> {
        Arc::new(Event::new(
            topic.into(),
            Bytes::from(vec![b'r'; len]),
            1,
            true,
            Origin::Mqtt,
        ))
    }

    fn gauges(m: &Metrics) -> (u64, u64) {
        (
            m.store_retained_bytes.get() as u64,
            m.store_retained.get() as u64,
        )
    }

    /// Puts, replacements and deletes keep the table's bytes and count exact, apart from
    /// the log's; the figures survive a reopen, and a store written before they were
    /// kept gets them computed once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_retained_table_is_accounted_apart_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string()];
        let metrics = Arc::new(Metrics::default());
        let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
        let (a, b, a2) = (
            retained("r/a", 100),
            retained("r/b", 200),
            retained("r/a", 300),
        );
        for change in [
            RetainedChange::Put(a.clone()),
            RetainedChange::Put(b.clone()),
            RetainedChange::Put(a2.clone()),
            RetainedChange::Delete("r/none".into()),
        ] {
            store.change_retained(change).await.unwrap();
        }
        // The writer takes commands in order: once this append is durable, so are they.
        stored(&store, ev(0), 1).await;
        let cost = |e: &Event| retained_cost(e).unwrap();
        assert_eq!(gauges(&metrics), (cost(&a2) + cost(&b), 2));
        assert_eq!(metrics.store_events.get(), 1, "the log counts its own only");
        let log_bytes = metrics.store_bytes.get();
        store
            .change_retained(RetainedChange::Delete("r/b".into()))
            .await
            .unwrap();
        stored(&store, ev(1), 1).await;
        assert_eq!(gauges(&metrics), (cost(&a2), 1));
        assert!(metrics.store_bytes.get() > log_bytes);
        close(store, join).await;

        let metrics = Arc::new(Metrics::default());
        let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
        assert_eq!(gauges(&metrics), (cost(&a2), 1));
        let kept = store.load_retained().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].topic.as_str(), kept[0].payload.len()),
            ("r/a", 300)
        );
        close(store, join).await;

        {
            let db = Database::create(dir.path().join("ferry.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.remove("retained_bytes").unwrap();
                meta.remove("retained_count").unwrap();
            }
            txn.commit().unwrap();
        }
        let metrics = Arc::new(Metrics::default());
        let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
        assert_eq!(gauges(&metrics), (cost(&a2), 1));
        close(store, join).await;
    }

    /// A retained message whose stored bytes changed is left out at load (counted), and
    /// the others load: a damaged record never keeps the broker from starting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_retained_message_is_left_out_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string()];
        let metrics = Arc::new(Metrics::default());
        let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
        for e in [retained("r/a", 10), retained("r/b", 20)] {
            store.change_retained(RetainedChange::Put(e)).await.unwrap();
        }
        stored(&store, ev(0), 1).await;
        close(store, join).await;
        {
            let db = Database::create(dir.path().join("ferry.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(RETAINED).unwrap();
                let mut bytes = t.get("r/a").unwrap().unwrap().value().to_vec();
                bytes[5] ^= 0x40;
                t.insert("r/a", bytes.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let metrics = Arc::new(Metrics::default());
        let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
        let kept = store.load_retained().unwrap();
        assert_eq!(
            kept.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>(),
            ["r/b"]
        );
        assert_eq!(metrics.store_corrupt.get(), 1);
        close(store, join).await;
    }
}
