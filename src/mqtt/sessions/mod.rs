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
use crate::config::MqttConfig;
use crate::router::{Outbox, Spool};
use crate::store::{QueueBound, QueueSignal, StateChange, StoredSession};
use crate::transport::listen::RateLimitedLog;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a new connection waits for the one it kicked to hand the session over.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

mod registry;
mod restore;
mod routing;
#[cfg(test)]
mod tests;

use registry::{Registry, Slot};
pub use routing::{router_key, subscribe};

pub struct Sessions {
    registry: Mutex<Registry>,
    hub: Arc<Hub>,
    /// How long a connection waits for a kicked one (a field so tests can shorten it).
    takeover_wait: Duration,
    /// A flood of new sessions evicts at every CONNECT: one warning a second says so.
    evict_log: RateLimitedLog,
}

/// What bounds the sessions: `[mqtt]` `max_sessions`, `max_session_expiry`, `max_queued`
/// and `max_queued_bytes`, as the hub's settings hold them now.
struct Bounds {
    max_sessions: usize,
    /// `max_session_expiry` in seconds, below [`super::session::NEVER`].
    max_expiry: u32,
    max_queued: usize,
    max_queued_bytes: usize,
}

impl Bounds {
    fn of(cfg: &MqttConfig) -> Bounds {
        let never = super::session::NEVER;
        Bounds {
            max_sessions: cfg.max_sessions,
            max_expiry: u32::try_from(cfg.max_session_expiry.as_secs())
                .unwrap_or(never)
                .clamp(1, never - 1),
            max_queued: cfg.max_queued,
            max_queued_bytes: usize::try_from(cfg.max_queued_bytes.0).unwrap_or(usize::MAX),
        }
    }
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

impl Sessions {
    /// The sessions of the hub's MQTT clients, bounded by the hub's settings: a reload
    /// changes the bounds of the sessions made after it ([`Bounds`]).
    pub fn new(hub: Arc<Hub>) -> Sessions {
        Sessions {
            registry: Mutex::new(Registry::new(hub.budget.state.clone())),
            hub,
            takeover_wait: TAKEOVER_WAIT,
            evict_log: RateLimitedLog::default(),
        }
    }

    /// The bounds in force: a session takes its queue bounds when it is made, and the
    /// count and expiry caps are checked at each CONNECT.
    fn bounds(&self) -> Bounds {
        Bounds::of(&self.hub.settings.current().mqtt)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The expiry a session gets when `requested` is asked for (at CONNECT, at an MQTT 5
    /// DISCONNECT, or by a stored record): at most `max_session_expiry`, "never" included.
    pub fn granted_expiry(&self, requested: u32) -> u32 {
        requested.min(self.bounds().max_expiry)
    }

    /// A new session. A persistent one (expiry > 0) queues its QoS 1/2 deliveries in the
    /// store when there is one, bounded there by `max_queued_bytes`.
    fn fresh(&self, client_id: &str, expiry: u32) -> SessionState {
        let bounds = self.bounds();
        let (outbox, rx) = Outbox::new(
            self.hub.conn_id(),
            bounds.max_queued,
            bounds.max_queued_bytes,
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
                    bytes: bounds.max_queued_bytes as u64,
                    count: bounds.max_queued as u64,
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
        let max_sessions = self.bounds().max_sessions;
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
                while reg.persistent >= max_sessions {
                    match reg.evict_oldest() {
                        Some(state) => evicted.push(state),
                        None => break,
                    }
                }
            }
            if needs_place && reg.persistent >= max_sessions {
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
                    max_sessions = self.bounds().max_sessions,
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
