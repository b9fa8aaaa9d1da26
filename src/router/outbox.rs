//! A subscriber's outbox: the bounded queue between the router and one connection.
//!
//! The router never waits on an outbox: a full one refuses the delivery, the refusal is
//! counted, and the publisher carries on. That is how a slow subscriber is kept from
//! stalling publishers (invariant 4 in docs/ARCHITECTURE.md).

use crate::budget::MemoryPool;
use crate::event::Event;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;

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
}

/// The sending side of a connection's delivery queue, bounded in messages (the channel's
/// capacity) and in bytes (`max_bytes`).
#[derive(Debug)]
pub struct Outbox {
    conn_id: u64,
    tx: mpsc::Sender<Delivery>,
    pending_bytes: AtomicUsize,
    max_bytes: usize,
    dropped: AtomicU64,
    overflowed: AtomicBool,
    /// Set while an MQTT persistent session has no connection: QoS 0 is not queued then.
    offline: AtomicBool,
    /// The budget share all outboxes draw from.
    pool: Arc<MemoryPool>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// Creates an outbox holding at most `capacity` deliveries and `max_bytes` bytes.
    pub fn new(
        conn_id: u64,
        capacity: usize,
        max_bytes: usize,
        pool: Arc<MemoryPool>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Outbox>, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let outbox = Outbox {
            conn_id,
            tx,
            pending_bytes: AtomicUsize::new(0),
            max_bytes,
            dropped: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            offline: AtomicBool::new(false),
            pool,
            metrics,
        };
        (Arc::new(outbox), rx)
    }

    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    /// Queues a delivery without waiting. Returns false (and counts the drop) when the
    /// subscriber is too far behind or gone.
    pub fn offer(&self, delivery: Delivery) -> bool {
        if delivery.qos == 0 && self.offline.load(Ordering::Relaxed) {
            self.metrics.dropped_offline_qos0.inc();
            return false;
        }
        let weight = delivery.event.weight();
        let pending = self.pending_bytes.fetch_add(weight, Ordering::Relaxed);
        if pending + weight > self.max_bytes || !self.pool.reserve(weight) {
            self.pending_bytes.fetch_sub(weight, Ordering::Relaxed);
            self.refuse();
            return false;
        }
        match self.tx.try_send(delivery) {
            Ok(()) => true,
            Err(_) => {
                self.pending_bytes.fetch_sub(weight, Ordering::Relaxed);
                self.pool.release(weight);
                self.refuse();
                false
            }
        }
    }

    fn refuse(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.metrics.dropped_slow_subscriber.inc();
        // Logged once per episode (until `take_overflow` re-arms it), counted always.
        if !self.overflowed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                subscriber = self.conn_id,
                max_messages = self.tx.max_capacity(),
                max_bytes = self.max_bytes,
                "subscriber queue full: dropping its deliveries (counted in ferry_events_dropped_total)"
            );
        }
    }

    /// The connection took `delivery` off the queue; its bytes no longer count.
    pub fn taken(&self, delivery: &Delivery) {
        let weight = delivery.event.weight();
        self.pending_bytes.fetch_sub(weight, Ordering::Relaxed);
        self.pool.release(weight);
    }

    /// True once, after the outbox refused a delivery since the last call.
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }

    /// Marks the owning session as (dis)connected.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Outbox {
    /// Deliveries still queued when the last handle goes are freed with the channel:
    /// give their bytes back to the shared pool.
    fn drop(&mut self) {
        self.pool
            .release(self.pending_bytes.load(Ordering::Relaxed));
    }
}
