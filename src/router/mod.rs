//! The router: one subscription trie for both protocols, and the fan-out to outboxes.
//!
//! Routing takes a read lock and never awaits, so publishers on every connection route in
//! parallel; only (un)subscribe takes the write lock. Fan-out clones an `Arc<Event>` per
//! subscriber, never the payload.

mod deliveries;
mod outbox;
mod trie;

pub use outbox::{Deliveries, Delivery, Offer, Outbox, Spool, SubIds};
pub use trie::Subscription;

use crate::budget::MemoryPool;
use crate::event::Event;
use crate::policy::{Grant, Identity, ReadGuard};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use trie::Trie;

pub struct Router {
    trie: RwLock<Trie>,
    /// Rotates the pick among queue-group members.
    rotation: AtomicUsize,
    /// The budget share every client's subscriptions draw from (`Budget::state`); one
    /// connection may hold at most an eighth of it (`Outbox::charge`).
    pool: Arc<MemoryPool>,
}

/// A reload's grant of one subscription: `(who, filter)` to the subscriber's identity
/// under the new policy and what it may read (None: its credentials no longer hold).
pub type Regrant<'a> = dyn FnMut(&Identity, &str) -> Option<(Identity, Grant)> + 'a;

/// A subscription did not fit in the memory budget (its client's part or everyone's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

/// Bytes one subscription holds: its filter in the trie and in the session's own table,
/// the trie entry and node, and the session's entry.
pub fn subscription_weight(filter: &str) -> usize {
    2 * filter.len() + 256
}

impl Default for Router {
    fn default() -> Router {
        Router::with_pool(MemoryPool::unlimited())
    }
}

/// What happened to one published event locally.
#[derive(Debug, Default, Clone)]
pub struct Routed {
    pub delivered: usize,
    pub dropped: usize,
    /// Subscribers whose queue this event took past its high-water mark: the publisher
    /// should wait for them (`Outbox::wait_room`) before publishing more.
    pub stalled: Vec<Arc<Outbox>>,
    /// QoS 1/2 deliveries to persistent sessions, for the hub to queue in the store
    /// (counted in `delivered`).
    pub spooled: Vec<(Arc<Outbox>, Delivery)>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// A router whose subscriptions are charged to `pool`.
    pub fn with_pool(pool: Arc<MemoryPool>) -> Router {
        Router {
            trie: RwLock::new(Trie::default()),
            rotation: AtomicUsize::new(0),
            pool,
        }
    }

    /// Adds or replaces (same connection and key on the same filter) a subscription.
    /// The filter must have been validated by the caller. A new subscription is charged
    /// to the budget first: `NoRoom` when it does not fit (nothing was changed then).
    pub fn subscribe(&self, filter: &str, sub: Subscription) -> Result<(), NoRoom> {
        let mut trie = self.trie.write().unwrap_or_else(|e| e.into_inner());
        if !trie.contains(filter, sub.outbox.conn_id(), sub.key)
            && !sub.outbox.charge(subscription_weight(filter), &self.pool)
        {
            return Err(NoRoom);
        }
        trie.insert(filter, sub);
        Ok(())
    }

    /// Removes the subscription of `conn_id`/`key` on `filter`; true if there was one.
    pub fn unsubscribe(&self, filter: &str, conn_id: u64, key: u64) -> bool {
        let removed = {
            let mut trie = self.trie.write().unwrap_or_else(|e| e.into_inner());
            trie.remove(filter, conn_id, key)
        };
        match removed {
            Some(sub) => {
                sub.outbox.refund(subscription_weight(filter), &self.pool);
                true
            }
            None => false,
        }
    }

    /// Grants every subscription again after a config reload: `grant(who, filter)` gives
    /// the subscriber's identity under the new policy (None: its credentials no longer
    /// hold) and what it may read of the filter. A subscription keeps its place and takes
    /// the new identity and read check; one now denied passes nothing from here on (and
    /// stays, so the router and the session's own table stay in step). Returns the
    /// outboxes of online subscribers that could read something there before and nothing
    /// now (their rights were removed), each once, which are then revoked.
    pub fn regrant(&self, grant: &mut Regrant<'_>) -> Vec<Arc<Outbox>> {
        let mut lost: Vec<Arc<Outbox>> = Vec::new();
        let mut trie = self.trie.write().unwrap_or_else(|e| e.into_inner());
        trie.for_each_mut(&mut |filter, sub| {
            let could_read = sub.read.as_ref().is_none_or(|g| !g.reads_nothing());
            let (who, read) = match grant(&sub.who, filter) {
                None => (Identity::nobody(), Some(ReadGuard::nothing())),
                Some((who, Grant::Denied)) => (who, Some(ReadGuard::nothing())),
                Some((who, g)) => {
                    let read = g.guard();
                    (who, read)
                }
            };
            let reads_now = read.as_ref().is_none_or(|g| !g.reads_nothing());
            if could_read && !reads_now && !lost.iter().any(|o| Arc::ptr_eq(o, &sub.outbox)) {
                lost.push(sub.outbox.clone());
            }
            sub.who = who;
            sub.read = read;
        });
        drop(trie);
        lost.retain(|o| o.revoke());
        lost
    }

    /// Bytes all subscriptions hold, and the limit (`ferry_memory_used_bytes`).
    pub fn pool(&self) -> &MemoryPool {
        &self.pool
    }

    /// Delivers `event` to every matching subscriber, once per connection (MQTT) or once
    /// per subscription (NATS), and to one member of each queue group. `from_conn` is the
    /// publisher, skipped by subscriptions that asked for no local echo.
    pub fn route(&self, event: &Arc<Event>, from_conn: u64) -> Routed {
        let mut matched: Vec<Subscription> = Vec::new();
        let mut grouped: Vec<Subscription> = Vec::new();
        {
            let trie = self.trie.read().unwrap_or_else(|e| e.into_inner());
            trie.collect(&event.topic, &mut matched, &mut grouped);
        }
        // Echo suppression, and the read check of partly allowed subscriptions (before
        // a queue-group pick, so a member that may not read the topic is never picked).
        let keep = |s: &Subscription| {
            !(s.no_local && s.outbox.conn_id() == from_conn)
                && s.read.as_ref().is_none_or(|g| g.may_read(&event.topic))
        };
        matched.retain(keep);
        grouped.retain(keep);
        let mut targets = dedup(matched);
        self.pick_group_members(grouped, &mut targets);

        let mut routed = Routed::default();
        for (sub, sub_ids) in targets {
            let delivery = Delivery {
                event: event.clone(),
                qos: sub.qos.min(event.qos),
                tag: sub.tag,
                retain: sub.retain_as_published && event.retain,
                sub_ids,
            };
            if delivery.qos > 0 && sub.outbox.spool().is_some() {
                routed.delivered += 1;
                routed.spooled.push((sub.outbox, delivery));
                continue;
            }
            match sub.outbox.offer(delivery) {
                Offer::Queued => routed.delivered += 1,
                Offer::Stall => {
                    routed.delivered += 1;
                    routed.stalled.push(sub.outbox.clone());
                }
                Offer::Dropped => routed.dropped += 1,
            }
        }
        routed
    }

    fn pick_group_members(
        &self,
        mut grouped: Vec<Subscription>,
        out: &mut Vec<(Subscription, SubIds)>,
    ) {
        grouped.sort_by(|a, b| a.group.cmp(&b.group));
        let mut start = 0;
        while start < grouped.len() {
            let mut end = start + 1;
            while end < grouped.len() && grouped[end].group == grouped[start].group {
                end += 1;
            }
            let n = end - start;
            let pick = self.rotation.fetch_add(1, Ordering::Relaxed) % n;
            let member = grouped[start + pick].clone();
            let ids = sub_ids_of(&member);
            out.push((member, ids));
            start = end;
        }
    }
}

fn sub_ids_of(s: &Subscription) -> SubIds {
    let mut ids = SubIds::new();
    if !s.per_subscription && s.tag != 0 {
        let _ = ids.push(s.tag as u32);
    }
    ids
}

/// Merges subscriptions of one connection that overlap (MQTT: one delivery at the highest
/// granted QoS, carrying every subscription identifier); NATS subscriptions are
/// `per_subscription` and each gets its own copy.
fn dedup(mut subs: Vec<Subscription>) -> Vec<(Subscription, SubIds)> {
    subs.sort_by_key(|s| {
        (
            s.outbox.conn_id(),
            if s.per_subscription { s.key } else { 0 },
        )
    });
    let mut out: Vec<(Subscription, SubIds)> = Vec::with_capacity(subs.len());
    for s in subs {
        match out.last_mut() {
            Some((last, ids))
                if !s.per_subscription
                    && !last.per_subscription
                    && last.outbox.conn_id() == s.outbox.conn_id() =>
            {
                last.qos = last.qos.max(s.qos);
                last.retain_as_published |= s.retain_as_published;
                if s.tag != 0 && !ids.contains(&(s.tag as u32)) {
                    let _ = ids.push(s.tag as u32);
                }
            }
            _ => {
                let ids = sub_ids_of(&s);
                out.push((s, ids));
            }
        }
    }
    out
}

#[cfg(test)]
mod stall_tests;
#[cfg(test)]
mod tests;
