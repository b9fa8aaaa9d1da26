use super::*;
use crate::event::Origin;
use bytes::Bytes;

pub(super) fn opts() -> StoreOptions {
    StoreOptions {
        cache_size: 1 << 20,
        max_batch: 64,
        linger: std::time::Duration::ZERO,
        queue: 128,
        queue_bytes: 1 << 20,
        limits: Limits {
            max_bytes: 1 << 30,
            max_age: std::time::Duration::ZERO,
            on_full: crate::config::OnFull::DropOldest,
            fsync: crate::config::Fsync::Always,
            dead_letter_bytes: 16 << 20,
            quarantine_bytes: 4 << 20,
            max_fsyncs_per_sec: 0,
        },
    }
}

fn limited(max_bytes: u64, on_full: crate::config::OnFull) -> StoreOptions {
    let mut o = opts();
    o.limits.max_bytes = max_bytes;
    o.limits.on_full = on_full;
    o
}

/// Appends `event` for `dests` and waits for its commit; returns its seq.
pub(super) async fn stored(store: &Store, event: Arc<Event>, dests: u64) -> u64 {
    store
        .append(event, dests)
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap()
}

pub(super) async fn close(store: Store, join: WriterJoin) {
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
}

/// Bytes one `ev(i)` costs in the accounting.
pub(super) fn cost_of_ev() -> u64 {
    let mut buf = Vec::new();
    record::encode(&ev(0), 1, &mut buf).unwrap();
    retention::cost(buf.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest_and_counts_per_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let names = vec!["a".to_string()];
    let cap = cost_of_ev() * 10;
    let (store, join) = Store::open(
        dir.path(),
        &names,
        limited(cap, crate::config::OnFull::DropOldest),
        metrics.clone(),
    )
    .unwrap();
    for i in 0..25u32 {
        stored(&store, ev(i), 1).await;
    }
    assert_eq!(store.len().unwrap(), 10);
    let s = store.clone();
    let (kept, _) = tokio::task::spawn_blocking(move || s.read_after(0, 100, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (16..=25).collect::<Vec<u64>>()
    );
    assert_eq!(metrics.upstream("a").dropped_full.get(), 15);
    assert_eq!(metrics.store_bytes.get() as u64, cap);
    close(store, join).await;
    // The accounting survives a restart.
    let (store, join) = Store::open(
        dir.path(),
        &names,
        limited(cap, crate::config::OnFull::DropOldest),
        metrics.clone(),
    )
    .unwrap();
    assert_eq!(metrics.store_bytes.get() as u64, cap);
    assert_eq!(metrics.store_events.get(), 10);
    close(store, join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_new_refuses_and_keeps_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let cap = cost_of_ev() * 10;
    let names = vec!["a".to_string()];
    let (store, join) = Store::open(
        dir.path(),
        &names,
        limited(cap, crate::config::OnFull::RejectNew),
        metrics.clone(),
    )
    .unwrap();
    let mut results = Vec::new();
    for i in 0..12u32 {
        results.push(store.append(ev(i), 1).await.unwrap().await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    assert!(
        matches!(results[10], Err(StoreError::Full))
            && matches!(results[11], Err(StoreError::Full))
    );
    assert_eq!(metrics.store_rejected.get(), 2);
    // Once the upstream acks, there is room again: acknowledged records are deleted
    // before anything is refused.
    store.advance_cursor(0, 5).await.unwrap();
    assert_eq!(stored(&store, ev(100), 1).await, 11);
    assert_eq!(store.len().unwrap(), 6);
    assert_eq!(metrics.store_rejected.get(), 2);
    close(store, join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_drops_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut o = opts();
    o.limits.max_age = std::time::Duration::from_secs(60);
    let names = vec!["a".to_string()];
    let (store, join) = Store::open(dir.path(), &names, o, metrics.clone()).unwrap();
    for i in 0..3u32 {
        let mut e = (*ev(i)).clone();
        e.received_ms -= 120_000; // two minutes old
        store
            .append(Arc::new(e), 1)
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap();
    }
    stored(&store, ev(3), 1).await;
    // The old ones go in the next commit's retention pass.
    stored(&store, ev(4), 1).await;
    assert_eq!(store.len().unwrap(), 2);
    assert_eq!(metrics.upstream("a").dropped_age.get(), 3);
    close(store, join).await;
}

pub(super) fn ev(i: u32) -> Arc<Event> {
    Arc::new(Event::new(
        format!("t/{i:03}").into(),
        Bytes::from(i.to_be_bytes().to_vec()),
        1,
        false,
        Origin::Mqtt,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_cursor_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    let (ba, bb) = (store.upstreams()[0].bit, store.upstreams()[1].bit);
    let mut acks = Vec::new();
    for i in 0..100u32 {
        // Even events go to both upstreams, odd ones only to "a".
        let dests = if i % 2 == 0 {
            (1 << ba) | (1 << bb)
        } else {
            1 << ba
        };
        acks.push(store.append(ev(i), dests).await.unwrap());
    }
    let mut seqs = Vec::new();
    for a in acks {
        seqs.push(a.await.unwrap().unwrap());
    }
    assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
    assert_eq!(*store.committed().borrow(), 100);

    let s = store.clone();
    let (for_b, last) = tokio::task::spawn_blocking(move || s.read_after(0, 10, bb))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        for_b.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    );
    assert_eq!(last, 19);
    assert_eq!(&for_b[1].payload[..], &2u32.to_be_bytes());

    // "a" acks up to 50, "b" up to 30: everything <= 30 may go, but acknowledged
    // records are deleted a whole segment at a time (or when space is short, or when
    // nothing is left), not at every cursor move.
    store.advance_cursor(0, 50).await.unwrap();
    store.advance_cursor(1, 30).await.unwrap();
    stored(&store, ev(999), 1 << ba).await;
    assert_eq!(store.len().unwrap(), 101);
    stored(&store, ev(998), 1 << ba).await;
    assert_eq!(store.len().unwrap(), 102);
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();

    // Reopen: cursors and seqs continue; a new upstream starts at the end.
    let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    let cur: Vec<u64> = store.upstreams().iter().map(|u| u.cursor).collect();
    assert_eq!(cur, vec![50, 30, 102]);
    assert_eq!(store.upstreams()[1].bit, bb);
    let seq = stored(&store, ev(1000), 1).await;
    assert_eq!(seq, 103);
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_are_never_reused_after_everything_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string()];
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    for i in 0..5 {
        stored(&store, ev(i), 1).await;
    }
    store.advance_cursor(0, 5).await.unwrap();
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    assert_eq!(store.len().unwrap(), 0);
    assert_eq!(store.upstreams()[0].cursor, 5);
    assert_eq!(stored(&store, ev(9), 1).await, 6);
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
}

/// A store written before ferry kept its size accounting (no `live_bytes` in `meta`)
/// opens, and the accounting is computed from the log once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_store_without_accounting_opens() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string()];
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    for i in 0..7u32 {
        stored(&store, ev(i), 1).await;
    }
    close(store, join).await;
    {
        let db = Database::create(dir.path().join("ferry.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.remove("live_bytes").unwrap();
            meta.remove("live_count").unwrap();
        }
        txn.commit().unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    assert_eq!(metrics.store_events.get(), 7);
    assert_eq!(metrics.store_bytes.get() as u64, 7 * cost_of_ev());
    assert_eq!(stored(&store, ev(7), 1).await, 8);
    close(store, join).await;
}

/// A session is a record plus one row per subscription: rows are written and removed
/// one by one, and deleting the session takes every row of that client and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_subscriptions_are_rows_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &[], opts(), metrics.clone()).unwrap();
    let put = |client: &str, filter: &str| StateChange::PutSubscription {
        client_id: client.into(),
        filter: filter.into(),
        options: filter.as_bytes().to_vec(),
    };
    for client in ["a", "ab", "b"] {
        store
            .change_state(StateChange::PutSession {
                client_id: client.into(),
                record: vec![3, 0, 0],
            })
            .await
            .unwrap();
        for filter in ["x/#", "y", "z/+"] {
            store.change_state(put(client, filter)).await.unwrap();
        }
    }
    store
        .change_state(StateChange::DeleteSubscription {
            client_id: "ab".into(),
            filter: "y".into(),
        })
        .await
        .unwrap();
    store
        .change_state(StateChange::DeleteSession {
            client_id: "a".into(),
        })
        .await
        .unwrap();
    close(store, join).await;
    let (store, join) = Store::open(dir.path(), &[], opts(), metrics).unwrap();
    let sessions = store.load_sessions().unwrap();
    let rows = |s: &StoredSession| s.subs.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>();
    assert_eq!(
        sessions
            .iter()
            .map(|s| s.client_id.as_str())
            .collect::<Vec<_>>(),
        ["ab", "b"],
        "a is gone, ab (a prefix of nothing deleted) stays"
    );
    assert_eq!(rows(&sessions[0]), ["x/#", "z/+"]);
    assert_eq!(rows(&sessions[1]), ["x/#", "y", "z/+"]);
    assert_eq!(sessions[1].subs[1].1, b"y");
    close(store, join).await;
}

/// A record whose bytes changed on disk (one flipped bit in its payload, which would still
/// decode) is caught by its checksum: readers skip it, move past it, count it once, and
/// every other record is read as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_skipped_counted_once_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (store, join) =
        Store::open(dir.path(), &["a".to_string()], opts(), metrics.clone()).unwrap();
    for i in 0..3u32 {
        stored(&store, ev(i), 1).await;
    }
    let db = store.db.get().unwrap();
    tokio::task::spawn_blocking(move || {
        let txn = db.begin_write().unwrap();
        {
            let mut t = segments::open(&txn, segments::index(2)).unwrap();
            let mut bytes = t.get(2).unwrap().unwrap().value().to_vec();
            // After the payload: qos, retain, origin, dests and the number of user
            // properties (a byte each here), then the 4-byte checksum.
            let last_payload_byte = bytes.len() - 4 - 6;
            bytes[last_payload_byte] ^= 0x01;
            t.insert(2, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    })
    .await
    .unwrap();
    for _ in 0..2 {
        let s = store.clone();
        let (read, last) = tokio::task::spawn_blocking(move || s.read_after(0, 10, 0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(last, 3, "the reader moves past the damaged record");
    }
    assert_eq!(metrics.store_corrupt.get(), 1, "reported once");
    close(store, join).await;
}

/// `drain = "live_first"`: a slot's split and live cursor survive a reopen while the
/// backlog drains, and are forgotten once its cursor passed the split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_first_state_survives_a_reopen_until_the_cursor_passes_it() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["u".to_string()];
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    for i in 0..30u32 {
        stored(&store, ev(i), 1).await;
    }
    store.advance_cursor(0, 5).await.unwrap();
    store.set_live(0, 20, 25).unwrap();
    close(store, join).await;
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    assert_eq!(
        (store.upstreams()[0].cursor, store.upstreams()[0].live),
        (5, (20, 25))
    );
    // The backlog is done: the cursor moves past the split, then the state is cleared.
    store.advance_cursor(0, 25).await.unwrap();
    store.set_live(0, 0, 0).unwrap();
    close(store, join).await;
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    assert_eq!(
        (store.upstreams()[0].cursor, store.upstreams()[0].live),
        (25, (0, 0))
    );
    // A crash between the two: the cursor passed the split, so the state is over.
    store.advance_cursor(0, 28).await.unwrap();
    store.set_live(0, 26, 28).unwrap();
    close(store, join).await;
    let (store, join) =
        Store::open(dir.path(), &names, opts(), Arc::new(Metrics::default())).unwrap();
    assert_eq!(
        (store.upstreams()[0].cursor, store.upstreams()[0].live),
        (28, (0, 0))
    );
    close(store, join).await;
}

/// Meta's accounting as the file has it: (next_seq, live_count, live_bytes).
fn meta_accounting(dir: &std::path::Path) -> (u64, u64, u64) {
    let db = Database::create(dir.join("ferry.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let get = |k: &str| meta.get(k).unwrap().map_or(0, |v| v.value());
    (get("next_seq"), get("live_count"), get("live_bytes"))
}

/// An append-only commit leaves meta's accounting alone (`accounting.rs`): the open
/// counts the records after it. A commit that removes records writes it, so an emptied
/// log still never reuses a seq, and so does a commit past a megabyte appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_accounting_is_written_when_records_go_or_a_megabyte_came() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string()];
    let (store, join) = Store::open(dir.path(), &names, opts(), Arc::default()).unwrap();
    for i in 0..7u32 {
        assert_eq!(stored(&store, ev(i), 1).await, u64::from(i) + 1);
    }
    close(store, join).await;
    assert_eq!(
        meta_accounting(dir.path()),
        (1, 0, 0),
        "untouched since the open"
    );

    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    assert_eq!(metrics.store_events.get(), 7);
    assert_eq!(metrics.store_bytes.get() as u64, 7 * cost_of_ev());
    assert_eq!(stored(&store, ev(7), 1).await, 8);
    // Every record acknowledged and trimmed: that commit writes the accounting.
    store.advance_cursor(0, 8).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.len().unwrap() != 0 {
        assert!(std::time::Instant::now() < deadline, "acked records stayed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    close(store, join).await;
    let (next, count, bytes) = meta_accounting(dir.path());
    assert_eq!((count, bytes), (0, 0));
    assert_eq!(next, 9);

    // Past a megabyte of appends (one commit each), meta catches up.
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    let big = |i: u32| {
        let payload = Bytes::from(vec![i as u8; 100_000]);
        Arc::new(Event::new("t/big".into(), payload, 1, false, Origin::Mqtt))
    };
    let mut last = 0;
    for i in 0..12 {
        last = stored(&store, big(i), 1).await;
    }
    close(store, join).await;
    let (meta_next, count, bytes) = meta_accounting(dir.path());
    assert!(
        meta_next > next + 9 && meta_next <= last + 1,
        "meta {meta_next}"
    );
    assert_eq!(
        count,
        meta_next - next,
        "meta counts exactly what is below its next_seq"
    );
    assert!(bytes >= count * 100_000);
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    assert_eq!(metrics.store_events.get(), 12);
    assert_eq!(stored(&store, ev(0), 1).await, last + 1);
    close(store, join).await;
}
