//! Retention by priority (`[[forward]] priority` with `on_full = "drop_oldest"`), on a
//! real store: the lowest priority present loses first, oldest first within it, each
//! drop counted for its upstream and priority, and the segment masks survive a reopen.

use super::tests::{close, cost_of_ev, ev, opts, stored};
use super::*;

/// The seqs stored for `bit`, in order, and the seq the read reached.
async fn seqs_for(store: &Store, bit: u8) -> (Vec<u64>, u64) {
    let s = store.clone();
    let (records, last) = tokio::task::spawn_blocking(move || s.read_after(0, 1000, bit))
        .await
        .unwrap()
        .unwrap();
    (records.iter().map(|r| r.seq).collect(), last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lowest_priority_is_dropped_first_and_oldest_first_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let names: Vec<String> = ["u", "u.p7", "u.p2"].map(String::from).to_vec();
    let mut o = opts();
    o.limits.max_bytes = cost_of_ev() * 10;
    let (store, join) = Store::open(dir.path(), &names, o.clone(), metrics.clone()).unwrap();
    let bit = |name: &str| {
        store
            .upstreams()
            .iter()
            .find(|s| &*s.name == name)
            .map(|s| s.bit)
            .unwrap()
    };
    let (p5, p7, p2) = (bit("u"), bit("u.p7"), bit("u.p2"));
    // Seqs 1..=6 alternate priorities 2, 5, 7; 7..=10 are priority 5: the store is full.
    for (i, b) in [p2, p5, p7, p2, p5, p7, p5, p5, p5, p5]
        .into_iter()
        .enumerate()
    {
        assert_eq!(stored(&store, ev(i as u32), 1 << b).await, i as u64 + 1);
    }
    assert_eq!(store.len().unwrap(), 10);
    // Three more of priority 7: both priority 2 events go (1, 4), then the oldest
    // priority 5 one (2); no priority 7 event is touched.
    for i in 10..13u32 {
        stored(&store, ev(i), 1 << p7).await;
    }
    assert_eq!(store.len().unwrap(), 10);
    assert_eq!(seqs_for(&store, p2).await, (vec![], 13));
    assert_eq!(seqs_for(&store, p5).await, (vec![5, 7, 8, 9, 10], 13));
    assert_eq!(seqs_for(&store, p7).await, (vec![3, 6, 11, 12, 13], 13));
    let m = metrics.upstream("u");
    assert_eq!(m.dropped_full.get(), 3);
    let by_priority: Vec<u64> = m.dropped_full_by_priority.iter().map(|c| c.get()).collect();
    assert_eq!(by_priority, vec![0, 0, 2, 0, 0, 1, 0, 0, 0, 0]);
    let text = metrics.render();
    assert!(
        text.contains("ferry_upstream_priority_dropped_total{upstream=\"u\",priority=\"2\"} 2\n"),
        "{text}"
    );
    assert!(
        !text.contains("upstream=\"u.p7\""),
        "lanes count toward their upstream: {text}"
    );
    close(store, join).await;

    // After a reopen the segment's priorities are read back: one more priority 7 event
    // pushes out the oldest priority 5 one (5), still no priority 7 one.
    let metrics = Arc::new(Metrics::default());
    let (store, join) = Store::open(dir.path(), &names, o, metrics.clone()).unwrap();
    stored(&store, ev(13), 1 << p7).await;
    assert_eq!(seqs_for(&store, p5).await, (vec![7, 8, 9, 10], 14));
    assert_eq!(seqs_for(&store, p7).await, (vec![3, 6, 11, 12, 13, 14], 14));
    assert_eq!(metrics.upstream("u").dropped_full_by_priority[5].get(), 1);
    close(store, join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_priorities_still_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let names = vec!["u".to_string(), "v".to_string()];
    let mut o = opts();
    o.limits.max_bytes = cost_of_ev() * 4;
    let (store, join) = Store::open(dir.path(), &names, o, metrics.clone()).unwrap();
    for i in 0..6u32 {
        stored(&store, ev(i), if i % 2 == 0 { 1 } else { 2 }).await;
    }
    assert_eq!(seqs_for(&store, 0).await, (vec![3, 5], 6));
    assert_eq!(seqs_for(&store, 1).await, (vec![4, 6], 6));
    assert_eq!(metrics.upstream("u").dropped_full_by_priority[5].get(), 1);
    close(store, join).await;
}

#[test]
fn lane_names_round_trip() {
    assert_eq!(lane_name("cloud", 5), "cloud");
    assert_eq!(lane_name("cloud", 7), "cloud.p7");
    assert_eq!(lane_name("cloud", 0), "cloud.p0");
    for (name, upstream, priority) in [
        ("cloud", "cloud", 5),
        ("cloud.p7", "cloud", 7),
        ("cloud.p0", "cloud", 0),
        ("my-p1", "my-p1", 5),
        ("a_b", "a_b", 5),
    ] {
        assert_eq!(
            (lane_upstream(name), lane_priority(name)),
            (upstream, priority),
            "{name}"
        );
    }
}
