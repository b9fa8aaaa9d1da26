//! The hub: what every session shares, and the one ingest path for both protocols.
//!
//! `Hub::publish` is the middle of the straight line listener -> codec -> session ->
//! router -> store: it routes to local subscribers first (never waiting for disk), then
//! queues the event for the store if a forwarding rule selects it.

use super::retained::Retained;
use crate::budget::Budget;
use crate::event::Event;
use crate::forward::Forwarding;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::router::{Routed, Router};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// Resolves to the event's store seq once it is durable.
pub type Durable = oneshot::Receiver<Result<u64, StoreError>>;

/// The outcome of [`Hub::publish`].
pub struct Published {
    /// Local deliveries made and refused.
    pub routed: Routed,
    /// Set when a forwarding rule selected the event: resolves once it is durable.
    pub durable: Option<Durable>,
}

pub struct Hub {
    /// Authentication and access: private, asked through [`Hub::policy`].
    policy: Policy,
    pub budget: Arc<Budget>,
    pub router: Router,
    pub retained: Retained,
    pub forwarding: Forwarding,
    pub store: Option<Store>,
    pub metrics: Arc<Metrics>,
    next_conn: AtomicU64,
}

impl Hub {
    pub fn new(
        forwarding: Forwarding,
        store: Option<Store>,
        metrics: Arc<Metrics>,
        max_retained: usize,
        policy: Policy,
        budget: Arc<Budget>,
    ) -> Hub {
        Hub {
            policy,
            budget,
            router: Router::new(),
            retained: Retained::new(max_retained, metrics.clone()),
            forwarding,
            store,
            metrics,
            next_conn: AtomicU64::new(1),
        }
    }

    /// Who may connect and do what: the one policy point of both protocols.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A process-unique connection id (never 0, which means "no connection").
    pub fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Delivers `event` locally and, if a rule selects it, queues it for the store.
    /// `durable` is `Some` when the event was queued for the store; the caller acks the
    /// publisher when it resolves. Waits while the store queue is full (backpressure on
    /// this publisher only).
    pub async fn publish(
        &self,
        event: Arc<Event>,
        from_conn: u64,
    ) -> Result<Published, StoreError> {
        self.metrics.events_received.inc();
        if event.retain {
            if let (Some(change), Some(store)) = (self.retained.update(&event), &self.store) {
                store.change_state(change).await?;
            }
        }
        let routed = self.router.route(&event, from_conn);
        self.metrics.deliveries.add(routed.delivered as u64);
        let dests = self.forwarding.destinations(&event.topic);
        let durable = match &self.store {
            Some(store) if dests != 0 => Some(store.append(event, dests).await?),
            _ => None,
        };
        Ok(Published { routed, durable })
    }
}
