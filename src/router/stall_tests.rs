//! The outbox's high-water mark, the publisher stall, and the offline part of the pool.

use super::*;
use crate::budget::MemoryPool;
use crate::event::Origin;
use crate::metrics::Metrics;
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;

fn delivery(qos: u8) -> Delivery {
    let e = Event::new(
        "t".into(),
        Bytes::from_static(b"x"),
        qos,
        false,
        Origin::Mqtt,
    );
    Delivery::new(Arc::new(e), qos)
}

fn weight() -> usize {
    delivery(0).weight()
}

/// An outbox holding at most `n` deliveries by bytes, in a pool that is not the limit.
fn outbox(n: usize) -> (Arc<Outbox>, Deliveries, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let (o, rx) = Outbox::new(1, 0, weight() * n, MemoryPool::unlimited(), metrics.clone());
    (o, rx, metrics)
}

#[test]
fn past_half_the_queue_asks_publishers_to_wait() {
    let (o, _rx, _) = outbox(8);
    for _ in 0..4 {
        assert_eq!(o.offer(delivery(0)), Offer::Queued);
    }
    assert_eq!(
        o.offer(delivery(0)),
        Offer::Stall,
        "five of eight is past half"
    );
    for _ in 0..3 {
        assert_eq!(o.offer(delivery(0)), Offer::Stall);
    }
    assert_eq!(o.offer(delivery(0)), Offer::Dropped, "full");
    assert_eq!(o.dropped(), 1);
    assert_eq!(o.queued(), (8, weight() * 8));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_publisher_resumes_as_soon_as_the_subscriber_drains() {
    let (o, mut rx, _) = outbox(8);
    for _ in 0..6 {
        o.offer(delivery(0));
    }
    let waiter = {
        let o = o.clone();
        tokio::spawn(async move { o.wait_room(Instant::now() + Duration::from_secs(1)).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "six of eight: waits");
    let d = rx.try_recv().unwrap();
    o.taken(&d);
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "five of eight: still past half");
    let started = Instant::now();
    let d = rx.try_recv().unwrap();
    o.taken(&d);
    assert!(waiter.await.unwrap(), "four of eight: room");
    assert_eq!(started.elapsed(), Duration::ZERO, "woken, not timed out");
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_does_not_drain_costs_one_stall_then_lags() {
    let (o, mut rx, _) = outbox(8);
    for _ in 0..5 {
        o.offer(delivery(0));
    }
    let started = Instant::now();
    let stall = Duration::from_millis(50);
    assert!(!o.wait_room(Instant::now() + stall).await, "ran out");
    assert_eq!(started.elapsed(), stall);
    // Lagging: publishers no longer wait for it, and it drops once full.
    assert_eq!(o.offer(delivery(0)), Offer::Queued);
    assert!(o.wait_room(Instant::now() + stall).await);
    assert_eq!(started.elapsed(), stall, "no second wait");
    for _ in 0..2 {
        assert_eq!(o.offer(delivery(0)), Offer::Queued);
    }
    assert_eq!(o.offer(delivery(0)), Offer::Dropped, "full");
    // It moves again: it is waited for again while past half.
    let d = rx.try_recv().unwrap();
    o.taken(&d);
    assert_eq!(o.offer(delivery(0)), Offer::Stall);
}

#[tokio::test(start_paused = true)]
async fn a_session_going_offline_releases_waiting_publishers() {
    let (o, _rx, _) = outbox(8);
    for _ in 0..6 {
        o.offer(delivery(1));
    }
    let waiter = {
        let o = o.clone();
        tokio::spawn(async move { o.wait_room(Instant::now() + Duration::from_secs(1)).await })
    };
    tokio::task::yield_now().await;
    let started = Instant::now();
    o.set_offline(true);
    assert!(waiter.await.unwrap());
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[test]
fn offline_sessions_queue_qos_1_in_their_own_part_of_the_pool() {
    // Offline part: a quarter of 64 deliveries = 16; one session: a quarter of that.
    let pool = MemoryPool::new(weight() * 64);
    let metrics = Arc::new(Metrics::default());
    let (o, mut rx) = Outbox::new(1, 0, usize::MAX, pool.clone(), metrics.clone());
    o.set_offline(true);
    assert_eq!(
        o.offer(delivery(0)),
        Offer::Dropped,
        "QoS 0 is not queued offline"
    );
    assert_eq!(metrics.dropped_offline_qos0.get(), 1);
    for _ in 0..4 {
        assert_eq!(
            o.offer(delivery(1)),
            Offer::Queued,
            "offline: never a stall"
        );
    }
    assert_eq!(
        o.offer(delivery(1)),
        Offer::Dropped,
        "its own share is full"
    );
    assert_eq!(metrics.dropped_offline_overflow.get(), 1);
    assert_eq!(pool.offline_used(), weight() * 4);
    // Back online: the rest of the pool is there, and taking gives back the offline part.
    o.set_offline(false);
    let d = rx.try_recv().unwrap();
    o.taken(&d);
    assert_eq!(pool.offline_used(), weight() * 3);
    assert_eq!(o.offer(delivery(1)), Offer::Queued);
    assert_eq!(pool.used(), weight() * 4);
    drop(rx);
    drop(o);
    assert_eq!((pool.used(), pool.offline_used()), (0, 0));
}
