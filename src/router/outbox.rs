//! A subscriber's outbox: the bounded queue between the router and one connection.
//!
//! The router never waits on an outbox: a full one refuses the delivery, the refusal is
//! counted, and the publisher carries on. A queue past its high-water mark (half its
//! limits) asks the publisher to wait a little instead ([`Offer::Stall`]): the publisher
//! waits in [`Outbox::wait_room`], outside the router, for at most the configured stall.
//! So a burst into a healthy subscriber is slowed, not dropped, and a subscriber that
//! stops reading costs each publisher one stall until it moves again, then drops
//! (invariants 4 and 5 in docs/ARCHITECTURE.md).

use crate::budget::MemoryPool;
use crate::event::Event;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::Notify;

pub use super::deliveries::Deliveries;

/// One message on its way to one subscriber connection.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Arc<Event>,
    /// The QoS to deliver at: min(publish QoS, granted QoS).
    pub qos: u8,
    /// Opaque to the router; the session's own handle for the subscription (NATS sid slot).
    pub tag: u64,
    /// Deliver with the RETAIN flag (retained on subscribe, or MQTT 5 retain-as-published).
    pub retain: bool,
    /// MQTT 5 subscription identifiers of every matching subscription of this client.
    /// Fixed capacity: identifiers past the fourth are not sent (the message still is).
    pub sub_ids: SubIds,
}

/// Subscription identifiers carried by one delivery.
pub type SubIds = heapless::Vec<u32, 4>;

impl Delivery {
    /// A delivery of `event` at `qos` with no subscription metadata.
    pub fn new(event: Arc<Event>, qos: u8) -> Delivery {
        Delivery {
            event,
            qos,
            tag: 0,
            retain: false,
            sub_ids: SubIds::new(),
        }
    }

    /// Bytes this delivery holds while queued: the event (counted for every subscriber
    /// it waits for, which over-counts a shared event, never under-counts) and the
    /// queue slot.
    pub fn weight(&self) -> usize {
        self.event.weight() + std::mem::size_of::<Delivery>()
    }
}

/// What [`Outbox::offer`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// Queued, and the queue is past its high-water mark: the publisher should wait
    /// in [`Outbox::wait_room`] before publishing more.
    Stall,
    /// Not queued (full, offline QoS 0, or the connection is gone); counted.
    Dropped,
}

/// Where the QoS 1/2 deliveries of a persistent MQTT session go instead of the
/// in-memory queue: the store's queue of that session (`store/queue.rs`), so they
/// survive a restart and an offline session holds no memory. The router hands them to
/// the hub ([`super::Routed::spooled`]), which writes them; the session's connection
/// reads them back as its in-flight window allows.
#[derive(Debug)]
pub struct Spool {
    /// The session's client id: the key of its queue.
    pub client_id: Arc<str>,
    /// `mqtt.max_queued_bytes` and `mqtt.max_queued`: the queue's bounds on disk.
    pub bound: crate::store::QueueBound,
    /// Told by the store writer when a row of this session was committed or refused.
    pub signal: Arc<crate::store::QueueSignal>,
}

/// The sending side of a connection's delivery queue, bounded in messages (`max_count`,
/// 0: none) and in bytes (`max_bytes`, at most a quarter of the shared pool; an offline
/// session at most a quarter of the offline part).
#[derive(Debug)]
pub struct Outbox {
    conn_id: u64,
    tx: super::deliveries::Sender,
    pending_bytes: AtomicUsize,
    pending_count: AtomicUsize,
    max_bytes: usize,
    max_offline_bytes: usize,
    max_count: usize,
    /// Part of `pending_bytes` charged to the pool's offline part.
    offline_bytes: AtomicUsize,
    dropped: AtomicU64,
    overflowed: AtomicBool,
    /// Set while an MQTT persistent session has no connection: QoS 0 is not queued then.
    offline: AtomicBool,
    /// Set when a stall ran out: publishers stop waiting for this subscriber until its
    /// connection takes a delivery again.
    lagging: AtomicBool,
    /// Publishers waiting in `wait_room`, so `taken` wakes them only when someone waits.
    waiters: AtomicUsize,
    room: Notify,
    /// The budget share all outboxes draw from.
    pool: Arc<MemoryPool>,
    metrics: Arc<Metrics>,
    /// Bytes of client-made state (subscriptions) this connection holds in the state
    /// share of the budget; at most an eighth of that share (`charge`).
    state_bytes: AtomicUsize,
    /// Set for a persistent session when there is a store: its QoS 1/2 deliveries are
    /// queued there, not here.
    spool: std::sync::OnceLock<Spool>,
}

impl Outbox {
    /// Creates an outbox holding at most `max_count` deliveries (0: no count limit) and
    /// `max_bytes` bytes (capped by the pool's per-subscriber share).
    pub fn new(
        conn_id: u64,
        max_count: usize,
        max_bytes: usize,
        pool: Arc<MemoryPool>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Outbox>, Deliveries) {
        let (tx, rx) = super::deliveries::channel();
        let outbox = Outbox {
            conn_id,
            tx,
            pending_bytes: AtomicUsize::new(0),
            pending_count: AtomicUsize::new(0),
            max_bytes: max_bytes.min(pool.per_subscriber(false)),
            max_offline_bytes: max_bytes.min(pool.per_subscriber(true)),
            max_count: if max_count == 0 {
                usize::MAX
            } else {
                max_count
            },
            offline_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            offline: AtomicBool::new(false),
            lagging: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            room: Notify::new(),
            pool,
            metrics,
            state_bytes: AtomicUsize::new(0),
            spool: std::sync::OnceLock::new(),
        };
        (Arc::new(outbox), rx)
    }

    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    /// A reload removed this subscriber's rights: its connection is told to close (its
    /// next wait for a delivery ends). False for an MQTT session that has no connection
    /// now (nothing to close; its subscriptions already pass nothing they may not).
    pub fn revoke(&self) -> bool {
        if self.offline.load(Ordering::Relaxed) {
            return false;
        }
        self.tx.revoke();
        true
    }

    /// Sends this outbox's QoS 1/2 deliveries to the store queue `spool` from now on
    /// (once; later calls are ignored).
    pub fn set_spool(&self, spool: Spool) {
        let _ = self.spool.set(spool);
    }

    /// The store queue of a persistent session, if its deliveries go there.
    pub fn spool(&self) -> Option<&Spool> {
        self.spool.get()
    }

    /// Queues a delivery without waiting.
    pub fn offer(&self, delivery: Delivery) -> Offer {
        let offline = self.offline.load(Ordering::Relaxed);
        if delivery.qos == 0 && offline {
            self.metrics.dropped_offline_qos0.inc();
            return Offer::Dropped;
        }
        let weight = delivery.weight();
        let max_bytes = if offline {
            self.max_offline_bytes
        } else {
            self.max_bytes
        };
        let bytes = self.pending_bytes.fetch_add(weight, Ordering::SeqCst) + weight;
        let count = self.pending_count.fetch_add(1, Ordering::SeqCst) + 1;
        let reserved = bytes <= max_bytes
            && count <= self.max_count
            && if offline {
                self.pool.reserve_offline(weight)
            } else {
                self.pool.reserve(weight)
            };
        if !reserved {
            self.unqueue(weight);
            self.refuse(offline);
            return Offer::Dropped;
        }
        if offline {
            self.offline_bytes.fetch_add(weight, Ordering::Relaxed);
        }
        if self.tx.send(delivery).is_err() {
            // The connection is gone and nobody will take it.
            self.unqueue(weight);
            self.give_back(weight);
            return Offer::Dropped;
        }
        if !offline
            && (bytes > self.max_bytes / 2 || count > self.max_count / 2)
            && !self.lagging.load(Ordering::Relaxed)
        {
            Offer::Stall
        } else {
            Offer::Queued
        }
    }

    fn unqueue(&self, weight: usize) -> (usize, usize) {
        let bytes = self.pending_bytes.fetch_sub(weight, Ordering::SeqCst) - weight;
        let count = self.pending_count.fetch_sub(1, Ordering::SeqCst) - 1;
        (bytes, count)
    }

    /// Returns `weight` bytes to the pool, to its offline part first while this outbox
    /// holds any there.
    fn give_back(&self, weight: usize) {
        let offline = self
            .offline_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b - b.min(weight))
            })
            .map_or(0, |b| b.min(weight));
        if offline > 0 {
            self.pool.release_offline(offline);
        }
        self.pool.release(weight - offline);
    }

    fn refuse(&self, offline: bool) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if offline {
            self.metrics.dropped_offline_overflow.inc();
        } else {
            self.metrics.dropped_slow_subscriber.inc();
        }
        // Logged once per episode (until `take_overflow` re-arms it), counted always.
        if !self.overflowed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                subscriber = self.conn_id,
                queued = self.pending_count.load(Ordering::Relaxed),
                max_bytes = if offline {
                    self.max_offline_bytes
                } else {
                    self.max_bytes
                },
                offline,
                "subscriber queue full: dropping its deliveries (counted in ferry_events_dropped_total)"
            );
        }
    }

    /// True while the queue is past its high-water mark and publishers should wait.
    fn above_high_water(&self) -> bool {
        !self.offline.load(Ordering::Relaxed)
            && !self.lagging.load(Ordering::Relaxed)
            && (self.pending_bytes.load(Ordering::SeqCst) > self.max_bytes / 2
                || self.pending_count.load(Ordering::SeqCst) > self.max_count / 2)
    }

    /// Waits until the queue is back under its high-water mark, or `deadline`. A wait
    /// that runs out marks the subscriber as lagging: publishers stop waiting for it
    /// until its connection takes a delivery again (so a stuck subscriber costs each
    /// publisher one stall, and a slow one is waited for again as soon as it moves).
    /// Returns false when it ran out.
    pub async fn wait_room(&self, deadline: tokio::time::Instant) -> bool {
        let _waiting = Waiting::new(&self.waiters);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !self.above_high_water() {
                return true;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                if self.above_high_water() {
                    self.lagging.store(true, Ordering::Relaxed);
                    return false;
                }
                return true;
            }
        }
    }

    /// The connection took `delivery` off the queue; its bytes no longer count.
    pub fn taken(&self, delivery: &Delivery) {
        let weight = delivery.weight();
        let (bytes, count) = self.unqueue(weight);
        self.give_back(weight);
        // Taking anything shows the subscriber is alive, only slow: publishers wait for
        // it again (a stuck one takes nothing and stays lagging).
        self.lagging.store(false, Ordering::Relaxed);
        if self.waiters.load(Ordering::SeqCst) > 0
            && bytes <= self.max_bytes / 2
            && count <= self.max_count / 2
        {
            self.room.notify_waiters();
        }
    }

    /// True once, after the outbox refused a delivery since the last call.
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }

    /// Marks the owning session as (dis)connected. Going offline releases any publisher
    /// waiting for it: nobody reads an offline session's queue.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
        if offline {
            // A revocation the closed connection did not take is not the next one's.
            self.tx.clear_revoked();
            self.room.notify_waiters();
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Charges `bytes` of this connection's state (a subscription) to `pool`: they must
    /// fit under the connection's part (an eighth of the pool, so one client cannot take
    /// what all others need) and under the pool.
    pub fn charge(&self, bytes: usize, pool: &MemoryPool) -> bool {
        let held = self.state_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if held > pool.limit() / 8 || !pool.reserve(bytes) {
            self.state_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back `bytes` taken with [`Outbox::charge`].
    pub fn refund(&self, bytes: usize, pool: &MemoryPool) {
        self.state_bytes.fetch_sub(bytes, Ordering::Relaxed);
        pool.release(bytes);
    }

    /// Deliveries and bytes queued now.
    pub fn queued(&self) -> (usize, usize) {
        (
            self.pending_count.load(Ordering::Relaxed),
            self.pending_bytes.load(Ordering::Relaxed),
        )
    }
}

/// Counts a publisher in `Outbox::waiters` for as long as it waits (also when its wait
/// is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Waiting<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Outbox {
    /// Deliveries still queued when the last handle goes are freed with the channel:
    /// give their bytes back to the shared pool.
    fn drop(&mut self) {
        let offline = *self.offline_bytes.get_mut();
        self.pool.release_offline(offline);
        self.pool.release(*self.pending_bytes.get_mut() - offline);
    }
}
