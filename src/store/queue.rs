//! The queues of persistent MQTT sessions: QoS 1/2 deliveries kept on disk until the
//! subscriber acknowledges them, so they survive a restart or a crash and an offline
//! session holds no memory.
//!
//! Table `session_queue`: (client id, qseq) -> one queued delivery ([`encode`]). The
//! writer gives each row the next qseq, one counter for all clients kept in `meta`
//! ("queue_next_qseq"), in the order the rows reach it: a client's rows read back in
//! key order are in the order they were queued, and a qseq is never used twice, so a
//! reader that has read up to some qseq never misses a later row (even one queued after
//! a restart, when every earlier row is gone). A row is
//! written only while the client has a session record (a publisher that routed to a
//! session as it was discarded adds nothing), is bounded per client in bytes and count
//! and all together at a quarter of `store.max_bytes` (the overflow is refused and
//! counted), and leaves when the subscriber acknowledges it
//! (PUBACK, or PUBREC for QoS 2) or with its session.
//!
//! Invariant: an enqueue's `done` fires with `Ok(Queued(qseq))` only after the
//! transaction holding the row committed, under the same durability rule as an append
//! (`store/writer.rs`), so a publisher acknowledged after it can count on the row.

use super::{META, RecordError, SESSION_QUEUE, SESSIONS, Store, StoreError, redb_err};
use crate::event::{Event, Origin};
use crate::router::{Delivery, SubIds};
use bytes::Bytes;
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Format byte of [`QueuedV1`].
const QUEUED_FORMAT_V1: u8 = 1;

/// One queued delivery: the whole event (MQTT 5 properties included, unlike a log
/// record, since the subscriber gets them) and how it is delivered.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct QueuedV1<'a> {
    received_ms: u64,
    topic: &'a str,
    payload: &'a [u8],
    event_qos: u8,
    event_retain: bool,
    origin: u8,
    user_properties: Vec<(&'a str, &'a str)>,
    response_topic: Option<&'a str>,
    correlation_data: Option<&'a [u8]>,
    content_type: Option<&'a str>,
    payload_format: Option<u8>,
    expires_ms: Option<u64>,
    /// The delivery: QoS, RETAIN flag, subscription identifiers, the session's tag.
    qos: u8,
    retain: bool,
    sub_ids: Vec<u32>,
    tag: u64,
}

/// Encodes `d` as a queue row.
pub fn encode(d: &Delivery) -> Result<Vec<u8>, RecordError> {
    let e = &d.event;
    let row = QueuedV1 {
        received_ms: e.received_ms,
        topic: &e.topic,
        payload: &e.payload,
        event_qos: e.qos,
        event_retain: e.retain,
        origin: e.origin.as_u8(),
        user_properties: e
            .user_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        response_topic: e.response_topic.as_deref(),
        correlation_data: e.correlation_data.as_deref(),
        content_type: e.content_type.as_deref(),
        payload_format: e.payload_format,
        expires_ms: e.expires_ms,
        qos: d.qos,
        retain: d.retain,
        sub_ids: d.sub_ids.to_vec(),
        tag: d.tag,
    };
    Ok(super::seal::seal(&postcard::to_extend(
        &row,
        vec![QUEUED_FORMAT_V1],
    )?))
}

/// Decodes a queue row back into the delivery it was.
pub fn decode(bytes: &[u8]) -> Result<Delivery, RecordError> {
    let bytes = super::seal::open(bytes)?;
    let (&format, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    if format != QUEUED_FORMAT_V1 {
        return Err(RecordError::UnknownFormat(format));
    }
    let r: QueuedV1 = postcard::from_bytes(body)?;
    let mut event = Event::new(
        Arc::from(r.topic),
        Bytes::copy_from_slice(r.payload),
        r.event_qos,
        r.event_retain,
        Origin::from_u8(r.origin),
    );
    event.received_ms = r.received_ms;
    event.user_properties = r
        .user_properties
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    event.response_topic = r.response_topic.map(Arc::from);
    event.correlation_data = r.correlation_data.map(Bytes::copy_from_slice);
    event.content_type = r.content_type.map(Arc::from);
    event.payload_format = r.payload_format;
    event.expires_ms = r.expires_ms;
    let mut sub_ids = SubIds::new();
    for id in r.sub_ids {
        let _ = sub_ids.push(id);
    }
    Ok(Delivery {
        event: Arc::new(event),
        qos: r.qos,
        tag: r.tag,
        retain: r.retain,
        sub_ids,
    })
}

/// Bytes a row is counted for, against its session's bound and in the gauges: the
/// row, its key and redb's per-entry overhead.
pub fn cost(client_id: &str, row_len: usize) -> u64 {
    (row_len + client_id.len() + 8 + 32) as u64
}

/// Shared by a session and the store writer: the writer notifies `wake` when a row of
/// the session was committed, and counts in `refused` the rows its bound turned away.
#[derive(Debug, Default)]
pub struct QueueSignal {
    pub wake: tokio::sync::Notify,
    pub refused: std::sync::atomic::AtomicU64,
}

/// The bounds of one session's queue: `mqtt.max_queued_bytes` and `mqtt.max_queued`
/// (0: no count bound).
#[derive(Debug, Clone, Copy)]
pub struct QueueBound {
    pub bytes: u64,
    pub count: u64,
}

/// What happened to one enqueued row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Stored with this qseq (>= 1).
    Stored(u64),
    /// The session's queue is at its bound: not stored (counted).
    Full,
    /// The client has no session record any more: not stored.
    NoSession,
}

/// A row read back: its qseq, its cost, and the delivery (or why it does not decode).
pub struct QueuedRow {
    pub qseq: u64,
    pub cost: u64,
    pub delivery: Result<Delivery, RecordError>,
}

/// The writer's view of every queue: totals for the gauges, the next qseq, and per
/// client met since the start the bytes its queue holds.
#[derive(Debug, Default)]
pub(super) struct Queues {
    pub bytes: u64,
    pub count: u64,
    next_qseq: u64,
    /// Bytes and rows per client.
    clients: HashMap<Arc<str>, (u64, u64)>,
}

impl Queues {
    /// The bytes and rows of the client's queue as stored, read on first use.
    fn client(
        &mut self,
        txn: &WriteTransaction,
        client_id: &Arc<str>,
    ) -> Result<&mut (u64, u64), StoreError> {
        if !self.clients.contains_key(client_id) {
            let table = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
            let (mut bytes, mut rows) = (0, 0);
            for row in table
                .range((&**client_id, 0u64)..=(&**client_id, u64::MAX))
                .map_err(redb_err)?
            {
                let (_, v) = row.map_err(redb_err)?;
                bytes += cost(client_id, v.value().len());
                rows += 1;
            }
            self.clients.insert(client_id.clone(), (bytes, rows));
        }
        // Inserted just above when missing.
        self.clients
            .get_mut(client_id)
            .ok_or(StoreError::Unavailable)
    }

    /// Stores `row` for `client_id` unless its queue would pass `bound`, all queues
    /// together would pass `total` bytes, or the client has no session record.
    pub(super) fn push(
        &mut self,
        txn: &WriteTransaction,
        client_id: &Arc<str>,
        row: &[u8],
        bound: QueueBound,
        total: u64,
    ) -> Result<Queued, StoreError> {
        let sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
        if sessions.get(&**client_id).map_err(redb_err)?.is_none() {
            return Ok(Queued::NoSession);
        }
        drop(sessions);
        let c = cost(client_id, row.len());
        if self.bytes + c > total {
            return Ok(Queued::Full);
        }
        let held = self.client(txn, client_id)?;
        if held.0 + c > bound.bytes || (bound.count > 0 && held.1 >= bound.count) {
            return Ok(Queued::Full);
        }
        held.0 += c;
        held.1 += 1;
        let qseq = self.next_qseq.max(1);
        self.next_qseq = qseq + 1;
        let mut table = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
        table.insert((&**client_id, qseq), row).map_err(redb_err)?;
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        meta.insert("queue_next_qseq", self.next_qseq)
            .map_err(redb_err)?;
        self.bytes += c;
        self.count += 1;
        Ok(Queued::Stored(qseq))
    }

    /// Removes one row (acknowledged by the subscriber).
    pub(super) fn remove(
        &mut self,
        txn: &WriteTransaction,
        client_id: &str,
        qseq: u64,
    ) -> Result<(), StoreError> {
        let mut table = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
        let removed = table
            .remove((client_id, qseq))
            .map_err(redb_err)?
            .map(|v| cost(client_id, v.value().len()));
        if let Some(c) = removed {
            self.forget(client_id, c, 1);
        }
        Ok(())
    }

    /// Removes every row of a client (its session was deleted).
    pub(super) fn clear(
        &mut self,
        txn: &WriteTransaction,
        client_id: &str,
    ) -> Result<(), StoreError> {
        let mut table = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
        let mut bytes = 0;
        let mut n = 0;
        let mut doomed = table
            .extract_from_if((client_id, 0u64)..=(client_id, u64::MAX), |_, _| true)
            .map_err(redb_err)?;
        for row in doomed.by_ref() {
            let (_, v) = row.map_err(redb_err)?;
            bytes += cost(client_id, v.value().len());
            n += 1;
        }
        drop(doomed);
        self.forget(client_id, bytes, n);
        self.clients.remove(client_id);
        Ok(())
    }

    fn forget(&mut self, client_id: &str, bytes: u64, n: u64) {
        self.bytes = self.bytes.saturating_sub(bytes);
        self.count = self.count.saturating_sub(n);
        if let Some(held) = self.clients.get_mut(client_id) {
            held.0 = held.0.saturating_sub(bytes);
            held.1 = held.1.saturating_sub(n);
        }
    }
}

impl Queues {
    /// Counts the rows again from the committed store and forgets what was learnt per
    /// client (after a failed commit, whose changes were not kept).
    pub(super) fn reload(&mut self, db: &super::db::DbSlot) {
        self.clients.clear();
        let counted = (|| -> Result<(u64, u64), StoreError> {
            let txn = db.get()?.begin_read().map_err(redb_err)?;
            let table = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
            let (mut bytes, mut count) = (0, 0);
            for row in table.iter().map_err(redb_err)? {
                let (k, v) = row.map_err(redb_err)?;
                bytes += cost(k.value().0, v.value().len());
                count += 1;
            }
            Ok((bytes, count))
        })();
        match counted {
            Ok((bytes, count)) => (self.bytes, self.count) = (bytes, count),
            Err(e) => tracing::warn!(error = %e, "cannot count the session queues"),
        }
    }
}

/// At open: deletes the rows of clients that have no session record (a crash between
/// a session's deletion and a late enqueue cannot leave any, but an older ferry's store
/// or a damaged record can), and counts the rest for the gauges.
pub(super) fn init(txn: &WriteTransaction) -> Result<Queues, StoreError> {
    let sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
    let mut table = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
    let mut queues = Queues::default();
    let meta = txn.open_table(META).map_err(redb_err)?;
    queues.next_qseq = meta
        .get("queue_next_qseq")
        .map_err(redb_err)?
        .map_or(1, |v| v.value());
    drop(meta);
    let mut orphans: Vec<(String, u64)> = Vec::new();
    let mut known: Option<(String, bool)> = None;
    for row in table.iter().map_err(redb_err)? {
        let (k, v) = row.map_err(redb_err)?;
        let (client, qseq) = k.value();
        queues.next_qseq = queues.next_qseq.max(qseq + 1);
        let has_session = match &known {
            Some((c, has)) if c == client => *has,
            _ => {
                let has = sessions.get(client).map_err(redb_err)?.is_some();
                known = Some((client.to_string(), has));
                has
            }
        };
        if has_session {
            queues.bytes += cost(client, v.value().len());
            queues.count += 1;
        } else {
            orphans.push((client.to_string(), qseq));
        }
    }
    for (client, qseq) in &orphans {
        table.remove((client.as_str(), *qseq)).map_err(redb_err)?;
    }
    if !orphans.is_empty() {
        tracing::warn!(
            rows = orphans.len(),
            "store: queued messages of sessions that no longer exist were deleted"
        );
    }
    Ok(queues)
}

impl Store {
    /// Reads up to `max` queued rows of `client_id` with qseq > `after`, in order.
    /// Only committed rows are seen. Cheap enough for the connection's task: a range
    /// read of a few rows.
    pub fn read_queue(
        &self,
        client_id: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<QueuedRow>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(redb_err)?;
        let table = txn.open_table(SESSION_QUEUE).map_err(redb_err)?;
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for row in table
            .range((client_id, after + 1)..=(client_id, u64::MAX))
            .map_err(redb_err)?
            .take(max)
        {
            let (k, v) = row.map_err(redb_err)?;
            let qseq = k.value().1;
            let delivery = decode(v.value());
            if let Err(error) = &delivery {
                let client_id = client_id.to_string();
                let source = super::quarantine::Source::QueueRow { client_id, qseq };
                self.damaged(source, error, v.value());
            }
            out.push(QueuedRow {
                qseq,
                cost: cost(client_id, v.value().len()),
                delivery,
            });
        }
        Ok(out)
    }

    /// Queues `row` (from [`encode`]) for the persistent session `client_id`, within
    /// `bound`; `signal` learns that it was committed or refused. Waits while the
    /// writer's queue is full. The receiver resolves once the row is durable (or was
    /// refused).
    pub async fn enqueue(
        &self,
        client_id: Arc<str>,
        row: Vec<u8>,
        bound: QueueBound,
        signal: Arc<QueueSignal>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Queued, StoreError>>, StoreError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let permit =
            crate::budget::Budget::ingest(&self.ingest, self.ingest_limit, row.len() + 64).await;
        self.tx
            .send(super::writer::Command::Enqueue {
                client_id,
                row,
                bound,
                signal,
                done,
                _permit: permit,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_round_trips_with_every_property() {
        let mut e = Event::new(
            "a/b".into(),
            Bytes::from_static(b"hi"),
            2,
            true,
            Origin::Nats,
        );
        e.received_ms = 77;
        e.user_properties.push(("k".into(), "v".into()));
        e.response_topic = Some("r/t".into());
        e.correlation_data = Some(Bytes::from_static(b"c"));
        e.content_type = Some("text/plain".into());
        e.payload_format = Some(1);
        e.expires_ms = Some(1_000);
        let mut d = Delivery::new(Arc::new(e), 1);
        d.retain = true;
        d.tag = 9;
        d.sub_ids.push(4).unwrap();
        let row = encode(&d).unwrap();
        assert_eq!(row[0], super::super::seal::SEALED);
        assert_eq!(row[5], QUEUED_FORMAT_V1);
        let back = decode(&row).unwrap();
        // A row written before checksums (no seal) still reads.
        let unsealed = decode(&row[5..]).unwrap();
        assert_eq!(unsealed.tag, 9);
        // A flipped payload byte is caught.
        let mut bad = row.clone();
        let at = bad.windows(2).position(|w| w == b"hi").unwrap();
        bad[at] ^= 1;
        assert!(matches!(decode(&bad), Err(RecordError::Checksum { .. })));
        assert_eq!((back.qos, back.retain, back.tag), (1, true, 9));
        assert_eq!(back.sub_ids.as_slice(), &[4]);
        let b = &back.event;
        assert_eq!(
            (&*b.topic, &b.payload[..], b.qos, b.retain),
            ("a/b", &b"hi"[..], 2, true)
        );
        assert_eq!(
            (b.origin, b.received_ms, b.expires_ms),
            (Origin::Nats, 77, Some(1_000))
        );
        assert_eq!(b.user_properties, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(b.response_topic.as_deref(), Some("r/t"));
        assert_eq!(b.correlation_data.as_deref(), Some(&b"c"[..]));
        assert_eq!(
            (b.content_type.as_deref(), b.payload_format),
            (Some("text/plain"), Some(1))
        );
        assert!(matches!(decode(&[9]), Err(RecordError::UnknownFormat(9))));
        assert!(matches!(decode(&[]), Err(RecordError::Empty)));
    }
}
