//! Every MQTT session the broker holds, online or offline, by client id.
//!
//! A session is online while one connection owns its [`SessionState`]. When that
//! connection ends, a persistent session (expiry > 0) is parked here offline: its outbox
//! stays subscribed, so QoS 1/2 messages queue for it in the store (`store/queue.rs`,
//! bounded by `max_queued` and `max_queued_bytes`; QoS 0 is not queued), until the
//! client returns or it expires.
//! A second connection with the same client id kicks the first and waits for it to park
//! the state (MQTT 3.1.4 takeover), then resumes it.
//!
//! Sessions cannot lock the broker: only persistent sessions count against
//! `max_sessions` (a clean one ends with its connection, which `max_connections`
//! bounds); every expiry is capped at `max_session_expiry`; and when the persistent
//! sessions fill `max_sessions`, the offline one that connected least recently is
//! evicted for a newcomer. Only when every counted session is online is a new persistent
//! session refused.

use super::session::{
    SessionState, SpoolReader, SubOptions, decode_record, decode_sub, encode_sub,
};
use crate::broker::Hub;
use crate::budget::{MemoryPool, OFFLINE_SESSION_COST};
use crate::config::MqttConfig;
use crate::policy::ReadGuard;
use crate::router::{NoRoom, Outbox, Spool, Subscription};
use crate::store::{QueueBound, QueueSignal, StateChange, StoredSession};
use crate::transport::listen::RateLimitedLog;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a new connection waits for the one it kicked to hand the session over.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

enum Slot {
    Online {
        conn_id: u64,
        kick: Arc<Notify>,
        parked: Arc<Notify>,
        /// The user the connection authenticated as (None: anonymous).
        owner: Option<String>,
        /// Opened with an expiry > 0: counts against `max_sessions`.
        persistent: bool,
        /// [`Registry::connects`] when this connection opened the session.
        connected: u64,
    },
    Offline {
        state: Box<SessionState>,
        expires: Instant,
        /// [`Registry::connects`] when its last connection opened it: the eviction order.
        connected: u64,
    },
}

/// The slots and the bookkeeping that must change with them, under one lock: every
/// slot goes in and out through [`Registry::insert`] and [`Registry::remove`], which
/// keep `persistent` and `offline` true to `slots`, and the memory of offline slots
/// charged: every offline slot holds [`OFFLINE_SESSION_COST`] of `pool`'s offline part,
/// reserved by [`Registry::make_room`] before it goes in and given back when it leaves.
struct Registry {
    slots: HashMap<String, Slot>,
    /// Slots of persistent sessions, online or offline: what `max_sessions` caps.
    persistent: usize,
    /// The offline slots by `connected`, least recent first: which one to evict, found
    /// without a scan (a flood of new sessions meets a full table at every CONNECT).
    offline: BTreeMap<u64, String>,
    /// Sessions opened (or restored) so far. A counter rather than a clock: it orders
    /// the connects strictly, even two within one clock tick.
    connects: u64,
    /// The client-state share of the memory budget.
    pool: Arc<MemoryPool>,
}

pub struct Sessions {
    registry: Mutex<Registry>,
    hub: Arc<Hub>,
    max_sessions: usize,
    /// `max_session_expiry` in seconds, below [`super::session::NEVER`].
    max_expiry: u32,
    max_queued: usize,
    max_queued_bytes: usize,
    /// How long a connection waits for a kicked one (a field so tests can shorten it).
    takeover_wait: Duration,
    /// A flood of new sessions evicts at every CONNECT: one warning a second says so.
    evict_log: RateLimitedLog,
}

/// A session handed to a connection.
pub struct Opened {
    pub state: SessionState,
    /// The session existed (CONNACK session present).
    pub present: bool,
    /// Fires when another connection takes the session over.
    pub kick: Arc<Notify>,
    parked: Arc<Notify>,
}

/// Why an offline session was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evicted {
    /// `max_sessions` persistent sessions existed and a new one came.
    MaxSessions,
    /// The offline part of the client-state share could not hold one more.
    Memory,
}

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// `max_sessions` persistent sessions exist and every one is online.
    TooManySessions,
    /// The client id belongs to a session of another user (or of an anonymous client):
    /// never handed over, online or offline.
    NotOwner,
}

impl Slot {
    /// May a client authenticated as `user` take this session? A session restored from
    /// a record written before owners were stored has no known owner: the first
    /// authenticated client to claim it gets it.
    fn owned_by(&self, user: &Option<String>) -> bool {
        match self {
            Slot::Online { owner, .. } => owner == user,
            Slot::Offline { state, .. } => state.owner.as_ref().is_none_or(|o| o == user),
        }
    }

    /// Counts against `max_sessions`: every offline slot is a persistent session.
    fn counted(&self) -> bool {
        match self {
            Slot::Online { persistent, .. } => *persistent,
            Slot::Offline { .. } => true,
        }
    }
}

impl Registry {
    fn new(pool: Arc<MemoryPool>) -> Registry {
        Registry {
            slots: HashMap::new(),
            persistent: 0,
            offline: BTreeMap::new(),
            connects: 0,
            pool,
        }
    }

    /// Reserves the memory of one more offline slot, evicting the offline sessions that
    /// connected least recently (into `evicted`, for the caller to discard) until it
    /// fits. False when it does not fit even with no offline session left.
    fn make_room(&mut self, evicted: &mut Vec<SessionState>) -> bool {
        loop {
            if self.pool.reserve_offline(OFFLINE_SESSION_COST) {
                return true;
            }
            match self.evict_oldest() {
                Some(state) => evicted.push(state),
                None => return false,
            }
        }
    }

    /// Puts `slot` in; an offline one must have its memory reserved ([`Registry::make_room`]).
    fn insert(&mut self, client_id: String, slot: Slot) {
        self.remove(&client_id);
        if slot.counted() {
            self.persistent += 1;
        }
        if let Slot::Offline { connected, .. } = &slot {
            self.offline.insert(*connected, client_id.clone());
        }
        self.slots.insert(client_id, slot);
    }

    fn remove(&mut self, client_id: &str) -> Option<Slot> {
        let slot = self.slots.remove(client_id)?;
        if slot.counted() {
            self.persistent -= 1;
        }
        if let Slot::Offline { connected, .. } = &slot {
            self.offline.remove(connected);
            self.pool.release_offline(OFFLINE_SESSION_COST);
        }
        Some(slot)
    }

    fn next_connect(&mut self) -> u64 {
        self.connects += 1;
        self.connects
    }

    /// Takes out the offline session that connected least recently.
    fn evict_oldest(&mut self) -> Option<SessionState> {
        let client_id = self.offline.first_key_value()?.1.clone();
        match self.remove(&client_id) {
            Some(Slot::Offline { state, .. }) => Some(*state),
            // Not reached: `offline` only names offline slots.
            _ => None,
        }
    }
}

impl Sessions {
    pub fn new(hub: Arc<Hub>, cfg: &MqttConfig) -> Sessions {
        let never = super::session::NEVER;
        Sessions {
            registry: Mutex::new(Registry::new(hub.budget.state.clone())),
            hub,
            max_sessions: cfg.max_sessions,
            max_expiry: u32::try_from(cfg.max_session_expiry.as_secs())
                .unwrap_or(never)
                .clamp(1, never - 1),
            max_queued: cfg.max_queued,
            max_queued_bytes: usize::try_from(cfg.max_queued_bytes.0).unwrap_or(usize::MAX),
            takeover_wait: TAKEOVER_WAIT,
            evict_log: RateLimitedLog::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The expiry a session gets when `requested` is asked for (at CONNECT, at an MQTT 5
    /// DISCONNECT, or by a stored record): at most `max_session_expiry`, "never" included.
    pub fn granted_expiry(&self, requested: u32) -> u32 {
        requested.min(self.max_expiry)
    }

    /// A new session. A persistent one (expiry > 0) queues its QoS 1/2 deliveries in the
    /// store when there is one, bounded there by `max_queued_bytes`.
    fn fresh(&self, client_id: &str, expiry: u32) -> SessionState {
        let (outbox, rx) = Outbox::new(
            self.hub.conn_id(),
            self.max_queued,
            self.max_queued_bytes,
            self.hub.budget.outboxes.clone(),
            self.hub.metrics.clone(),
        );
        let mut state = SessionState::new(client_id.to_string(), outbox, rx, expiry);
        if expiry > 0 && self.hub.store.is_some() {
            let client_id: Arc<str> = Arc::from(client_id);
            let signal = Arc::new(QueueSignal::default());
            state.outbox.set_spool(Spool {
                client_id: client_id.clone(),
                bound: QueueBound {
                    bytes: self.max_queued_bytes as u64,
                    count: self.max_queued as u64,
                },
                signal: signal.clone(),
            });
            state.spool = Some(SpoolReader {
                client_id,
                signal,
                after: 0,
                more: true,
            });
        }
        state
    }

    /// Opens the session of `client_id` for connection `conn_id`: resumes it when it exists
    /// and `clean` is false, otherwise starts a new one. `expiry` is what the client asked
    /// for; the session gets [`Sessions::granted_expiry`] of it (`Opened::state.expiry`).
    pub async fn open(
        &self,
        client_id: &str,
        clean: bool,
        expiry: u32,
        conn_id: u64,
        owner: Option<String>,
    ) -> Result<Opened, OpenError> {
        let expiry = self.granted_expiry(expiry);
        // An online session taken from a connection that never handed it over.
        let mut replaced = false;
        for attempt in 0..3 {
            let waiting = match self.lock().slots.get(client_id) {
                Some(slot) if !slot.owned_by(&owner) => return Err(OpenError::NotOwner),
                Some(Slot::Online { kick, parked, .. }) => {
                    kick.notify_one();
                    Some(parked.clone())
                }
                _ => None,
            };
            if let Some(parked) = waiting {
                if tokio::time::timeout(self.takeover_wait, parked.notified())
                    .await
                    .is_err()
                    && attempt == 2
                {
                    tracing::warn!(
                        client_id,
                        "previous connection did not hand the session over; replacing it"
                    );
                    replaced |= matches!(self.lock().remove(client_id), Some(Slot::Online { .. }));
                }
                continue;
            }
            break;
        }
        let mut evicted = Vec::new();
        let taken = {
            let mut reg = self.lock();
            if reg
                .slots
                .get(client_id)
                .is_some_and(|s| !s.owned_by(&owner))
            {
                // Taken by another user while we waited for the old connection.
                return Err(OpenError::NotOwner);
            }
            // A session that replaces a counted one (its own, resumed or not) needs no
            // new place: the count never grows by it.
            let needs_place = expiry > 0 && !reg.slots.get(client_id).is_some_and(Slot::counted);
            if needs_place {
                while reg.persistent >= self.max_sessions {
                    match reg.evict_oldest() {
                        Some(state) => evicted.push(state),
                        None => break,
                    }
                }
            }
            if needs_place && reg.persistent >= self.max_sessions {
                Err(OpenError::TooManySessions)
            } else {
                // An online slot still here is a connection that never handed the session
                // over: replaced, it finds at its close that the session is no longer its.
                let previous = match reg.remove(client_id) {
                    Some(Slot::Offline { state, .. }) => Some(*state),
                    Some(Slot::Online { .. }) => {
                        replaced = true;
                        None
                    }
                    None => None,
                };
                let kick = Arc::new(Notify::new());
                let parked = Arc::new(Notify::new());
                let connected = reg.next_connect();
                reg.insert(
                    client_id.to_string(),
                    Slot::Online {
                        conn_id,
                        kick: kick.clone(),
                        parked: parked.clone(),
                        owner: owner.clone(),
                        persistent: expiry > 0,
                        connected,
                    },
                );
                self.hub.metrics.sessions.set(reg.slots.len() as i64);
                Ok((previous, kick, parked))
            }
        };
        self.evicted(evicted, client_id, Evicted::MaxSessions).await;
        let (previous, kick, parked) = taken?;
        if replaced {
            // The replaced connection leaves the store alone when it ends (the record is
            // no longer its): neither its record (if the new session does not persist)
            // nor its subscription rows (if it does, starting afresh) may come back at
            // the next start.
            self.delete_record(client_id).await;
        }
        let (mut state, present) = match previous {
            Some(state) if !clean => (state, true),
            Some(old) => {
                self.discard(old).await;
                (self.fresh(client_id, expiry), false)
            }
            None => (self.fresh(client_id, expiry), false),
        };
        state.expiry = expiry;
        state.owner = Some(owner);
        state.outbox.set_offline(false);
        if present {
            let dropped = state.dropped() - state.dropped_at_park;
            if dropped > 0 {
                tracing::warn!(
                    client_id,
                    dropped,
                    "messages for this session were dropped while it was offline (queue full)"
                );
            }
            state.outbox.take_overflow();
        }
        self.persist(&state).await;
        Ok(Opened {
            state,
            present,
            kick,
            parked,
        })
    }

    /// Discards the sessions evicted to make room for `for_client`, like expired ones.
    async fn evicted(&self, evicted: Vec<SessionState>, for_client: &str, why: Evicted) {
        for state in evicted {
            self.count_eviction(&state.client_id, for_client, why);
            self.discard(state).await;
        }
    }

    fn count_eviction(&self, client_id: &str, for_client: &str, why: Evicted) {
        self.hub.metrics.sessions_evicted.inc();
        if why == Evicted::Memory {
            self.hub.metrics.limits.offline_sessions.inc();
        }
        if let Some(suppressed) = self.evict_log.allow() {
            match why {
                Evicted::MaxSessions => tracing::warn!(
                    client_id,
                    for_client,
                    max_sessions = self.max_sessions,
                    suppressed,
                    "offline MQTT session evicted (least recently connected): mqtt.max_sessions reached"
                ),
                Evicted::Memory => tracing::warn!(
                    client_id,
                    for_client,
                    suppressed,
                    "offline MQTT session evicted (least recently connected): the offline sessions' part of the memory budget ([limits] memory) is full"
                ),
            }
        }
    }

    /// The connection of `opened` ended: park the session if it persists, else drop it.
    /// Returns false when the session was no longer this connection's: it did not hand it
    /// over in time and a new connection replaced it, so the session went on there and
    /// the caller publishes no will. Then, while another connection holds the client id,
    /// only this connection's own subscriptions leave the router (by its outbox id) and
    /// the store record, the new owner's, stays; when nobody holds it any more, what this
    /// connection had is discarded whole, record included, so that it does not come back
    /// at the next start.
    pub async fn close(&self, opened: Opened, conn_id: u64) -> bool {
        enum Then {
            Parked,
            Discard(SessionState),
            Detach(SessionState),
            Orphan(SessionState),
        }
        let Opened {
            mut state, parked, ..
        } = opened;
        let client_id = state.client_id.clone();
        let mut evicted = Vec::new();
        let then = {
            let mut reg = self.lock();
            let (ours, held) = match reg.slots.get(&client_id) {
                Some(Slot::Online {
                    conn_id: c,
                    connected,
                    ..
                }) if *c == conn_id => (Some(*connected), true),
                Some(_) => (None, true),
                None => (None, false),
            };
            let then = match ours {
                None if held => Then::Detach(state),
                None => Then::Orphan(state),
                Some(_) if state.expiry == 0 => {
                    reg.remove(&client_id);
                    Then::Discard(state)
                }
                Some(_) if !reg.make_room(&mut evicted) => {
                    // Not reached with a budget of a few MiB: the offline part holds
                    // hundreds of sessions.
                    reg.remove(&client_id);
                    self.count_eviction(&client_id, &client_id, Evicted::Memory);
                    Then::Discard(state)
                }
                Some(connected) => {
                    state.outbox.set_offline(true);
                    state.dropped_at_park = state.dropped();
                    let expires = Instant::now() + Duration::from_secs(u64::from(state.expiry));
                    reg.insert(
                        client_id.clone(),
                        Slot::Offline {
                            state: Box::new(state),
                            expires,
                            connected,
                        },
                    );
                    Then::Parked
                }
            };
            self.hub.metrics.sessions.set(reg.slots.len() as i64);
            then
        };
        self.evicted(evicted, &client_id, Evicted::Memory).await;
        let owned = match then {
            Then::Parked => true,
            Then::Discard(state) => {
                self.discard(state).await;
                true
            }
            Then::Detach(state) => {
                self.unsubscribe_all(&state);
                false
            }
            Then::Orphan(state) => {
                self.discard(state).await;
                false
            }
        };
        parked.notify_one();
        owned
    }

    /// Takes the session's subscriptions out of the router (by its own outbox id, so a
    /// session with the same client id elsewhere keeps its own).
    fn unsubscribe_all(&self, state: &SessionState) {
        for (filter, opts) in &state.subs {
            let (router_filter, key) = router_key(filter, opts);
            self.hub.router.unsubscribe(router_filter, state.id(), key);
        }
    }

    /// Forgets a session: its subscriptions leave the router and its record the store.
    async fn discard(&self, state: SessionState) {
        self.unsubscribe_all(&state);
        self.delete_record(&state.client_id).await;
    }

    async fn delete_record(&self, client_id: &str) {
        if let Some(store) = &self.hub.store {
            let change = StateChange::DeleteSession {
                client_id: client_id.to_string(),
            };
            if let Err(e) = store.change_state(change).await {
                tracing::warn!(client_id, error = %e, "cannot delete session record");
            }
        }
    }

    /// Writes one subscription of the session to the store (`None`: its removal) if the
    /// session outlives its connection: one row, never the whole session.
    pub async fn persist_subscription(
        &self,
        state: &SessionState,
        filter: &str,
        opts: Option<&SubOptions>,
    ) {
        if state.expiry == 0 {
            return;
        }
        let Some(store) = &self.hub.store else { return };
        let (client_id, filter) = (state.client_id.clone(), filter.to_string());
        let change = match opts {
            Some(opts) => StateChange::PutSubscription {
                client_id,
                filter,
                options: encode_sub(opts),
            },
            None => StateChange::DeleteSubscription { client_id, filter },
        };
        if let Err(e) = store.change_state(change).await {
            tracing::warn!(client_id = %state.client_id, error = %e, "cannot store subscription");
        }
    }

    /// Writes the session's record (expiry, owner) to the store if it outlives its
    /// connection; its subscriptions are rows written one by one as they are made
    /// ([`Sessions::persist_subscription`]).
    pub async fn persist(&self, state: &SessionState) {
        if state.expiry == 0 {
            return;
        }
        if let Some(store) = &self.hub.store {
            let change = StateChange::PutSession {
                client_id: state.client_id.clone(),
                record: state.record(),
            };
            if let Err(e) = store.change_state(change).await {
                tracing::warn!(client_id = %state.client_id, error = %e, "cannot store session");
            }
        }
    }

    /// Re-creates the stored sessions, offline, with their subscriptions (at startup).
    /// Their expiry is capped at `max_session_expiry` and counts from now. They may be
    /// more than `max_sessions` (it was lowered): the next persistent sessions evict the
    /// excess.
    ///
    /// Returns how many were restored, and the store changes that move the subscriptions
    /// of older records (format 1 and 2 kept them inside) into rows of their own.
    pub fn restore(&self, stored: Vec<StoredSession>) -> (usize, Vec<StateChange>) {
        let mut restored = 0;
        let mut migrate = Vec::new();
        for StoredSession {
            client_id,
            record,
            subs: rows,
        } in stored
        {
            let Some(mut rec) = decode_record(&record) else {
                tracing::warn!(%client_id, "session record not understood; skipped");
                continue;
            };
            let legacy = !rec.subs.is_empty();
            if legacy {
                for (filter, opts) in &rec.subs {
                    migrate.push(StateChange::PutSubscription {
                        client_id: client_id.clone(),
                        filter: filter.clone(),
                        options: encode_sub(opts),
                    });
                }
            }
            for (filter, bytes) in rows {
                match decode_sub(&bytes) {
                    Some(opts) => rec.subs.push((filter, opts)),
                    None => {
                        tracing::warn!(%client_id, %filter, "stored subscription not understood; skipped")
                    }
                }
            }
            let expiry = self.granted_expiry(rec.expiry);
            let mut state = self.fresh(&client_id, expiry);
            // The access rules of today apply: a subscription they now deny is dropped.
            let who = self
                .hub
                .policy()
                .identity(rec.owner.clone().flatten(), &client_id);
            state.owner = rec.owner;
            for (filter, opts) in rec.subs {
                let (inner, _) = router_key(&filter, &opts);
                let grant = self.hub.policy().subscribe(&who, inner);
                if grant.is_denied() {
                    tracing::warn!(%client_id, %filter, "stored subscription now denied by acl; dropped");
                    migrate.push(StateChange::DeleteSubscription {
                        client_id: client_id.clone(),
                        filter,
                    });
                    continue;
                }
                if subscribe(&self.hub, &state, &filter, &opts, grant.guard()).is_err() {
                    self.hub.metrics.limits.subscriptions.inc();
                    tracing::warn!(%client_id, %filter, "stored subscription does not fit the memory budget ([limits] memory); dropped");
                    migrate.push(StateChange::DeleteSubscription {
                        client_id: client_id.clone(),
                        filter,
                    });
                    continue;
                }
                state.subs.insert(filter, opts);
            }
            if legacy {
                // The record without its subscriptions, which are rows now.
                migrate.push(StateChange::PutSession {
                    client_id: client_id.clone(),
                    record: state.record(),
                });
            }
            state.outbox.set_offline(true);
            let expires = Instant::now() + Duration::from_secs(u64::from(expiry));
            let mut evicted = Vec::new();
            let mut reg = self.lock();
            let fits = reg.make_room(&mut evicted);
            // Those were restored before this one.
            restored -= evicted.len();
            if fits {
                let connected = reg.next_connect();
                reg.insert(
                    client_id,
                    Slot::Offline {
                        state: Box::new(state),
                        expires,
                        connected,
                    },
                );
                restored += 1;
            } else {
                evicted.push(state);
            }
            drop(reg);
            // Evicted as at run time: the ones restored first (their records' order).
            for state in evicted {
                self.count_eviction(&state.client_id, &state.client_id, Evicted::Memory);
                self.unsubscribe_all(&state);
                migrate.push(StateChange::DeleteSession {
                    client_id: state.client_id.clone(),
                });
            }
        }
        self.hub
            .metrics
            .sessions
            .set(self.lock().slots.len() as i64);
        (restored, migrate)
    }

    /// True when a connection other than `conn_id` now holds the session of `client_id`.
    pub fn resumed_since(&self, client_id: &str, conn_id: u64) -> bool {
        matches!(self.lock().slots.get(client_id), Some(Slot::Online { conn_id: c, .. }) if *c != conn_id)
    }

    /// Drops offline sessions whose expiry has passed; returns how many.
    pub async fn reap(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<SessionState> = {
            let mut reg = self.lock();
            let ids: Vec<String> = reg
                .slots
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Offline { expires, .. } if *expires <= now))
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter()
                .filter_map(|id| match reg.remove(id) {
                    Some(Slot::Offline { state, .. }) => Some(*state),
                    _ => None,
                })
                .collect()
        };
        let n = expired.len();
        for state in expired {
            tracing::info!(client_id = %state.client_id, "session expired");
            self.discard(state).await;
        }
        self.hub.metrics.sessions_expired.add(n as u64);
        self.hub
            .metrics
            .sessions
            .set(self.lock().slots.len() as i64);
        n
    }
}

/// The router filter and key of a session subscription: `$share/<group>/<filter>` is
/// routed on `<filter>` in group `mqtt:<group>`, keyed apart from a plain subscription.
pub fn router_key<'a>(filter: &'a str, opts: &SubOptions) -> (&'a str, u64) {
    match &opts.share {
        Some(group) => {
            let inner = filter.get(8 + group.len()..).unwrap_or(filter);
            (inner, share_key(group))
        }
        None => (filter, 0),
    }
}

fn share_key(group: &str) -> u64 {
    // FNV-1a, never 0 so it cannot collide with a plain subscription.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

/// Puts one session subscription into the router; `read` is the policy's per-message
/// check when the subscriber may read only part of what the filter matches. `NoRoom`:
/// it does not fit the memory budget, and was not made.
pub fn subscribe(
    hub: &Hub,
    state: &SessionState,
    filter: &str,
    opts: &SubOptions,
    read: Option<ReadGuard>,
) -> Result<(), NoRoom> {
    let (router_filter, key) = router_key(filter, opts);
    hub.router.subscribe(
        router_filter,
        Subscription {
            outbox: state.outbox.clone(),
            qos: opts.qos,
            key,
            tag: u64::from(opts.sub_id),
            per_subscription: false,
            no_local: opts.no_local,
            retain_as_published: opts.retain_as_published,
            group: opts
                .share
                .as_ref()
                .map(|g| Arc::from(format!("mqtt:{g}").as_str())),
            read,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Origin};
    use crate::metrics::Metrics;
    use crate::store::Store;
    use bytes::Bytes;

    const NEVER: u32 = super::super::session::NEVER;

    fn hub(store: Option<Store>) -> Arc<Hub> {
        hub_with_budget(store, 32 << 20)
    }

    fn hub_with_budget(store: Option<Store>, memory: usize) -> Arc<Hub> {
        let metrics = Arc::new(Metrics::default());
        let config = crate::config::Config::default();
        let policy = crate::policy::Policy::new(&config, metrics.clone()).unwrap();
        Arc::new(Hub::new(
            crate::forward::Forwarding::new(&[], &[], &[]),
            store,
            metrics,
            100,
            policy,
            Arc::new(crate::budget::Budget::new(
                memory,
                4 << 20,
                std::time::Duration::ZERO,
            )),
        ))
    }

    fn sessions(hub: &Arc<Hub>, max_sessions: usize, max_expiry_secs: u64) -> Sessions {
        let cfg = MqttConfig {
            max_sessions,
            max_session_expiry: Duration::from_secs(max_expiry_secs),
            ..MqttConfig::default()
        };
        Sessions::new(hub.clone(), &cfg)
    }

    fn qos1() -> SubOptions {
        SubOptions {
            qos: 1,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            sub_id: 0,
            share: None,
        }
    }

    /// Subscribes the session as a SUBSCRIBE on its connection does.
    fn sub(hub: &Hub, opened: &mut Opened, filter: &str) {
        subscribe(hub, &opened.state, filter, &qos1(), None).unwrap();
        opened.state.subs.insert(filter.to_string(), qos1());
    }

    /// How many subscriptions a QoS 1 event on `topic` reaches.
    fn reached(hub: &Hub, topic: &str) -> usize {
        let event = Event::new(topic.into(), Bytes::new(), 1, false, Origin::Mqtt);
        hub.router.route(&Arc::new(event), 0).delivered
    }

    async fn open(s: &Sessions, id: &str, expiry: u32, conn_id: u64) -> Result<Opened, OpenError> {
        s.open(id, false, expiry, conn_id, None).await
    }

    #[tokio::test]
    async fn clean_sessions_do_not_count_against_max_sessions() {
        let hub = hub(None);
        let s = sessions(&hub, 2, 3600);
        let mut held = Vec::new();
        for i in 0..10 {
            let clean = s.open(&format!("clean{i}"), true, 0, i, None).await;
            held.push(clean.expect("a clean session is never refused"));
        }
        held.push(open(&s, "p1", NEVER, 20).await.unwrap());
        held.push(open(&s, "p2", 60, 21).await.unwrap());
        // Both persistent sessions online: no room, nothing to evict.
        assert_eq!(
            open(&s, "p3", 60, 22).await.err(),
            Some(OpenError::TooManySessions)
        );
        held.push(s.open("clean10", true, 0, 23, None).await.unwrap());
        assert_eq!(s.lock().persistent, 2);
        assert_eq!(hub.metrics.sessions_evicted.get(), 0);
        // A clean session that ends leaves the count alone; a persistent one that parks
        // keeps its place.
        for opened in held {
            let conn_id = match s.lock().slots.get(&opened.state.client_id) {
                Some(Slot::Online { conn_id, .. }) => *conn_id,
                _ => panic!("not online"),
            };
            assert!(s.close(opened, conn_id).await);
        }
        let reg = s.lock();
        assert_eq!(
            (reg.persistent, reg.slots.len(), reg.offline.len()),
            (2, 2, 2)
        );
    }

    #[tokio::test]
    async fn the_offline_session_connected_least_recently_is_evicted() {
        let hub = hub(None);
        let s = sessions(&hub, 2, 3600);
        let mut a = open(&s, "a", NEVER, 1).await.unwrap();
        sub(&hub, &mut a, "a/t");
        assert!(s.close(a, 1).await);
        let mut b = open(&s, "b", NEVER, 2).await.unwrap();
        sub(&hub, &mut b, "b/t");
        assert!(s.close(b, 2).await);
        // `a` connects again: now `b` is the one that connected least recently.
        let a = open(&s, "a", NEVER, 3).await.unwrap();
        assert!(a.present);
        assert!(s.close(a, 3).await);
        assert_eq!((reached(&hub, "a/t"), reached(&hub, "b/t")), (1, 1));

        let c = open(&s, "c", NEVER, 4).await.unwrap();
        assert_eq!(hub.metrics.sessions_evicted.get(), 1);
        assert_eq!(
            (reached(&hub, "a/t"), reached(&hub, "b/t")),
            (1, 0),
            "b's subscription left the router with it"
        );
        let a = open(&s, "a", NEVER, 5).await.unwrap();
        assert!(a.present, "a was not evicted");
        // `a` and `c` online fill max_sessions: an online session is never evicted.
        assert_eq!(
            open(&s, "d", NEVER, 6).await.err(),
            Some(OpenError::TooManySessions)
        );
        assert_eq!(hub.metrics.sessions_evicted.get(), 1);
        assert!(s.close(c, 4).await);
        let d = open(&s, "d", NEVER, 7).await.unwrap();
        assert!(!d.present);
        assert_eq!(hub.metrics.sessions_evicted.get(), 2, "c went for d");
        assert!(!s.lock().slots.contains_key("c"));
        drop((a, d));
    }

    /// Offline sessions hold at most the offline part of the client-state share: past
    /// it, the one that connected least recently goes (counted), whatever `max_sessions`
    /// allows; what they held is given back when they go.
    #[tokio::test]
    async fn offline_sessions_stay_inside_their_part_of_the_budget() {
        // 2 MiB: a 256 KiB client-state share, 128 KiB of it for offline sessions.
        let hub = hub_with_budget(None, 2 << 20);
        let fit = hub.budget.state.offline_limit() / OFFLINE_SESSION_COST;
        assert_eq!(fit, 85);
        let s = sessions(&hub, 10_000, 3600);
        for n in 0..fit + 10 {
            let mut o = open(&s, &format!("s{n}"), NEVER, n as u64).await.unwrap();
            sub(&hub, &mut o, &format!("t/{n}"));
            assert!(s.close(o, n as u64).await);
        }
        assert_eq!(s.lock().offline.len(), fit);
        assert_eq!(hub.budget.state.offline_used(), fit * OFFLINE_SESSION_COST);
        assert_eq!(hub.metrics.sessions_evicted.get(), 10);
        assert_eq!(hub.metrics.limits.offline_sessions.get(), 10);
        for n in 0..10 {
            assert_eq!(reached(&hub, &format!("t/{n}")), 0, "s{n} was evicted");
        }
        assert_eq!(reached(&hub, "t/10"), 1, "s10 stayed");
        // Back online, a session holds its connection's cost instead.
        let o = open(&s, "s10", NEVER, 1000).await.unwrap();
        assert!(o.present);
        assert_eq!(
            hub.budget.state.offline_used(),
            (fit - 1) * OFFLINE_SESSION_COST
        );
        assert_eq!(s.reap().await, 0);
        drop(o);
    }

    /// A record of an older ferry (subscriptions inside) is restored with them, and the
    /// restore says how to move them into rows; rows of a current record are read too.
    #[tokio::test]
    async fn older_records_are_restored_and_moved_into_rows() {
        let hub = hub(None);
        let s = sessions(&hub, 10, 3600);
        let v2 = super::super::session::SessionRecordV2 {
            expiry: 60,
            subs: vec![("old/#".into(), qos1())],
            owner: Some(None),
        };
        let mut record = vec![2u8];
        record.extend(postcard::to_allocvec(&v2).unwrap());
        let current = StoredSession {
            client_id: "new".into(),
            record: s.fresh("new", 60).record(),
            subs: vec![("rows/+".into(), encode_sub(&qos1()))],
        };
        let legacy = StoredSession {
            client_id: "old".into(),
            record,
            subs: Vec::new(),
        };
        let (n, migrate) = s.restore(vec![legacy, current]);
        assert_eq!(n, 2);
        assert_eq!((reached(&hub, "old/x"), reached(&hub, "rows/x")), (1, 1));
        let moved: Vec<String> = migrate
            .iter()
            .map(|c| match c {
                StateChange::PutSubscription {
                    client_id, filter, ..
                } => format!("sub {client_id} {filter}"),
                StateChange::PutSession { client_id, record } => {
                    let rec = decode_record(record).unwrap();
                    format!("record {client_id} {}", rec.subs.len())
                }
                _ => "other".into(),
            })
            .collect();
        assert_eq!(moved, ["sub old old/#", "record old 0"]);
    }

    #[tokio::test]
    async fn every_expiry_is_capped_at_max_session_expiry() {
        let hub = hub(None);
        let s = sessions(&hub, 10, 60);
        assert_eq!(s.granted_expiry(NEVER), 60);
        assert_eq!(s.granted_expiry(30), 30);
        assert_eq!(s.granted_expiry(0), 0);
        // A 3.1.1 clean_session = 0 CONNECT asks for NEVER.
        let a = open(&s, "a", NEVER, 1).await.unwrap();
        assert_eq!(a.state.expiry, 60);
        let before_park = Instant::now();
        assert!(s.close(a, 1).await);
        let expires = |s: &Sessions, id: &str| match s.lock().slots.get(id) {
            Some(Slot::Offline { expires, .. }) => *expires,
            _ => panic!("{id} is not offline"),
        };
        let limit = Instant::now() + Duration::from_secs(60);
        assert!(expires(&s, "a") >= before_park + Duration::from_secs(60));
        assert!(expires(&s, "a") <= limit);
        // A record stored before the cap (or under a larger one) is capped at restore.
        let stored = s.fresh("r", NEVER).record();
        let stored = StoredSession {
            client_id: "r".into(),
            record: stored,
            subs: Vec::new(),
        };
        assert_eq!(s.restore(vec![stored]).0, 1);
        assert!(expires(&s, "r") <= Instant::now() + Duration::from_secs(60));
        let r = open(&s, "r", 30, 2).await.unwrap();
        assert_eq!((r.present, r.state.expiry), (true, 30));
    }

    /// A connection that did not hand its session over in time (stuck) and was replaced
    /// must not, when it finally ends, take the new owner's session with it.
    #[tokio::test]
    async fn a_replaced_connection_leaves_the_new_owners_session_alone() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::store::StoreOptions {
            cache_size: 1 << 20,
            max_batch: 64,
            linger: Duration::ZERO,
            queue: 128,
            queue_bytes: 1 << 20,
            limits: crate::store::Limits {
                max_bytes: 1 << 30,
                max_age: Duration::ZERO,
                on_full: crate::config::OnFull::DropOldest,
                fsync: crate::config::Fsync::Always,
            },
        };
        let (store, join) =
            Store::open(dir.path(), &[], opts, Arc::new(Metrics::default())).unwrap();
        let hub = hub(Some(store.clone()));
        let mut s = sessions(&hub, 10, 3600);
        s.takeover_wait = Duration::from_millis(10);
        let mut old = open(&s, "c", NEVER, 1).await.unwrap();
        sub(&hub, &mut old, "old/t");
        s.persist(&old.state).await;
        s.persist_subscription(&old.state, "old/t", Some(&qos1()))
            .await;
        // `old` never reacts to the kick: `new` replaces it after the waits.
        let mut new = open(&s, "c", NEVER, 2).await.unwrap();
        assert!(!new.present);
        sub(&hub, &mut new, "new/t");
        s.persist(&new.state).await;
        s.persist_subscription(&new.state, "new/t", Some(&qos1()))
            .await;

        assert!(
            !s.close(old, 1).await,
            "the session is no longer the old one's"
        );
        assert_eq!(
            (reached(&hub, "old/t"), reached(&hub, "new/t")),
            (0, 1),
            "only the old connection's own subscription left the router"
        );
        assert!(matches!(
            s.lock().slots.get("c"),
            Some(Slot::Online { conn_id: 2, .. })
        ));
        // Replaced by a session that does not persist: the stuck one's record goes at
        // once, since its connection will not delete it.
        let mut stuck = open(&s, "d", NEVER, 3).await.unwrap();
        sub(&hub, &mut stuck, "d/t");
        s.persist(&stuck.state).await;
        s.persist_subscription(&stuck.state, "d/t", Some(&qos1()))
            .await;
        let clean = s.open("d", true, 0, 4, None).await.unwrap();
        assert!(!s.close(stuck, 3).await);
        store.close().await;
        tokio::task::spawn_blocking(move || join.join())
            .await
            .unwrap();
        let records = store.load_sessions().unwrap();
        assert_eq!(
            records.len(),
            1,
            "c: the new owner's record is kept; d: deleted"
        );
        assert_eq!(records[0].client_id, "c");
        assert!(decode_record(&records[0].record).is_some());
        assert_eq!(
            records[0].subs,
            vec![("new/t".to_string(), encode_sub(&qos1()))],
            "the old connection's subscription row went with the session it was replaced in"
        );
        drop((new, clean));
    }

    #[test]
    fn shared_subscriptions_route_on_the_inner_filter() {
        let opts = SubOptions {
            qos: 1,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            sub_id: 0,
            share: Some("g1".into()),
        };
        let (f, key) = router_key("$share/g1/a/+", &opts);
        assert_eq!(f, "a/+");
        assert_ne!(key, 0);
        let plain = SubOptions {
            share: None,
            ..opts
        };
        assert_eq!(router_key("a/+", &plain), ("a/+", 0));
    }
}
