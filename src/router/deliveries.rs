//! The queue inside an outbox: many senders (the router, on any publisher's task), one
//! receiver (the subscriber's connection).
//!
//! Not tokio's mpsc channel: that allocates a block of 32 slots (about 2 KiB with
//! [`Delivery`]) when it is made, so every connection and every offline session paid for
//! it while idle. This one holds a `VecDeque` that allocates when something is queued
//! and gives its memory back once drained. Its bounds are the outbox's (count and bytes,
//! checked before [`Sender::send`]), not its own.

use super::outbox::Delivery;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// A drained queue that grew past this many slots gives its memory back.
const KEEP_SLOTS: usize = 64;

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<Delivery>>,
    /// One permit per wake-up: a send while the receiver is between looking and waiting
    /// leaves a permit, so the wake-up is never lost.
    ready: Notify,
    receiver_gone: AtomicBool,
    senders_gone: AtomicBool,
    /// Set by [`Sender::revoke`], taken by the receiver's next `recv`.
    revoked: AtomicBool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Delivery>> {
        // A panic while holding the lock leaves a consistent VecDeque: keep using it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side, owned by the outbox.
#[derive(Debug)]
pub struct Sender {
    shared: Arc<Shared>,
}

/// The receiving side, owned by the subscriber's connection (or its parked session).
#[derive(Debug)]
pub struct Deliveries {
    shared: Arc<Shared>,
}

/// The receiver is gone: nobody will take the delivery (it is dropped).
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

/// Nothing queued now (or the sender is gone).
#[derive(Debug, PartialEq, Eq)]
pub struct Empty;

pub fn channel() -> (Sender, Deliveries) {
    let shared = Arc::new(Shared::default());
    (
        Sender {
            shared: shared.clone(),
        },
        Deliveries { shared },
    )
}

impl Sender {
    pub fn send(&self, delivery: Delivery) -> Result<(), Closed> {
        if self.shared.receiver_gone.load(Ordering::Acquire) {
            return Err(Closed);
        }
        self.shared.queue().push_back(delivery);
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Sender {
    /// Ends the receiver's current or next wait with None (its connection closes),
    /// once: see [`Deliveries::take_revoked`].
    pub fn revoke(&self) {
        self.shared.revoked.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }

    pub fn clear_revoked(&self) {
        self.shared.revoked.store(false, Ordering::Release);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.senders_gone.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }
}

impl Deliveries {
    /// The next delivery; None once the sender is gone and the queue is empty, or when
    /// the subscriber was revoked ([`Deliveries::take_revoked`] tells which).
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if self.shared.revoked.load(Ordering::Acquire) {
                return None;
            }
            if let Ok(d) = self.try_recv() {
                return Some(d);
            }
            if self.shared.senders_gone.load(Ordering::Acquire) {
                return None;
            }
            self.shared.ready.notified().await;
        }
    }

    /// True (once) when `recv` ended because a reload revoked this subscriber.
    pub fn take_revoked(&mut self) -> bool {
        self.shared.revoked.swap(false, Ordering::AcqRel)
    }

    pub fn try_recv(&mut self) -> Result<Delivery, Empty> {
        let mut queue = self.shared.queue();
        let d = queue.pop_front().ok_or(Empty)?;
        if queue.is_empty() && queue.capacity() > KEEP_SLOTS {
            *queue = VecDeque::new();
        }
        Ok(d)
    }
}

impl Drop for Deliveries {
    /// Later sends fail; what is queued now is freed with the last handle.
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Origin};
    use bytes::Bytes;

    fn delivery(n: u8) -> Delivery {
        let e = Event::new("t".into(), Bytes::from(vec![n]), 0, false, Origin::Mqtt);
        Delivery::new(Arc::new(e), 0)
    }

    #[tokio::test]
    async fn deliveries_come_out_in_order_and_end_when_the_sender_goes() {
        let (tx, mut rx) = channel();
        for n in 0..3 {
            tx.send(delivery(n)).unwrap();
        }
        for n in 0..3 {
            assert_eq!(rx.recv().await.unwrap().event.payload[0], n);
        }
        assert_eq!(rx.try_recv().unwrap_err(), Empty);
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = channel();
        let waiter = tokio::spawn(async move { rx.recv().await.map(|d| d.event.payload[0]) });
        tokio::task::yield_now().await;
        tx.send(delivery(7)).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(7));
    }

    #[test]
    fn a_send_after_the_receiver_went_fails() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(delivery(1)), Err(Closed));
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let (tx, mut rx) = channel();
        for _ in 0..1000 {
            tx.send(delivery(0)).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(tx.shared.queue().capacity(), 0);
    }
}
