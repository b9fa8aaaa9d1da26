//! Sessions re-created from the store at startup.

use super::*;

impl Sessions {
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
                if subscribe(&self.hub, &state, &filter, &opts, &who, grant.guard()).is_err() {
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
}
