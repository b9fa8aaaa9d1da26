//! Every MQTT session the broker holds, online or offline, by client id.
//!
//! A session is online while one connection owns its [`SessionState`]. When that
//! connection ends, a persistent session (expiry > 0) is parked here offline: its outbox
//! stays subscribed, so QoS 1/2 messages queue for it (bounded by `max_queued` and
//! `max_queued_bytes`; QoS 0 is not queued), until the client returns or it expires.
//! A second connection with the same client id kicks the first and waits for it to park
//! the state (MQTT 3.1.4 takeover), then resumes it.

use super::session::{NEVER, SessionState, SubOptions, decode_record};
use crate::broker::Hub;
use crate::config::MqttConfig;
use crate::policy::ReadGuard;
use crate::router::{NoRoom, Outbox, Subscription};
use crate::store::StateChange;
use std::collections::HashMap;
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
    },
    Offline {
        state: Box<SessionState>,
        expires: Option<Instant>,
    },
}

pub struct Sessions {
    slots: Mutex<HashMap<String, Slot>>,
    hub: Arc<Hub>,
    max_sessions: usize,
    max_queued: usize,
    max_queued_bytes: usize,
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

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
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
}

impl Sessions {
    pub fn new(hub: Arc<Hub>, cfg: &MqttConfig) -> Sessions {
        Sessions {
            slots: Mutex::new(HashMap::new()),
            hub,
            max_sessions: cfg.max_sessions,
            max_queued: cfg.max_queued,
            max_queued_bytes: usize::try_from(cfg.max_queued_bytes.0).unwrap_or(usize::MAX),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, client_id: &str, expiry: u32) -> SessionState {
        let (outbox, rx) = Outbox::new(
            self.hub.conn_id(),
            self.max_queued,
            self.max_queued_bytes,
            self.hub.budget.outboxes.clone(),
            self.hub.metrics.clone(),
        );
        SessionState::new(client_id.to_string(), outbox, rx, expiry)
    }

    /// Opens the session of `client_id` for connection `conn_id`: resumes it when it exists
    /// and `clean` is false, otherwise starts a new one.
    pub async fn open(
        &self,
        client_id: &str,
        clean: bool,
        expiry: u32,
        conn_id: u64,
        owner: Option<String>,
    ) -> Result<Opened, OpenError> {
        for attempt in 0..3 {
            let waiting = match self.lock().get(client_id) {
                Some(slot) if !slot.owned_by(&owner) => return Err(OpenError::NotOwner),
                Some(Slot::Online { kick, parked, .. }) => {
                    kick.notify_one();
                    Some(parked.clone())
                }
                _ => None,
            };
            if let Some(parked) = waiting {
                if tokio::time::timeout(TAKEOVER_WAIT, parked.notified())
                    .await
                    .is_err()
                    && attempt == 2
                {
                    tracing::warn!(
                        client_id,
                        "previous connection did not hand the session over; replacing it"
                    );
                    self.lock().remove(client_id);
                }
                continue;
            }
            break;
        }
        let (previous, opened) = {
            let mut slots = self.lock();
            if slots.get(client_id).is_some_and(|s| !s.owned_by(&owner)) {
                // Taken by another user while we waited for the old connection.
                return Err(OpenError::NotOwner);
            }
            let previous = match slots.remove(client_id) {
                Some(Slot::Offline { state, .. }) => Some(*state),
                Some(online @ Slot::Online { .. }) => {
                    slots.insert(client_id.to_string(), online);
                    None
                }
                None => None,
            };
            if previous.is_none() && slots.len() >= self.max_sessions {
                return Err(OpenError::TooManySessions);
            }
            let kick = Arc::new(Notify::new());
            let parked = Arc::new(Notify::new());
            slots.insert(
                client_id.to_string(),
                Slot::Online {
                    conn_id,
                    kick: kick.clone(),
                    parked: parked.clone(),
                    owner: owner.clone(),
                },
            );
            self.hub.metrics.sessions.set(slots.len() as i64);
            (previous, (kick, parked))
        };
        let (kick, parked) = opened;
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
            let dropped = state.outbox.dropped() - state.dropped_at_park;
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

    /// The connection of `opened` ended: park the session if it persists, else drop it.
    pub async fn close(&self, opened: Opened, conn_id: u64) {
        let Opened {
            mut state, parked, ..
        } = opened;
        let client_id = state.client_id.clone();
        let discard = {
            let mut slots = self.lock();
            let ours = matches!(slots.get(&client_id), Some(Slot::Online { conn_id: c, .. }) if *c == conn_id);
            if !ours {
                Some(state)
            } else if state.expiry == 0 {
                slots.remove(&client_id);
                Some(state)
            } else {
                state.outbox.set_offline(true);
                state.dropped_at_park = state.outbox.dropped();
                let expires = (state.expiry != NEVER)
                    .then(|| Instant::now() + Duration::from_secs(u64::from(state.expiry)));
                slots.insert(
                    client_id,
                    Slot::Offline {
                        state: Box::new(state),
                        expires,
                    },
                );
                None
            }
        };
        if let Some(state) = discard {
            self.discard(state).await;
        }
        self.hub.metrics.sessions.set(self.lock().len() as i64);
        parked.notify_one();
    }

    /// Forgets a session: its subscriptions leave the router and its record the store.
    async fn discard(&self, state: SessionState) {
        for (filter, opts) in &state.subs {
            let (router_filter, key) = router_key(filter, opts);
            self.hub.router.unsubscribe(router_filter, state.id(), key);
        }
        if let Some(store) = &self.hub.store {
            let change = StateChange::DeleteSession {
                client_id: state.client_id.clone(),
            };
            if let Err(e) = store.change_state(change).await {
                tracing::warn!(client_id = %state.client_id, error = %e, "cannot delete session record");
            }
        }
    }

    /// Writes the session's subscriptions to the store if it outlives its connection.
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
    pub fn restore(&self, records: Vec<(String, Vec<u8>)>) -> usize {
        let mut restored = 0;
        for (client_id, bytes) in records {
            let Some(rec) = decode_record(&bytes) else {
                tracing::warn!(%client_id, "session record not understood; skipped");
                continue;
            };
            let mut state = self.fresh(&client_id, rec.expiry);
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
                    continue;
                }
                if subscribe(&self.hub, &state, &filter, &opts, grant.guard()).is_err() {
                    self.hub.metrics.limits.subscriptions.inc();
                    tracing::warn!(%client_id, %filter, "stored subscription does not fit the memory budget ([limits] memory); dropped");
                    continue;
                }
                state.subs.insert(filter, opts);
            }
            state.outbox.set_offline(true);
            let expires = (rec.expiry != NEVER)
                .then(|| Instant::now() + Duration::from_secs(u64::from(rec.expiry)));
            self.lock().insert(
                client_id,
                Slot::Offline {
                    state: Box::new(state),
                    expires,
                },
            );
            restored += 1;
        }
        self.hub.metrics.sessions.set(self.lock().len() as i64);
        restored
    }

    /// True when a connection other than `conn_id` now holds the session of `client_id`.
    pub fn resumed_since(&self, client_id: &str, conn_id: u64) -> bool {
        matches!(self.lock().get(client_id), Some(Slot::Online { conn_id: c, .. }) if *c != conn_id)
    }

    /// Drops offline sessions whose expiry has passed; returns how many.
    pub async fn reap(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<SessionState> = {
            let mut slots = self.lock();
            let ids: Vec<String> = slots
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Offline { expires: Some(t), .. } if *t <= now))
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter()
                .filter_map(|id| match slots.remove(id) {
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
        self.hub.metrics.sessions.set(self.lock().len() as i64);
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
