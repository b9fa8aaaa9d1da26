use super::*;
use crate::event::Origin;
use bytes::Bytes;

fn opts() -> StoreOptions {
    StoreOptions {
        cache_size: 1 << 20,
        max_batch: 64,
        linger: std::time::Duration::ZERO,
        queue: 128,
    }
}

fn ev(i: u32) -> Arc<Event> {
    Arc::new(Event::new(
        format!("t/{i}").into(),
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

    // "a" acks up to 50, "b" up to 30: everything <= 30 goes.
    store.advance_cursor(0, 50).await.unwrap();
    store.advance_cursor(1, 30).await.unwrap();
    store
        .append(ev(999), 1 << ba)
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.len().unwrap(), 101 - 30);
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
    assert_eq!(cur, vec![50, 30, 101]);
    assert_eq!(store.upstreams()[1].bit, bb);
    let seq = store
        .append(ev(1000), 1)
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seq, 102);
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
        store
            .append(ev(i), 1)
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap();
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
    assert_eq!(
        store
            .append(ev(9), 1)
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap(),
        6
    );
    store.close().await;
    drop(store);
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
}
