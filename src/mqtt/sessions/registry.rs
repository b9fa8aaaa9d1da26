//! The sessions table: slots by client id, and the bookkeeping that must change with them
//! (the count `max_sessions` caps, the eviction order, the memory offline slots hold).

use crate::budget::{MemoryPool, OFFLINE_SESSION_COST};
use crate::mqtt::session::SessionState;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(super) enum Slot {
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
pub(super) struct Registry {
    pub(super) slots: HashMap<String, Slot>,
    /// Slots of persistent sessions, online or offline: what `max_sessions` caps.
    pub(super) persistent: usize,
    /// The offline slots by `connected`, least recent first: which one to evict, found
    /// without a scan (a flood of new sessions meets a full table at every CONNECT).
    pub(super) offline: BTreeMap<u64, String>,
    /// Sessions opened (or restored) so far. A counter rather than a clock: it orders
    /// the connects strictly, even two within one clock tick.
    pub(super) connects: u64,
    /// The client-state share of the memory budget.
    pub(super) pool: Arc<MemoryPool>,
}

impl Slot {
    /// May a client authenticated as `user` take this session? A session restored from
    /// a record written before owners were stored has no known owner: the first
    /// authenticated client to claim it gets it.
    pub(super) fn owned_by(&self, user: &Option<String>) -> bool {
        match self {
            Slot::Online { owner, .. } => owner == user,
            Slot::Offline { state, .. } => state.owner.as_ref().is_none_or(|o| o == user),
        }
    }

    /// Counts against `max_sessions`: every offline slot is a persistent session.
    pub(super) fn counted(&self) -> bool {
        match self {
            Slot::Online { persistent, .. } => *persistent,
            Slot::Offline { .. } => true,
        }
    }
}

impl Registry {
    pub(super) fn new(pool: Arc<MemoryPool>) -> Registry {
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
    pub(super) fn make_room(&mut self, evicted: &mut Vec<SessionState>) -> bool {
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
    pub(super) fn insert(&mut self, client_id: String, slot: Slot) {
        self.remove(&client_id);
        if slot.counted() {
            self.persistent += 1;
        }
        if let Slot::Offline { connected, .. } = &slot {
            self.offline.insert(*connected, client_id.clone());
        }
        self.slots.insert(client_id, slot);
    }

    pub(super) fn remove(&mut self, client_id: &str) -> Option<Slot> {
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

    pub(super) fn next_connect(&mut self) -> u64 {
        self.connects += 1;
        self.connects
    }

    /// Takes out the offline session that connected least recently.
    pub(super) fn evict_oldest(&mut self) -> Option<SessionState> {
        let client_id = self.offline.first_key_value()?.1.clone();
        match self.remove(&client_id) {
            Some(Slot::Offline { state, .. }) => Some(*state),
            // Not reached: `offline` only names offline slots.
            _ => None,
        }
    }
}
