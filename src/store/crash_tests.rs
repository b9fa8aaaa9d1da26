//! Crash injection in the style of redb's own crash tests: the store runs on a storage
//! backend that models a disk (writes land in a volatile image, `sync_data` makes them
//! persistent), "crashes" at the Nth sync by failing it and freezing, and leaves behind
//! the persistent image plus an arbitrary half of the writes that were never synced.
//! The store is then reopened on that image and must hold every event whose append was
//! reported durable, in order, with cursors never past what was acknowledged.

use super::sim_disk::{Disk, SimDisk};
use super::*;
use crate::config::{Fsync, OnFull};
use crate::event::Origin;
use bytes::Bytes;
use redb::StorageBackend;
use std::sync::Mutex;

pub(super) fn options() -> StoreOptions {
    StoreOptions {
        cache_size: 1 << 20,
        max_batch: 16,
        linger: std::time::Duration::ZERO,
        queue: 64,
        queue_bytes: 1 << 20,
        limits: Limits {
            max_bytes: 1 << 30,
            max_age: std::time::Duration::ZERO,
            on_full: OnFull::DropOldest,
            fsync: Fsync::Always,
            dead_letter_bytes: 16 << 20,
            quarantine_bytes: 4 << 20,
            max_fsyncs_per_sec: 0,
        },
    }
}

fn open(disk: &SimDisk) -> Result<(Store, WriterJoin), StoreError> {
    open_with(disk, options())
}

pub(super) fn open_with(
    disk: &SimDisk,
    options: StoreOptions,
) -> Result<(Store, WriterJoin), StoreError> {
    open_counted(disk, options, Arc::default())
}

/// [`open_with`], its figures in `metrics`.
pub(super) fn open_counted(
    disk: &SimDisk,
    options: StoreOptions,
    metrics: Arc<Metrics>,
) -> Result<(Store, WriterJoin), StoreError> {
    let d = disk.clone();
    let location = Location::Backend(Box::new(move || {
        Box::new(d.clone()) as Box<dyn StorageBackend>
    }));
    Store::open_at(location, &["up".to_string()], options, metrics)
}

pub(super) fn event(i: u32) -> Arc<Event> {
    Arc::new(Event::new(
        format!("c/{}", i % 3).into(),
        Bytes::from(i.to_be_bytes().to_vec()),
        1,
        false,
        Origin::Mqtt,
    ))
}

/// Appends until the store reports errors; returns the acknowledged (seq, i) pairs and
/// the cursor values whose commit was acknowledged.
async fn run_until_crash(store: &Store, n: u32) -> (Vec<(u64, u32)>, u64) {
    let mut acked = Vec::new();
    let mut cursor_acked = 0;
    for i in 0..n {
        let Ok(rx) = store.append(event(i), 1).await else {
            break;
        };
        match rx.await {
            Ok(Ok(seq)) => acked.push((seq, i)),
            _ => break,
        }
        if i % 7 == 6 {
            // The upstream acknowledged up to an older event; the cursor moves with the
            // next commit, which this append then waits for.
            let target = acked[acked.len() / 2].0;
            if store.advance_cursor(0, target).await.is_err() {
                break;
            }
            let Ok(rx) = store.append(event(1_000_000 + i), 1).await else {
                break;
            };
            match rx.await {
                Ok(Ok(seq)) => {
                    acked.push((seq, 1_000_000 + i));
                    cursor_acked = target;
                }
                _ => break,
            }
        }
    }
    (acked, cursor_acked)
}

/// After the crash at sync `crash_at`: kills the writer (it keeps failing to reopen on
/// the crashed disk) and opens a store on what the crash left.
fn crash_and_reopen(
    disk: &SimDisk,
    store: Store,
    join: WriterJoin,
    crash_at: u64,
) -> (Store, WriterJoin) {
    assert!(disk.lock().crashed, "crash point {crash_at} was reached");
    drop(store);
    std::mem::forget(join);
    let image = disk.after_crash(crash_at);
    open(&image).unwrap_or_else(|e| panic!("reopen after crash at sync {crash_at}: {e}"))
}

pub(super) async fn shut(store: Store, join: WriterJoin) {
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_append_survives_a_crash_at_any_sync() {
    for crash_at in [1u64, 2, 3, 5, 8, 13, 21, 34, 55, 89] {
        let disk = SimDisk(Arc::new(Mutex::new(Disk::default())));
        let (store, join) = open(&disk).unwrap();
        disk.lock().syncs_left = Some(crash_at);
        let (acked, cursor_acked) = run_until_crash(&store, 400).await;
        let (store, join) = crash_and_reopen(&disk, store, join, crash_at);
        let cursor = store.upstreams()[0].cursor;
        assert!(
            cursor >= cursor_acked,
            "crash {crash_at}: acknowledged cursor {cursor_acked} lost (found {cursor})"
        );
        let max_acked = acked.last().map(|a| a.0).unwrap_or(0);
        assert!(
            cursor <= max_acked,
            "crash {crash_at}: cursor {cursor} past every acknowledged event"
        );
        let s = store.clone();
        let (records, _) = tokio::task::spawn_blocking(move || s.read_after(cursor, 100_000, 0))
            .await
            .unwrap()
            .unwrap();
        let found: Vec<(u64, u32)> = records
            .iter()
            .map(|r| {
                (
                    r.seq,
                    u32::from_be_bytes(r.payload[..4].try_into().unwrap()),
                )
            })
            .collect();
        let expected: Vec<(u64, u32)> = acked
            .iter()
            .copied()
            .filter(|(seq, _)| *seq > cursor)
            .collect();
        // Every acknowledged event after the cursor is there, in order; anything beyond
        // them is an event whose commit was in flight at the crash.
        assert_eq!(
            &found[..expected.len().min(found.len())],
            &expected[..],
            "crash at sync {crash_at}"
        );
        assert!(
            found.len() >= expected.len(),
            "crash at sync {crash_at}: lost acknowledged events"
        );
        shut(store, join).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_errors_refuse_appends_and_lose_nothing_acknowledged() {
    let disk = SimDisk(Arc::new(Mutex::new(Disk::default())));
    let (store, join) = open(&disk).unwrap();
    disk.lock().fail_every = 23;
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..300u32 {
        match store.append(event(i), 1).await.unwrap().await.unwrap() {
            Ok(seq) => acked.push((seq, i)),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "the injected errors were hit");
    assert!(
        acked.len() > 100,
        "the store recovered after each error ({} acknowledged)",
        acked.len()
    );
    disk.lock().fail_every = 0;
    shut(store, join).await;
    let (store, join) = open(&disk).unwrap();
    let s = store.clone();
    let (records, _) = tokio::task::spawn_blocking(move || s.read_after(0, 100_000, 0))
        .await
        .unwrap()
        .unwrap();
    let found: Vec<(u64, u32)> = records
        .iter()
        .map(|r| {
            (
                r.seq,
                u32::from_be_bytes(r.payload[..4].try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(found, acked, "exactly the acknowledged events, in order");
    shut(store, join).await;
}

/// A queue row for a persistent session carrying `i`.
fn queue_row(i: u32) -> Vec<u8> {
    let e = Event::new(
        "q".into(),
        Bytes::from(i.to_be_bytes().to_vec()),
        1,
        false,
        Origin::Mqtt,
    );
    encode_queued(&crate::router::Delivery::new(Arc::new(e), 1)).unwrap()
}

/// What a power cut leaves of a session's queue: every row whose enqueue was reported
/// durable is there, in order, unless the subscriber's acknowledgement removed it; a
/// removal is not fsynced, so a removed row may come back (delivered again), never
/// anything out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_queue_row_survives_a_crash_at_any_sync() {
    let bound = QueueBound {
        bytes: u64::MAX,
        count: 0,
    };
    for crash_at in [1u64, 2, 3, 5, 8, 13, 21, 34] {
        let disk = SimDisk(Arc::new(Mutex::new(Disk::default())));
        let (store, join) = open(&disk).unwrap();
        let signal = Arc::new(QueueSignal::default());
        let record = StateChange::PutSession {
            client_id: "s".into(),
            record: vec![3, 0, 0],
        };
        store.change_state(record).await.unwrap();
        let mut acked = Vec::new();
        let mut removed = Vec::new();
        for i in 0..300u32 {
            if i == 1 {
                // The session record and the first row are durable: crash from here.
                disk.lock().syncs_left = Some(crash_at);
            }
            let Ok(rx) = store
                .enqueue("s".into(), queue_row(i), bound, signal.clone())
                .await
            else {
                break;
            };
            match rx.await {
                Ok(Ok(Queued::Stored(qseq))) => acked.push((qseq, i)),
                _ => break,
            }
            if i % 5 == 4 {
                // The subscriber acknowledged the oldest row it had.
                let qseq = acked[removed.len()].0;
                removed.push(qseq);
                let change = StateChange::Dequeue {
                    client_id: "s".into(),
                    qseq,
                };
                if store.change_state(change).await.is_err() {
                    break;
                }
            }
        }
        let (store, join) = crash_and_reopen(&disk, store, join, crash_at);
        let found: Vec<(u64, u32)> = store
            .read_queue("s", 0, 100_000)
            .unwrap()
            .into_iter()
            .map(|r| {
                let d = r.delivery.unwrap();
                (
                    r.qseq,
                    u32::from_be_bytes(d.event.payload[..4].try_into().unwrap()),
                )
            })
            .collect();
        let max_acked = acked.last().map_or(0, |a| a.0);
        let kept: Vec<(u64, u32)> = acked
            .iter()
            .copied()
            .filter(|(q, _)| !removed.contains(q))
            .collect();
        for row in &kept {
            assert!(
                found.contains(row),
                "crash at sync {crash_at}: lost durable row {row:?}"
            );
        }
        // Beyond the durable rows: removed ones that came back, and rows whose commit
        // was in flight; all of them what was queued, in queue order.
        assert!(
            found.windows(2).all(|w| w[0].0 < w[1].0),
            "crash at sync {crash_at}: order"
        );
        for row in &found {
            assert!(
                acked.contains(row) || row.0 > max_acked,
                "crash at sync {crash_at}: unexpected row {row:?}"
            );
        }
        shut(store, join).await;
    }
}

/// `Store::is_usable` (what `/health` answers 503 on): false while the database cannot
/// be reopened after an I/O error, true again once it is, false once the writer stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_usable_while_reopening_nor_after_the_writer_stopped() {
    let disk = SimDisk(Arc::new(Mutex::new(Disk::default())));
    let (store, join) = open(&disk).unwrap();
    assert!(store.is_usable());
    disk.lock().crashed = true;
    let refused = store.append(event(1), 1).await.unwrap().await.unwrap();
    assert!(refused.is_err(), "the commit failed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.is_usable() {
        assert!(std::time::Instant::now() < deadline, "still usable");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The disk works again: the writer's next reopen attempt (every second) succeeds.
    disk.lock().crashed = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !store.is_usable() {
        assert!(std::time::Instant::now() < deadline, "not usable again");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let seq = store.append(event(2), 1).await.unwrap().await.unwrap();
    assert!(seq.is_ok(), "appends work again: {seq:?}");
    let probe = store.clone();
    shut(store, join).await;
    assert!(!probe.is_usable(), "the writer has stopped");
}

/// A cursor advance never waits behind ingest: with the writer stuck inside a commit (its
/// disk held) and its queue full of appends, `advance_cursor` completes on its first poll,
/// and the cursor is persisted by the next commit all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_advance_never_waits_behind_a_full_writer_queue() {
    use futures_util::FutureExt;
    let disk = SimDisk(Arc::default());
    let (store, join) = open(&disk).unwrap();
    let first = store
        .append(event(0), 1)
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    let mut pending = Vec::new();
    {
        let held = disk.lock(); // the writer blocks at its next write
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            assert!(
                std::time::Instant::now() < end,
                "the writer queue never filled"
            );
            match store.append(event(1), 1).now_or_never() {
                Some(Ok(rx)) => pending.push(rx),
                Some(Err(e)) => panic!("{e}"),
                None => break, // the queue is full: this append would wait
            }
        }
        assert!(
            matches!(store.advance_cursor(0, first).now_or_never(), Some(Ok(()))),
            "advance_cursor waited behind the full queue"
        );
        drop(held);
    }
    for rx in pending {
        rx.await.unwrap().unwrap();
    }
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
    let (store, join) = open(&disk).unwrap();
    assert_eq!(
        store.upstreams()[0].cursor,
        first,
        "persisted by a later commit"
    );
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
}
