//! The hub: what every session shares, and the one ingest path for both protocols.
//!
//! `Hub::publish` is the middle of the straight line listener -> codec -> session ->
//! router -> store: it routes to local subscribers first (never waiting for disk), then
//! queues the event for the store if a forwarding rule selects it.

use super::durable::Durable;
use super::retained::Retained;
use crate::budget::Budget;
use crate::event::Event;
use crate::forward::Forwarding;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::router::{Delivery, Outbox, Routed, Router};
use crate::store::{Store, StoreError};
use crate::transport::listen::RateLimitedLog;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The outcome of [`Hub::publish`].
pub struct Published {
    /// Local deliveries made and refused.
    pub routed: Routed,
    /// Set when the event was written to the store (a forwarding rule selected it, or
    /// it was queued for persistent sessions): resolves once all of that is durable.
    pub durable: Option<Durable>,
}

/// A reload took away what a connection's client proved (its user, password or token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked;

pub struct Hub {
    /// Authentication and access: private, asked through [`Hub::policy`]; replaced
    /// whole by a reload ([`Hub::replace_policy`]).
    policy: RwLock<Arc<Policy>>,
    /// The current policy's generation: a connection whose identity is older asks
    /// [`Policy::refresh`] before it handles its next packet.
    policy_generation: AtomicU64,
    /// The TLS acceptors of the listeners, for a reload to give new certificates.
    #[cfg(feature = "tls")]
    tls: std::sync::Mutex<Vec<crate::transport::tls::Acceptor>>,
    pub budget: Arc<Budget>,
    /// The limits new connections and sessions take, and the listeners' caps: replaced
    /// by a reload ([`Hub::replace_settings`]).
    pub settings: super::settings::Settings,
    /// Places in the budget's connections share, for every listener of both protocols.
    pub admission: Arc<crate::transport::admission::Admission>,
    pub router: Router,
    pub retained: Retained,
    /// The forward rules, replaced whole by a reload ([`Hub::replace_forwarding`]).
    forwarding: RwLock<Arc<Forwarding>>,
    pub store: Option<Store>,
    pub metrics: Arc<Metrics>,
    /// Refusals at the budget's limits are logged at most once a second (counted always).
    pub limit_log: RateLimitedLog,
    /// Connections that end before CONNECT (scanners, fuzzers, a device with a broken
    /// stack) are logged at most once a second, with how many were not: a flood of them
    /// must not wear an SD card out through the log.
    pub handshake_log: RateLimitedLog,
    /// Taken from a retained update until its change is queued for the store, so the
    /// store applies retained changes in the order the table made them (two publishes
    /// on one topic cannot leave the store holding the one the table replaced).
    retained_order: tokio::sync::Mutex<()>,
    next_conn: AtomicU64,
}

impl Hub {
    pub fn new(
        forwarding: Forwarding,
        store: Option<Store>,
        metrics: Arc<Metrics>,
        config: Arc<crate::config::Config>,
        policy: Policy,
        budget: Arc<Budget>,
    ) -> Hub {
        let retained = Retained::new(budget.retained, metrics.clone());
        retained.set_limits(&config.mqtt);
        Hub {
            settings: super::settings::Settings::new(config),
            policy: RwLock::new(Arc::new(policy)),
            policy_generation: AtomicU64::new(0),
            #[cfg(feature = "tls")]
            tls: std::sync::Mutex::new(Vec::new()),
            router: Router::with_pool(budget.state.clone()),
            retained,
            admission: crate::transport::admission::Admission::new(budget.connections.clone()),
            budget,
            forwarding: RwLock::new(Arc::new(forwarding)),
            store,
            metrics,
            limit_log: RateLimitedLog::default(),
            handshake_log: RateLimitedLog::default(),
            retained_order: tokio::sync::Mutex::new(()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// A reload's configuration: the limits of the connections and sessions that start
    /// from now on, the listeners' caps, the publisher stall, and the retained table's
    /// bounds (lowered: what it holds stays, new messages wait until it is under them).
    pub fn replace_settings(&self, config: Arc<crate::config::Config>) {
        self.retained.set_limits(&config.mqtt);
        self.settings.replace(config);
    }

    /// Who may connect and do what: the one policy point of both protocols.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reload's new policy (made by [`Policy::reloaded`] from the current one): every
    /// subscription is granted again under it (the router keeps each in place with its
    /// new read check), and online subscribers that lost every right on some subscription
    /// are told to close. Connections refresh their own identity before their next packet
    /// ([`Hub::refresh`]). Returns how many subscribers were told to close.
    pub fn replace_policy(&self, new: Policy) -> usize {
        let new = Arc::new(new);
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        // Each identity is mapped once: every subscription of a client shares it.
        let mut mapped: std::collections::HashMap<usize, Option<crate::policy::Identity>> =
            std::collections::HashMap::new();
        let revoked = self.router.regrant(&mut |who, filter| {
            let now = mapped
                .entry(who.key())
                .or_insert_with(|| new.refresh(who))
                .clone()?;
            let grant = new.regrant(&now, filter);
            Some((now, grant))
        });
        self.policy_generation
            .store(new.generation(), Ordering::Release);
        revoked.len()
    }

    /// The forward rules in force.
    pub fn forwarding(&self) -> Arc<Forwarding> {
        self.forwarding
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reload's forward rules: events matched from now on follow them. Returns once
    /// every event matched under the old rules has been queued for the store (each
    /// publish holds the rules it matched with until then), so that the store's
    /// [`crate::store::Store::barrier`] that follows covers them all.
    pub async fn replace_forwarding(&self, new: Forwarding) {
        let old = std::mem::replace(
            &mut *self.forwarding.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(new),
        );
        // A publish holds its rules for at most the store queue's wait: poll briefly.
        while Arc::strong_count(&old) > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// A listener's TLS acceptor, which a reload may give new certificates.
    #[cfg(feature = "tls")]
    pub fn register_tls(&self, acceptor: &crate::transport::tls::Acceptor) {
        self.tls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(acceptor.clone());
    }

    /// Whether any listener speaks TLS.
    #[cfg(feature = "tls")]
    pub fn has_tls(&self) -> bool {
        !self
            .tls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Every TLS listener takes `next`'s certificates for its next handshakes.
    #[cfg(feature = "tls")]
    pub fn replace_tls(&self, next: &crate::transport::tls::Acceptor) {
        for a in self.tls.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            a.adopt(next);
        }
    }

    /// A connection's identity under the current policy: `Ok(None)` when `who` is
    /// current (one atomic load: this runs before every packet), `Ok(Some(identity))`
    /// for the refreshed one after a reload, `Err(Revoked)` when what the client proved
    /// no longer holds (the connection must close).
    pub fn refresh(
        &self,
        who: &crate::policy::Identity,
    ) -> Result<Option<crate::policy::Identity>, Revoked> {
        if who.generation() == self.policy_generation.load(Ordering::Acquire) {
            return Ok(None);
        }
        self.policy().refresh(who).map(Some).ok_or(Revoked)
    }

    /// A process-unique connection id (never 0, which means "no connection").
    pub fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Delivers `event` locally and, if a rule selects it, queues it for the store.
    /// `durable` is `Some` when the event was queued for the store; the caller acks the
    /// publisher when it resolves. Waits while the store queue is full, and for at most
    /// `limits.publisher_stall` while subscribers it fed are past their high-water mark
    /// (backpressure on this publisher only). `from_conn` is the publisher's router
    /// identity: its own no-local subscriptions skip the event, and it never waits for
    /// its own queue (it is the one that drains it).
    pub async fn publish(
        &self,
        event: Arc<Event>,
        from_conn: u64,
    ) -> Result<Published, StoreError> {
        self.publish_as(event, from_conn, from_conn).await
    }

    /// The reply the server makes to a NATS durable request (its PubAck): delivered to the
    /// subscribers of its subject (the requester's inbox) and nothing else. It is not an
    /// event anyone published: never counted as received, never retained, stored or
    /// forwarded (a `#` forward rule must not store every acknowledgement), and nobody's
    /// no-local skips it (it comes from the server). A QoS 0 message: a persistent
    /// session never queues it.
    pub fn reply(&self, event: Arc<Event>) {
        let routed = self.router.route(&event, 0);
        self.metrics.deliveries.add(routed.delivered as u64);
    }

    /// A `$SYS` status message (`super::sys`): kept as its topic's retained message in
    /// memory and delivered to local subscribers (the ACL checks each delivery), never
    /// counted as received, stored or forwarded: it is ferry talking, every few seconds,
    /// and an SD card must not see it.
    pub fn publish_status(&self, event: Arc<Event>) {
        self.retained.set_status(&event);
        let routed = self.router.route(&event, 0);
        self.metrics.deliveries.add(routed.delivered as u64);
    }

    /// [`Hub::publish`] with `echo_conn` (whose no-local subscriptions skip the event)
    /// apart from `own_conn` (the connection that never waits for itself).
    async fn publish_as(
        &self,
        event: Arc<Event>,
        echo_conn: u64,
        own_conn: u64,
    ) -> Result<Published, StoreError> {
        self.metrics.events_received.inc();
        // The rarer steps are boxed: their futures would otherwise be part of the state
        // of every connection's task for its whole life.
        if event.retain {
            Box::pin(self.retain(&event)).await?;
        }
        let mut routed = self.router.route(&event, echo_conn);
        self.metrics.deliveries.add(routed.delivered as u64);
        // Held until the event is queued for the store: a reload waits for every event
        // matched under the old rules to be queued (`Hub::replace_forwarding`).
        let forwarding = self.forwarding();
        let (dests, routes) = forwarding.destinations(&event.topic);
        // Boxed too: a stored event allocates anyway (its record, its ack channel), and
        // inline the append's waits (the store queue, its byte budget) would be part of
        // every connection's task.
        let log = match &self.store {
            Some(store) if dests != 0 => {
                Some(Box::pin(store.append_routed(event, dests, routes)).await?)
            }
            _ => None,
        };
        drop(forwarding);
        let spooled = std::mem::take(&mut routed.spooled);
        let queued = if spooled.is_empty() {
            Vec::new()
        } else {
            Box::pin(self.spool(spooled)).await?
        };
        let stalled = std::mem::take(&mut routed.stalled);
        if !stalled.is_empty() {
            Box::pin(self.stall(stalled, own_conn)).await;
        }
        let durable = Durable::build(log, queued);
        Ok(Published { routed, durable })
    }

    /// Queues the QoS 1/2 deliveries to persistent sessions in the store: the publisher
    /// is acknowledged once they are durable.
    async fn spool(
        &self,
        spooled: Vec<(Arc<Outbox>, Delivery)>,
    ) -> Result<
        Vec<tokio::sync::oneshot::Receiver<Result<crate::store::Queued, StoreError>>>,
        StoreError,
    > {
        let mut queued = Vec::with_capacity(spooled.len());
        let Some(store) = &self.store else {
            return Ok(queued);
        };
        for (outbox, delivery) in spooled {
            let Some(spool) = outbox.spool() else {
                continue;
            };
            let row = match crate::store::encode_queued(&delivery) {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!(client_id = %spool.client_id, error = %e, "delivery not queued: it does not encode");
                    continue;
                }
            };
            let rx = store
                .enqueue(
                    spool.client_id.clone(),
                    row,
                    spool.bound,
                    spool.signal.clone(),
                )
                .await?;
            queued.push(rx);
        }
        Ok(queued)
    }

    /// Keeps `event` as its topic's retained message (or clears it), and the store in
    /// step. One that does not fit is refused (counted by the table, logged here at most
    /// once a second) and still delivered live by the caller.
    async fn retain(&self, event: &Arc<Event>) -> Result<(), StoreError> {
        let _order = self.retained_order.lock().await;
        let update = self.retained.update(event);
        if let Some(r) = update.refused {
            if let Some(suppressed) = self.limit_log.allow() {
                tracing::warn!(topic = %event.topic, size = r.size, limit = r.key, max = r.max, suppressed,
                    "retained message not kept (delivered live only): the retained messages would pass their limit");
            }
        }
        match (update.change, &self.store) {
            (Some(change), Some(store)) => store.change_retained(change).await,
            _ => Ok(()),
        }
    }

    /// Holds the publisher back while subscribers it fed drain below their high-water
    /// mark: one deadline for all of them, so a publish waits at most
    /// `limits.publisher_stall` in total.
    async fn stall(&self, stalled: Vec<Arc<Outbox>>, own_conn: u64) {
        let stall = self.settings.publisher_stall();
        if stalled.is_empty() || stall.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + stall;
        for outbox in stalled.iter().filter(|o| o.conn_id() != own_conn) {
            self.metrics.delivery.stalls.inc();
            if !outbox.wait_room(deadline).await {
                self.metrics.delivery.stall_timeouts.inc();
            }
        }
    }
}
