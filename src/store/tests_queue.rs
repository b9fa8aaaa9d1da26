//! The session queues in the store: rows only for sessions that exist, in order,
//! bounded, removed when acknowledged or with their session, qseqs never reused across
//! restarts, and orphans cleaned at open.

use super::tests::{close, opts};
use super::*;
use crate::event::Origin;
use crate::router::Delivery;
use bytes::Bytes;
use std::sync::atomic::Ordering;

fn row(i: u32) -> Vec<u8> {
    let e = Event::new(
        "q/t".into(),
        Bytes::from(i.to_string()),
        1,
        false,
        Origin::Mqtt,
    );
    encode_queued(&Delivery::new(Arc::new(e), 1)).unwrap()
}

const NO_BOUND: QueueBound = QueueBound {
    bytes: u64::MAX,
    count: 0,
};

async fn enqueue(
    store: &Store,
    client: &str,
    i: u32,
    bound: QueueBound,
    sig: &Arc<QueueSignal>,
) -> Queued {
    store
        .enqueue(client.into(), row(i), bound, sig.clone())
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap()
}

async fn session(store: &Store, client: &str) {
    let change = StateChange::PutSession {
        client_id: client.into(),
        record: vec![3, 0, 0],
    };
    store.change_state(change).await.unwrap();
}

fn payloads(rows: &[QueuedRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            let d = r.delivery.as_ref().unwrap();
            String::from_utf8(d.event.payload.to_vec()).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_kept_in_order_for_existing_sessions_and_qseqs_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &[], opts(), metrics.clone()).unwrap();
    let sig = Arc::new(QueueSignal::default());
    assert_eq!(
        enqueue(&store, "c", 0, NO_BOUND, &sig).await,
        Queued::NoSession
    );
    session(&store, "c").await;
    session(&store, "d").await;
    assert_eq!(
        enqueue(&store, "c", 1, NO_BOUND, &sig).await,
        Queued::Stored(1)
    );
    assert_eq!(
        enqueue(&store, "d", 2, NO_BOUND, &sig).await,
        Queued::Stored(2)
    );
    assert_eq!(
        enqueue(&store, "c", 3, NO_BOUND, &sig).await,
        Queued::Stored(3)
    );
    // The writer told the session; the permit is kept for its next wait.
    tokio::time::timeout(std::time::Duration::from_secs(1), sig.wake.notified())
        .await
        .unwrap();
    let rows = store.read_queue("c", 0, 10).unwrap();
    assert_eq!(rows.iter().map(|r| r.qseq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(payloads(&rows), ["1", "3"]);
    assert_eq!(payloads(&store.read_queue("c", 1, 10).unwrap()), ["3"]);
    assert_eq!(store.read_queue("c", 0, 1).unwrap().len(), 1, "at most max");
    assert_eq!(metrics.store_queued.get(), 3);
    let bytes: u64 =
        rows.iter().map(|r| r.cost).sum::<u64>() + store.read_queue("d", 0, 9).unwrap()[0].cost;
    assert_eq!(metrics.store_queued_bytes.get() as u64, bytes);
    for qseq in [1, 3] {
        let change = StateChange::Dequeue {
            client_id: "c".into(),
            qseq,
        };
        store.change_state(change).await.unwrap();
    }
    // A later commit sees the removals applied.
    assert_eq!(
        enqueue(&store, "d", 4, NO_BOUND, &sig).await,
        Queued::Stored(4)
    );
    assert!(store.read_queue("c", 0, 10).unwrap().is_empty());
    assert_eq!(metrics.store_queued.get(), 2);
    close(store, join).await;

    // Reopened: "c" has no rows left, and its next row still gets a new qseq, so a
    // reader that had read up to 3 sees it.
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &[], opts(), metrics.clone()).unwrap();
    assert_eq!(metrics.store_queued.get(), 2, "d's rows, counted at open");
    assert_eq!(
        enqueue(&store, "c", 5, NO_BOUND, &sig).await,
        Queued::Stored(5)
    );
    assert_eq!(payloads(&store.read_queue("c", 3, 10).unwrap()), ["5"]);
    // Deleting a session deletes its rows.
    let change = StateChange::DeleteSession {
        client_id: "d".into(),
    };
    store.change_state(change).await.unwrap();
    assert_eq!(
        enqueue(&store, "d", 6, NO_BOUND, &sig).await,
        Queued::NoSession
    );
    assert!(store.read_queue("d", 0, 10).unwrap().is_empty());
    assert_eq!(metrics.store_queued.get(), 1);
    close(store, join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_bounded_in_bytes_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &[], opts(), metrics.clone()).unwrap();
    session(&store, "c").await;
    session(&store, "e").await;
    let sig = Arc::new(QueueSignal::default());
    let one = queue::cost("c", row(1).len());
    let by_bytes = QueueBound {
        bytes: 3 * one,
        count: 0,
    };
    let got: Vec<Queued> = {
        let mut v = Vec::new();
        for i in 1..=5 {
            v.push(enqueue(&store, "c", i, by_bytes, &sig).await);
        }
        v
    };
    assert_eq!(
        got,
        [
            Queued::Stored(1),
            Queued::Stored(2),
            Queued::Stored(3),
            Queued::Full,
            Queued::Full
        ]
    );
    assert_eq!(sig.refused.load(Ordering::Relaxed), 2);
    assert_eq!(metrics.dropped_offline_overflow.get(), 2);
    // Room again once one is acknowledged.
    let change = StateChange::Dequeue {
        client_id: "c".into(),
        qseq: 1,
    };
    store.change_state(change).await.unwrap();
    assert_eq!(
        enqueue(&store, "c", 6, by_bytes, &sig).await,
        Queued::Stored(4),
        "a refused row took no qseq"
    );
    let by_count = QueueBound {
        bytes: u64::MAX,
        count: 2,
    };
    let other = Arc::new(QueueSignal::default());
    assert_eq!(
        enqueue(&store, "e", 7, by_count, &other).await,
        Queued::Stored(5)
    );
    assert_eq!(
        enqueue(&store, "e", 8, by_count, &other).await,
        Queued::Stored(6)
    );
    assert_eq!(
        enqueue(&store, "e", 9, by_count, &other).await,
        Queued::Full
    );
    assert_eq!(
        payloads(&store.read_queue("c", 0, 9).unwrap()),
        ["2", "3", "6"]
    );
    close(store, join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_a_session_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, join) = Store::open(dir.path(), &[], opts(), Arc::new(Metrics::default())).unwrap();
    session(&store, "c").await;
    let sig = Arc::new(QueueSignal::default());
    enqueue(&store, "c", 1, NO_BOUND, &sig).await;
    close(store, join).await;
    // A row whose session record is gone (as a store of a crashed older ferry could
    // hold), written behind the store's back.
    {
        let db = redb::Database::create(dir.path().join("ferry.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SESSION_QUEUE)
            .unwrap()
            .insert(("gone", 99u64), row(9).as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &[], opts(), metrics.clone()).unwrap();
    assert_eq!(metrics.store_queued.get(), 1);
    assert!(store.read_queue("gone", 0, 9).unwrap().is_empty());
    assert_eq!(payloads(&store.read_queue("c", 0, 9).unwrap()), ["1"]);
    // Qseqs go on past every row ever seen.
    session(&store, "c").await;
    assert_eq!(
        enqueue(&store, "c", 2, NO_BOUND, &sig).await,
        Queued::Stored(100)
    );
    close(store, join).await;
}
