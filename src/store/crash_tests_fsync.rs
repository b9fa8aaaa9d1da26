//! The SD card's share of flushes (issue 15), on the simulated disk that counts them:
//! `store.max_fsyncs_per_sec` groups commits so the budget holds and still acknowledges
//! only what is fsynced; `store.fsync` as an interval flushes at most once per interval,
//! and what a kill of the process or a power cut then loses is exactly the tail
//! acknowledged since the last flush, never anything a reader (a link) was given.

use super::crash_tests::{event, open_counted, open_with, options, shut};
use super::sim_disk::SimDisk;
use super::*;
use crate::config::Fsync;
use std::time::{Duration, Instant};

/// Every (seq, i) in the store, in order.
async fn contents(store: &Store) -> Vec<(u64, u32)> {
    let s = store.clone();
    let (records, _) = tokio::task::spawn_blocking(move || s.read_after(0, 1_000_000, 0))
        .await
        .unwrap()
        .unwrap();
    records
        .iter()
        .map(|r| {
            let i = u32::from_be_bytes(r.payload[..4].try_into().unwrap());
            (r.seq, i)
        })
        .collect()
}

fn syncs(disk: &SimDisk) -> u64 {
    disk.lock().syncs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_budget_caps_the_flushes_and_acknowledges_only_what_is_fsynced() {
    const BUDGET: u32 = 20;
    let disk = SimDisk(Arc::default());
    let mut opts = options();
    opts.max_batch = 64;
    opts.limits.max_fsyncs_per_sec = BUDGET;
    let (store, join) = open_with(&disk, opts).unwrap();
    let before = syncs(&disk);
    let started = Instant::now();
    // 8 publishers, each waiting for every acknowledgement before its next event.
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..8u32 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40u32 {
                let rx = store.append(event(p * 1000 + i), 1).await.unwrap();
                acked.push((rx.await.unwrap().unwrap(), p * 1000 + i));
            }
            acked
        });
    }
    let mut acked = Vec::new();
    while let Some(one) = tasks.join_next().await {
        acked.extend(one.unwrap());
    }
    acked.sort();
    let elapsed = started.elapsed().as_secs_f64();
    let flushes = syncs(&disk) - before;
    assert!(
        flushes as f64 <= f64::from(BUDGET) * elapsed + 1.0,
        "{flushes} fsyncs in {elapsed:.2} s: over the budget of {BUDGET} a second"
    );
    assert!(
        flushes <= 320 / 4,
        "320 acknowledgements in {flushes} fsyncs: commits were not grouped"
    );
    // A power cut right after the last acknowledgement: every acknowledged event is there.
    let image = disk.after_crash(7);
    shut(store, join).await;
    let (store, join) = open_with(&image, options()).unwrap();
    assert_eq!(contents(&store).await, acked);
    shut(store, join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_interval_flushes_once_per_interval_and_a_crash_keeps_what_readers_saw() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let disk = SimDisk(Arc::default());
    let mut opts = options();
    opts.limits.fsync = Fsync::Interval(INTERVAL);
    let (store, writer) = open_with(&disk, opts).unwrap();
    let before = syncs(&disk);
    let started = Instant::now();
    // Events one after another for a bit more than two intervals, each acknowledged at
    // its commit (no flush).
    let mut acked = Vec::new();
    let mut i = 0u32;
    let mut append = async |i: u32| {
        let rx = store.append(event(i), 1).await.unwrap();
        acked.push((rx.await.unwrap().unwrap(), i));
    };
    while started.elapsed() < INTERVAL * 2 + INTERVAL / 2 {
        append(i).await;
        i += 1;
    }
    // The last of those may have waited for an fsync: a few more, acknowledged at once,
    // well within the interval that fsync started.
    for _ in 0..20 {
        append(i).await;
        i += 1;
    }
    // What the links could read: only what is fsynced.
    let seen = *store.committed().borrow();
    let killed = disk.after_kill();
    let cut = disk.after_crash(11);
    let elapsed = started.elapsed();
    let flushes = syncs(&disk) - before;
    assert!(
        flushes as f64 <= elapsed.as_secs_f64() / INTERVAL.as_secs_f64() + 1.0,
        "{flushes} fsyncs in {elapsed:?}: more than one per {INTERVAL:?}"
    );
    assert!(seen > 0, "an fsync happened after the first interval");
    assert!(
        seen < acked.last().unwrap().0,
        "the acknowledged tail is not fsynced yet"
    );
    for (what, image) in [("kill", killed), ("power cut", cut)] {
        let (after, join) = open_with(&image, options()).unwrap();
        let found = contents(&after).await;
        // A prefix of what was acknowledged, in order, holding at least what readers saw:
        // only the tail acknowledged since the last fsync is gone.
        assert_eq!(found[..], acked[..found.len()], "{what}");
        assert!(
            found.last().map_or(0, |f| f.0) >= seen,
            "{what}: lost events readers were given ({} found, {seen} seen)",
            found.len()
        );
        shut(after, join).await;
    }
    // Left alone, the tail is fsynced within about one interval, with nothing new to
    // commit; then readers see it and a kill keeps it.
    let last = acked.last().unwrap().0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut committed = store.committed();
    while *committed.borrow() < last {
        assert!(Instant::now() < deadline, "the tail was never fsynced");
        let _ = tokio::time::timeout(Duration::from_secs(1), committed.changed()).await;
    }
    let (after, join) = open_with(&disk.after_kill(), options()).unwrap();
    assert_eq!(contents(&after).await, acked);
    shut(after, join).await;
    shut(store, writer).await;
}

/// An append-only commit leaves meta's accounting behind (`accounting.rs`): after a power
/// cut at any of those commits, and after one past a removal, the reopened store counts
/// exactly the records it holds and gives the next event the seq after the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_accounting_is_exact_after_a_power_cut() {
    let disk = SimDisk(Arc::default());
    let (store, join) = open_with(&disk, options()).unwrap();
    let mut images = Vec::new();
    let mut acked = 0u64;
    for i in 0..40u32 {
        let rx = store.append(event(i), 1).await.unwrap();
        acked = rx.await.unwrap().unwrap();
        if i % 7 == 3 {
            images.push((acked, disk.after_crash(u64::from(i))));
        }
        if i == 20 {
            // A removal: the cursor passes the first 10, which are reclaimed.
            store.advance_cursor(0, 10).await.unwrap();
        }
    }
    images.push((acked, disk.after_kill()));
    shut(store, join).await;
    for (acked, image) in images {
        let metrics = Arc::new(Metrics::default());
        let (after, join) = open_counted(&image, options(), metrics.clone()).unwrap();
        let held = contents(&after).await;
        let seqs: Vec<u64> = held.iter().map(|(s, _)| *s).collect();
        let last = seqs.last().copied().unwrap_or(0);
        assert!(
            last >= acked,
            "lost an acknowledged event: {last} < {acked}"
        );
        assert_eq!(
            metrics.store_events.get() as u64,
            after.len().unwrap(),
            "count after a crash at {acked}"
        );
        // Every record here has the same size.
        let mut buf = Vec::new();
        record::encode(&event(0), 1, &mut buf).unwrap();
        let bytes = retention::cost(buf.len()) * held.len() as u64;
        assert_eq!(
            metrics.store_bytes.get() as u64,
            bytes,
            "bytes after {acked}"
        );
        let rx = after.append(event(999), 1).await.unwrap();
        assert_eq!(
            rx.await.unwrap().unwrap(),
            last + 1,
            "next seq after {acked}"
        );
        shut(after, join).await;
    }
}
