//! Forwarding: which stored events go to which upstream, and one link task per upstream.
//!
//! At ingest, [`Forwarding::destinations`] turns a topic into the mask of upstreams that
//! must receive it (empty mask: the event is not stored). Each link then reads its events
//! back from the store in seq order, so per-topic order upstream is the order of
//! acceptance (invariant 3).

mod backoff;
mod client;
mod link;
mod nats;
mod packed;
mod rate;
#[cfg(feature = "tls")]
pub mod tls;
mod watchdog;
mod window;

use crate::config::{Config, ForwardRule, UpstreamConfig};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::topic;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One `[[forward]]` rule, bound to its upstream.
#[derive(Debug, Clone)]
pub struct Route {
    pub filter: String,
    /// Remote topic template; `{topic}` stands for the local topic.
    pub template: Option<String>,
    pub qos: u8,
}

impl Route {
    /// The topic to publish upstream for local `topic`.
    pub fn remote_topic(&self, local: &str) -> String {
        match &self.template {
            Some(t) => t.replace("{topic}", local),
            None => local.to_string(),
        }
    }
}

/// Per upstream: its store bit and its routes, in config order.
#[derive(Debug, Clone)]
struct Target {
    bit: u8,
    routes: Vec<Route>,
}

/// The forwarding table used at ingest.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    targets: Vec<Target>,
}

impl Forwarding {
    /// Builds the table. `bits[i]` is the store bit of `upstreams[i]`.
    pub fn new(upstreams: &[UpstreamConfig], rules: &[ForwardRule], bits: &[u8]) -> Forwarding {
        let targets = upstreams
            .iter()
            .zip(bits)
            .map(|(u, bit)| Target {
                bit: *bit,
                routes: routes_for(&u.name, rules),
            })
            .collect();
        Forwarding { targets }
    }

    /// The mask of upstreams that must receive an event on `topic` (0: none).
    pub fn destinations(&self, topic: &str) -> u64 {
        let mut mask = 0;
        for t in &self.targets {
            if t.routes.iter().any(|r| topic::matches(&r.filter, topic)) {
                mask |= 1u64 << t.bit;
            }
        }
        mask
    }

    pub fn is_empty(&self) -> bool {
        self.targets.iter().all(|t| t.routes.is_empty())
    }
}

fn routes_for(upstream: &str, rules: &[ForwardRule]) -> Vec<Route> {
    rules
        .iter()
        .filter(|r| r.upstream == upstream)
        .map(|r| Route {
            filter: r.filter.clone(),
            template: r.topic.clone(),
            qos: r.qos,
        })
        .collect()
}

/// Starts one link task per `[[upstream]]`. They stop when `shutdown` turns true, after
/// persisting their cursor.
pub fn spawn_all(
    config: &Config,
    store: &Store,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let gateway: Arc<str> = gateway_id(&config.gateway.id).into();
    let mut tasks = Vec::new();
    for (slot_index, (upstream, slot)) in config.upstream.iter().zip(store.upstreams()).enumerate()
    {
        let link = link::Link {
            config: upstream.clone(),
            routes: routes_for(&upstream.name, &config.forward),
            store: store.clone(),
            slot: slot_index,
            bit: slot.bit,
            cursor: slot.cursor,
            metrics: metrics.upstream(&upstream.name),
            shutdown: shutdown.clone(),
            gateway: gateway.clone(),
            max_packet: usize::MAX,
            attempts: 0,
        };
        tasks.push(tokio::spawn(link.run()));
    }
    tasks
}

/// The gateway id: `[gateway] id`, or the host name when it is empty.
pub fn gateway_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_topic_template() {
        let r = Route {
            filter: "sensors/#".into(),
            template: Some("site-a/{topic}".into()),
            qos: 1,
        };
        assert_eq!(r.remote_topic("sensors/t/1"), "site-a/sensors/t/1");
        let plain = Route {
            template: None,
            ..r
        };
        assert_eq!(plain.remote_topic("sensors/t/1"), "sensors/t/1");
    }
}
