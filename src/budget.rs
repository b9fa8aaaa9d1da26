//! The memory budget (`[limits] memory`): one number, carved into hard limits for what
//! input can grow, each with a metric.
//!
//! - the store's page cache: three sixteenths (at most `store.cache_size`);
//! - events waiting for the store writer: an eighth, in bytes; publishers wait for room
//!   (backpressure: their sockets are not read meanwhile). Retained messages on their
//!   way to the store wait for the same room;
//! - deliveries queued to subscribers: a quarter, shared by all outboxes; a delivery
//!   that does not fit is dropped and counted, never buffered. (Persistent sessions
//!   queue their QoS 1/2 deliveries in the store, so an offline one holds nothing
//!   here.) Offline sessions together may hold at most a quarter
//!   ([`MemoryPool::offline_limit`]), so sessions nobody reads can never take what
//!   online subscribers need; one subscriber holds at most a quarter of the pool, one
//!   offline session a quarter of the offline part ([`MemoryPool::per_subscriber`]).
//!   Publishers feeding a subscriber past half its queue are held back for at most
//!   `limits.publisher_stall` per message (`broker::Settings::publisher_stall`), which turns a burst into
//!   a short wait instead of drops.
//!
//! - state clients make: an eighth ([`Budget::state`]) for subscriptions of both
//!   protocols (charged in `Router::subscribe`) and MQTT 5 topic aliases both ways,
//!   one connection at most an eighth of the share; and offline persistent sessions,
//!   [`OFFLINE_SESSION_COST`] each, at most half of the share together: when a session
//!   goes offline and its place does not fit, the offline sessions that connected least
//!   recently are evicted (`mqtt/sessions/registry.rs`);
//! - half-read packets: an eighth ([`Budget::packets`]) for the bytes of packets still
//!   arriving beyond one read chunk, across all connections;
//! - connections: an eighth ([`Budget::connections`]), [`CONNECTION_COST`] each from
//!   accept to close; a connection that does not fit is closed at once (counted), so
//!   idle connections cannot grow memory past the budget whatever `max_connections`
//!   says. Connections whose client is not admitted yet hold at most half of it
//!   (`transport/admission.rs`);
//! - retained messages: a sixteenth ([`Budget::retained`]), capped further by
//!   `mqtt.max_retained_bytes`. Their own share rather than part of the client-state
//!   one, so a client retaining big messages cannot stop everyone else subscribing; a
//!   sixteenth stays under one subscriber's part of the subscriber pool (three
//!   thirty-seconds), so that part never keeps a `#` subscriber from being sent every
//!   retained message at once (a smaller `mqtt.max_queued_bytes` still may).
//!
//! What does not fit is refused (SUBACK 0x97 / 0x80, DISCONNECT 0x97, NATS `-ERR` and a
//! close for a packet, a retained message not kept) and counted in
//! `ferry_limit_refusals_total`.
//!
//! The store cache is at most three sixteenths: what `store.cache_size` leaves of it is
//! headroom for connections and forwarder batches (bounded by `upstream.inflight` and
//! `batch`). Every board profile's `cache_size` fits in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A shared byte pool with a hard limit: reservations fail rather than wait.
///
/// Its "offline part" is a restricted part for holders that have not earned the rest:
/// offline sessions in the subscriber pool and the client-state share, connections not
/// yet admitted in the connections' share (`transport/admission.rs`). What they hold
/// there counts in the pool too, so the others always keep what is left.
#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
    /// Part of `used` held in the restricted part (offline sessions, or connections not
    /// yet admitted); never more than `offline_limit`.
    offline_used: AtomicUsize,
    offline_limit: usize,
}

impl MemoryPool {
    /// A pool whose offline sessions may hold at most a quarter of it.
    pub fn new(limit: usize) -> Arc<MemoryPool> {
        MemoryPool::with_offline_part(limit, limit / 4)
    }

    /// A pool whose offline sessions may hold at most `offline_limit` of it.
    pub fn with_offline_part(limit: usize, offline_limit: usize) -> Arc<MemoryPool> {
        Arc::new(MemoryPool {
            limit,
            used: AtomicUsize::new(0),
            offline_used: AtomicUsize::new(0),
            offline_limit: offline_limit.min(limit),
        })
    }

    /// A pool that never refuses (tests, and components bounded elsewhere).
    pub fn unlimited() -> Arc<MemoryPool> {
        MemoryPool::new(usize::MAX)
    }

    /// Takes `bytes` if they fit under the limit.
    pub fn reserve(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` for an offline session: they must fit under the offline part and
    /// under the whole pool.
    pub fn reserve_offline(&self, bytes: usize) -> bool {
        let before = self.offline_used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.offline_limit || !self.reserve(bytes) {
            self.offline_used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Moves `bytes` taken with [`MemoryPool::reserve_offline`] out of the offline
    /// part; they stay taken in the pool.
    pub fn settle_offline(&self, bytes: usize) {
        self.offline_used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Gives back `bytes` taken with [`MemoryPool::reserve_offline`].
    pub fn release_offline(&self, bytes: usize) {
        self.offline_used.fetch_sub(bytes, Ordering::Relaxed);
        self.release(bytes);
    }

    pub fn offline_used(&self) -> usize {
        self.offline_used.load(Ordering::Relaxed)
    }

    /// How much all offline sessions together may hold: a quarter of the pool.
    pub fn offline_limit(&self) -> usize {
        self.offline_limit
    }

    /// The most one online subscriber (`offline` false) or one offline session may
    /// hold: a quarter of what its kind may use, so no single one can take it all.
    pub fn per_subscriber(&self, offline: bool) -> usize {
        if offline {
            self.offline_limit / 4
        } else {
            self.limit / 4
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// What one connection holds in a pool; given back when the account is dropped, so no
/// path out of a connection can leak it.
#[derive(Debug)]
pub struct Account {
    pool: Arc<MemoryPool>,
    held: usize,
}

impl Account {
    pub fn new(pool: Arc<MemoryPool>) -> Account {
        Account { pool, held: 0 }
    }

    /// Takes `bytes` more if the connection then holds at most `cap` and the pool has
    /// them.
    pub fn charge(&mut self, bytes: usize, cap: usize) -> bool {
        if self.held.saturating_add(bytes) > cap || !self.pool.reserve(bytes) {
            return false;
        }
        self.held += bytes;
        true
    }

    pub fn refund(&mut self, bytes: usize) {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        self.pool.release(bytes);
    }

    /// Makes the account hold exactly `bytes`: false (and unchanged) when more do not fit.
    pub fn hold(&mut self, bytes: usize) -> bool {
        if bytes > self.held {
            self.charge(bytes - self.held, usize::MAX)
        } else {
            self.refund(self.held - bytes);
            true
        }
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn pool(&self) -> &MemoryPool {
        &self.pool
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.pool.release(self.held);
    }
}

/// What one open connection is charged in [`Budget::connections`], from accept to
/// close, whatever it does: its task, buffers, session and queue handles while idle
/// (measured on x86_64: an idle MQTT connection about 4.2 KiB, an idle NATS one about
/// 3.7 KiB, `mqtt/size_tests.rs` and `nats/size_tests.rs` bound their tasks; an active
/// one also holds a read chunk of up to 8 KiB; see `tests/memory_limits.rs`). What it holds beyond that (queued deliveries,
/// subscriptions, half-read packets) is charged to the other shares.
pub const CONNECTION_COST: usize = 16 * 1024;

/// What one offline persistent MQTT session holds in memory besides its subscriptions
/// (charged on their own): its state, its outbox and its place in the sessions table,
/// rounded up from the 1.1-1.4 KiB measured (VmRSS over 5,000 and 4,000 offline
/// sessions). Charged to the offline part of the client-state share while the session is
/// offline; an online one is inside its connection's [`CONNECTION_COST`].
pub const OFFLINE_SESSION_COST: usize = 1536;

/// The budget split, built once at start.
#[derive(Debug)]
pub struct Budget {
    pub total: usize,
    pub cache: usize,
    pub outboxes: Arc<MemoryPool>,
    /// Client-made state: subscriptions and topic aliases.
    pub state: Arc<MemoryPool>,
    /// Bytes of packets still arriving, beyond one read chunk per connection.
    pub packets: Arc<MemoryPool>,
    /// Connections themselves: each holds [`CONNECTION_COST`] from accept to close.
    pub connections: Arc<MemoryPool>,
    /// The most retained messages may hold together (each weighed as the retained table
    /// weighs it); `mqtt.max_retained_bytes` may lower it. A plain number, not a pool:
    /// the retained table keeps its own sum under its own lock.
    pub retained: usize,
    /// Permits are bytes of events queued for the store writer.
    pub ingest: Arc<Semaphore>,
    pub ingest_limit: usize,
}

impl Budget {
    pub fn new(total: usize, cache_cap: usize) -> Budget {
        let ingest_limit = (total / 8).max(64 * 1024);
        Budget {
            total,
            cache: cache_cap.min(total / 16 * 3),
            outboxes: MemoryPool::new(total / 4),
            // Half of it for offline sessions (OFFLINE_SESSION_COST each): the other
            // half is always there for online clients' subscriptions.
            state: MemoryPool::with_offline_part(total / 8, total / 16),
            packets: MemoryPool::new(total / 8),
            // Half of it at most for connections not yet admitted (transport/admission.rs).
            connections: MemoryPool::with_offline_part(total / 8, total / 16),
            retained: total / 16,
            ingest: Arc::new(Semaphore::new(ingest_limit)),
            ingest_limit,
        }
    }

    /// Waits until `bytes` of store-queue budget are free; the permit gives them back
    /// when dropped (after the commit). An event larger than the whole share takes all of it.
    pub async fn ingest(
        ingest: &Arc<Semaphore>,
        limit: usize,
        bytes: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes.min(limit)).unwrap_or(u32::MAX);
        ingest.clone().acquire_many_owned(n).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_refuses_past_its_limit() {
        let p = MemoryPool::new(100);
        assert!(p.reserve(60));
        assert!(!p.reserve(50));
        assert_eq!(p.used(), 60);
        p.release(60);
        assert!(p.reserve(100));
    }

    #[test]
    fn an_account_gives_everything_back_when_dropped() {
        let p = MemoryPool::new(100);
        let mut a = Account::new(p.clone());
        assert!(a.charge(30, 40));
        assert!(!a.charge(20, 40), "past the connection's cap");
        assert!(a.hold(90));
        assert!(!a.hold(101), "past the pool");
        assert!(a.hold(10));
        assert_eq!(p.used(), 10);
        drop(a);
        assert_eq!(p.used(), 0);
    }

    #[test]
    fn offline_sessions_hold_at_most_a_quarter() {
        let p = MemoryPool::new(400);
        assert!(p.reserve_offline(60));
        assert!(!p.reserve_offline(41), "past the offline quarter");
        assert!(p.reserve(340), "online subscribers keep the rest");
        assert!(!p.reserve_offline(1), "and the whole pool is full");
        p.release_offline(60);
        assert_eq!((p.used(), p.offline_used()), (340, 0));
        assert_eq!((p.per_subscriber(false), p.per_subscriber(true)), (100, 25));
    }

    #[test]
    fn the_shares_add_up_to_the_budget() {
        let total = 32 << 20;
        let b = Budget::new(total, usize::MAX);
        let parts = b.cache
            + b.ingest_limit
            + b.outboxes.limit()
            + b.state.limit()
            + b.packets.limit()
            + b.connections.limit()
            + b.retained;
        assert_eq!(parts, total);
        assert_eq!(b.retained, 2 << 20);
        assert!(
            b.retained <= b.outboxes.per_subscriber(false),
            "a # subscriber can take every retained message at once"
        );
    }

    #[tokio::test]
    async fn ingest_waits_for_room() {
        let b = Budget::new(8 << 20, 1 << 30);
        assert_eq!(b.cache, 3 << 19);
        assert_eq!(b.retained, 1 << 19);
        assert_eq!(b.ingest_limit, 1 << 20);
        let first = Budget::ingest(&b.ingest, b.ingest_limit, 900 << 10)
            .await
            .unwrap();
        let second = Budget::ingest(&b.ingest, b.ingest_limit, 200 << 10);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut second)
                .await
                .is_err(),
            "waits"
        );
        drop(first);
        assert!(second.await.is_some());
    }
}
