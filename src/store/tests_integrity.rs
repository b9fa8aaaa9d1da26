//! The quarantine and the dead-letter table, on real store files.

use super::tests::{close, ev, opts, stored};
use super::*;
use crate::event::Origin;
use bytes::Bytes;

/// Changes one byte of the record at `seq` in the closed store in `dir`.
fn damage_record(dir: &Path, seq: u64) {
    let db = Database::create(dir.join("ferry.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = segments::open(&txn, segments::index(seq)).unwrap();
        let mut bytes = t.get(seq).unwrap().unwrap().value().to_vec();
        let at = bytes.len() - 6; // in the payload, before the checksum
        bytes[at] ^= 0x01;
        t.insert(seq, bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

fn read_all(store: &Store, bit: u8) -> Vec<u64> {
    let (recs, _) = store.read_after(0, 1000, bit).unwrap();
    recs.iter().map(|r| r.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_skipped_counted_once_and_moved_to_the_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let (store, join) = Store::open(dir.path(), &names, opts(), Arc::default()).unwrap();
    for i in 0..5 {
        stored(&store, ev(i), 0b11).await;
    }
    close(store, join).await;
    damage_record(dir.path(), 3);

    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    let s = store.clone();
    // Both upstreams' readers meet it: skipped by both, counted once.
    let (a, b) = tokio::task::spawn_blocking(move || (read_all(&s, 0), read_all(&s, 1)))
        .await
        .unwrap();
    assert_eq!(a, [1, 2, 4, 5]);
    assert_eq!(b, [1, 2, 4, 5]);
    assert_eq!(metrics.store_corrupt.get(), 1);
    // The next commit comes after the move (one queue, in order).
    stored(&store, ev(9), 0b11).await;
    assert_eq!(metrics.integrity.quarantined.get(), 1);
    assert_eq!(store.len().unwrap(), 5, "the damaged record left the log");
    assert_eq!(metrics.store_events.get(), 5);
    let txn = store.db.get().unwrap().begin_read().unwrap();
    let listed = quarantine::list(&txn).unwrap();
    assert_eq!(listed.len(), 1);
    let entry = listed[0].1.as_ref().unwrap();
    assert_eq!(entry.source, quarantine::Source::Log { seq: 3 });
    assert!(entry.error.contains("checksum"), "{}", entry.error);
    drop(txn);
    close(store, join).await;

    // Not met again after a restart.
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    let s = store.clone();
    let a = tokio::task::spawn_blocking(move || read_all(&s, 0))
        .await
        .unwrap();
    assert_eq!(a, [1, 2, 4, 5, 6]);
    assert_eq!(metrics.store_corrupt.get(), 0);
    assert_eq!(metrics.integrity.quarantined.get(), 1);
    close(store, join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_session_rows_are_left_out_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (store, join) = Store::open(dir.path(), &[], opts(), Arc::default()).unwrap();
    for id in ["c1", "c2"] {
        store
            .change_state(StateChange::PutSession {
                client_id: id.into(),
                record: vec![3, 1, 2, 3],
            })
            .await
            .unwrap();
        for f in ["x/#", "y/+"] {
            store
                .change_state(StateChange::PutSubscription {
                    client_id: id.into(),
                    filter: f.into(),
                    options: vec![1, 9],
                })
                .await
                .unwrap();
        }
    }
    stored(&store, ev(0), 0).await;
    close(store, join).await;
    {
        let db = Database::create(dir.path().join("ferry.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SESSIONS).unwrap();
            let mut bytes = t.get("c1").unwrap().unwrap().value().to_vec();
            assert_eq!(bytes[0], seal::SEALED);
            *bytes.last_mut().unwrap() ^= 0x10;
            t.insert("c1", bytes.as_slice()).unwrap();
            let mut subs = txn.open_table(SESSION_SUBS).unwrap();
            let mut bytes = subs.get(("c2", "y/+")).unwrap().unwrap().value().to_vec();
            bytes[2] ^= 0x01; // in the checksum itself
            subs.insert(("c2", "y/+"), bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &[], opts(), metrics.clone()).unwrap();
    let sessions = store.load_sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].client_id, "c2");
    assert_eq!(
        sessions[0].record,
        vec![3, 1, 2, 3],
        "the seal is taken off"
    );
    assert_eq!(sessions[0].subs, vec![("x/#".to_string(), vec![1, 9])]);
    assert_eq!(metrics.store_corrupt.get(), 2);
    stored(&store, ev(1), 0).await;
    assert_eq!(metrics.integrity.quarantined.get(), 2);
    // The damaged session went whole (its subscriptions too), as an expired one would.
    let sessions = store.load_sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(metrics.store_corrupt.get(), 2);
    close(store, join).await;
}

fn refusal(seq: u64, upstream: &str) -> deadletter::Refusal {
    deadletter::Refusal {
        upstream: upstream.into(),
        bit: if upstream == "a" { 0 } else { 1 },
        seq,
        reason: "0x87".into(),
        detail: "PUBACK reason code 0x87 (not authorized)".into(),
        attempts: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_kept_listed_replayed_at_the_end_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    let mut e = Event::new(
        "s/1".into(),
        Bytes::from_static(b"refused"),
        1,
        false,
        Origin::Mqtt,
    );
    e.user_properties.push(("k".into(), "v".into()));
    stored(&store, Arc::new(e), 0b11).await;
    for i in 1..4 {
        stored(&store, ev(i), 0b11).await;
    }
    assert!(store.dead_letter(refusal(1, "a")).await.unwrap());
    assert!(store.dead_letter(refusal(3, "a")).await.unwrap());
    // Again after a crash: the same row, not a second one.
    assert!(store.dead_letter(refusal(3, "a")).await.unwrap());
    assert!(
        !store.dead_letter(refusal(99, "a")).await.unwrap(),
        "no such record"
    );
    assert_eq!(metrics.integrity.dead_letters.get(), 2);
    assert!(
        metrics
            .render()
            .contains("ferry_upstream_dead_letters_total{upstream=\"a\",reason=\"0x87\"} 3\n")
    );
    // Upstream a passes them; b still owes everything: the records stay in the log for b.
    store.advance_cursor(0, 4).await.unwrap();
    stored(&store, ev(4), 0b10).await;
    close(store, join).await;

    let db = Database::create(dir.path().join("ferry.redb")).unwrap();
    {
        let txn = db.begin_read().unwrap();
        let listed = deadletter::list(&txn, Some("a")).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|l| (l.seq, l.upstream.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a"), (3, "a")]
        );
        let letter = listed[0].letter.as_ref().unwrap();
        assert_eq!((letter.reason.as_str(), letter.attempts), ("0x87", 3));
        let rec = record::decode(1, &letter.record).unwrap();
        assert_eq!(&rec.payload[..], b"refused");
        assert!(deadletter::list(&txn, Some("b")).unwrap().is_empty());
    }
    {
        let txn = db.begin_write().unwrap();
        let replayed = deadletter::replay(&txn, Some("a")).unwrap();
        assert_eq!(
            replayed,
            deadletter::Replayed {
                replayed: 2,
                skipped: 0
            }
        );
        txn.commit().unwrap();
    }
    drop(db);

    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    assert_eq!(metrics.integrity.dead_letters.get(), 0);
    let s = store.clone();
    let (recs, _) = tokio::task::spawn_blocking(move || s.read_after(4, 100, 0).unwrap())
        .await
        .unwrap();
    // At the end of a's backlog, for a only, in their old order, with every field.
    assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(&recs[0].payload[..], b"refused");
    assert_eq!(
        recs[0].user_properties,
        [("k".to_string(), "v".to_string())]
    );
    assert_eq!(recs[0].dests, 0b01);
    assert_eq!(recs[1].topic, ev(2).topic.to_string()); // seq 3
    assert!(store.dead_letter(refusal(6, "a")).await.unwrap());
    close(store, join).await;

    let db = Database::create(dir.path().join("ferry.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    assert_eq!(deadletter::purge(&txn, Some("b")).unwrap(), 0);
    assert_eq!(deadletter::purge(&txn, None).unwrap(), 1);
    txn.commit().unwrap();
    let txn = db.begin_read().unwrap();
    assert!(deadletter::list(&txn, None).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_quota_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string()];
    let metrics = Arc::new(Metrics::default());
    let mut o = opts();
    o.limits.dead_letter_bytes = 64 * 1024;
    let (store, join) = Store::open(dir.path(), &names, o, metrics.clone()).unwrap();
    let big = Bytes::from(vec![7u8; 20_000]);
    for _ in 0..5 {
        let e = Event::new("s/big".into(), big.clone(), 1, false, Origin::Mqtt);
        stored(&store, Arc::new(e), 1).await;
    }
    for seq in 1..=5 {
        assert!(store.dead_letter(refusal(seq, "a")).await.unwrap());
    }
    // 20 KB each: three fit in 64 KiB.
    assert_eq!(metrics.integrity.dead_letters.get(), 3);
    assert_eq!(metrics.integrity.dead_letters_dropped.get(), 2);
    assert!(metrics.integrity.dead_letter_bytes.get() <= 64 * 1024);
    close(store, join).await;
    let db = Database::create(dir.path().join("ferry.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let seqs: Vec<u64> = deadletter::list(&txn, None)
        .unwrap()
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
}

/// Zeroes the 4 KiB page of `file` holding the first copy of `needle`; returns its offset.
fn zero_page_with(file: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in the file");
    let page = at / 4096 * 4096;
    bytes[page..page + 4096].fill(0);
    std::fs::write(file, bytes).unwrap();
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeroed_log_page_costs_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string()];
    let (store, join) = Store::open(dir.path(), &names, opts(), Arc::default()).unwrap();
    for i in 0..2000u32 {
        let payload = Bytes::from(format!("payload-{i:05}-{}", "x".repeat(180)));
        let e = Event::new("s/zero".into(), payload, 1, false, Origin::Mqtt);
        stored(&store, Arc::new(e), 1).await;
    }
    close(store, join).await;
    zero_page_with(&dir.path().join("ferry.redb"), b"payload-01000-");

    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, opts(), metrics.clone()).unwrap();
    let s = store.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut seqs = Vec::new();
        let mut after = 0;
        loop {
            let (recs, last) = s.read_after(after, 256, 0).unwrap();
            seqs.extend(recs.iter().map(|r| r.seq));
            if last == after {
                break;
            }
            after = last;
        }
        seqs
    })
    .await
    .unwrap();
    let lost = 2000 - read.len();
    assert!(lost > 0 && lost < 40, "lost {lost}");
    assert_eq!(metrics.store_corrupt.get(), lost as u64);
    assert!(read.windows(2).all(|w| w[0] < w[1]));
    // Once the cursor passes it, the damaged segment goes whole like any other.
    store.advance_cursor(0, 2000).await.unwrap();
    stored(&store, ev(1), 1).await;
    stored(&store, ev(2), 1).await;
    assert_eq!(store.len().unwrap(), 2);
    assert_eq!(
        metrics.store_events.get(),
        2,
        "the accounting let go of the segment"
    );
    let txn = store.db.get().unwrap().begin_read().unwrap();
    let tables: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|h| redb::TableHandle::name(&h).to_string())
        .collect();
    assert!(
        tables.contains(&format!("{}log.{:013}", segments::DAMAGED_PREFIX, 0)),
        "{tables:?}"
    );
    drop(txn);
    close(store, join).await;
}
