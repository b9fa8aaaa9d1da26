//! Forwarding: which stored events go to which upstream, and one link task per upstream.
//!
//! At ingest, [`Forwarding::destinations`] turns a topic into the mask of upstreams that
//! must receive it (empty mask: the event is not stored). Each link then reads its events
//! back from the store in seq order, so per-topic order upstream is the order of
//! acceptance (invariant 3).

mod backoff;
mod client;
mod link;
mod links;
mod nats;
mod packed;
mod rate;
#[cfg(feature = "tls")]
pub mod tls;
mod watchdog;
mod window;
mod workers;

pub use links::{Changes, Links};

use crate::config::{Config, ForwardRule};
use crate::store::Routes;
use crate::topic;

/// One `[[forward]]` rule, bound to its upstream.
#[derive(Debug, Clone)]
pub struct Route {
    pub filter: String,
    /// Remote topic template; `{topic}` stands for the local topic.
    pub template: Option<String>,
    pub qos: u8,
    pub priority: u8,
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

/// One lane of an upstream: its events of one priority. Each lane is registered in the
/// store under a name of its own ([`crate::store::lane_name`]), so it has its own bit in
/// a record's destination mask and its own cursor: the link drains its lanes highest
/// priority first, and retention can tell which events are the least important.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// Index in `config.upstream`.
    pub upstream: usize,
    pub priority: u8,
}

/// Every lane, per upstream in config order, highest priority first. An upstream always
/// has its default-priority lane (the store name is the upstream's own name, so a store
/// written before priorities keeps its cursor), plus one per other priority its rules use.
pub fn lanes(config: &Config) -> Vec<Lane> {
    let mut out = Vec::new();
    for (i, u) in config.upstream.iter().enumerate() {
        let used = |p: u8| {
            p == crate::config::DEFAULT_PRIORITY
                || config
                    .forward
                    .iter()
                    .any(|r| r.upstream == u.name && r.priority == p)
        };
        out.extend((0..=9u8).rev().filter(|p| used(*p)).map(|priority| Lane {
            upstream: i,
            priority,
        }));
    }
    out
}

/// The store names of `lanes`, in the same order.
pub fn lane_names(config: &Config, lanes: &[Lane]) -> Vec<String> {
    lanes
        .iter()
        .map(|l| crate::store::lane_name(&config.upstream[l.upstream].name, l.priority))
        .collect()
}

/// Per upstream: its routes in config order, each with the store bit of its lane.
#[derive(Debug, Clone)]
struct Target {
    routes: Vec<(Route, u8)>,
}

/// The forwarding table used at ingest.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    targets: Vec<Target>,
}

impl Forwarding {
    /// Builds the table. `bits[i]` is the store bit of `lanes[i]`.
    pub fn new(config: &Config, lanes: &[Lane], bits: &[u8]) -> Forwarding {
        let targets = config
            .upstream
            .iter()
            .enumerate()
            .map(|(i, u)| Target {
                routes: routes_for(&u.name, &config.forward)
                    .into_iter()
                    .map(|r| {
                        let lane = lanes
                            .iter()
                            .position(|l| l.upstream == i && l.priority == r.priority);
                        let bit = lane.and_then(|l| bits.get(l)).copied().unwrap_or(0);
                        (r, bit)
                    })
                    .collect(),
            })
            .collect();
        Forwarding { targets }
    }

    /// The mask of lanes that must receive an event on `topic` (0: none): per upstream,
    /// the lane of the first rule that matches it, so a topic has one priority per
    /// upstream and its events keep their order there. With it, the index of that rule
    /// per lane, in bit order (stored with the event, so the link does not match again).
    pub fn destinations(&self, topic: &str) -> (u64, Routes) {
        let mut found: heapless::Vec<(u8, u16), 64> = heapless::Vec::new();
        for t in &self.targets {
            let first = t
                .routes
                .iter()
                .enumerate()
                .find(|(_, (r, _))| topic::matches(&r.filter, topic));
            if let Some((i, (_, bit))) = first {
                let _ = found.push((*bit, u16::try_from(i).unwrap_or(u16::MAX)));
            }
        }
        found.sort_unstable_by_key(|(bit, _)| *bit);
        let mask = found.iter().fold(0u64, |m, (bit, _)| m | (1u64 << bit));
        let routes = found.iter().map(|(_, i)| *i).take(4).collect();
        (mask, routes)
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
            priority: r.priority,
        })
        .collect()
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
            priority: 5,
        };
        assert_eq!(r.remote_topic("sensors/t/1"), "site-a/sensors/t/1");
        let plain = Route {
            template: None,
            ..r
        };
        assert_eq!(plain.remote_topic("sensors/t/1"), "sensors/t/1");
    }

    #[test]
    fn each_upstream_takes_the_first_matching_rules_priority() {
        let config = crate::config::parse(
            r##"
[[upstream]]
name = "a"
url = "mqtt://127.0.0.1:1883"
[[upstream]]
name = "b"
url = "mqtt://127.0.0.1:1884"
[[forward]]
upstream = "a"
filter = "alarm/#"
priority = 9
[[forward]]
upstream = "a"
filter = "#"
priority = 1
[[forward]]
upstream = "b"
filter = "#"
"##,
            "test.toml",
        )
        .unwrap();
        let lanes = lanes(&config);
        let pairs: Vec<(usize, u8)> = lanes.iter().map(|l| (l.upstream, l.priority)).collect();
        assert_eq!(pairs, vec![(0, 9), (0, 5), (0, 1), (1, 5)]);
        assert_eq!(lane_names(&config, &lanes), vec!["a.p9", "a", "a.p1", "b"]);
        let bits = [10, 11, 12, 13];
        let f = Forwarding::new(&config, &lanes, &bits);
        // "alarm/x" matches both of a's rules: the first one's lane (priority 9) only.
        // With the index of each lane's rule among its upstream's, in bit order.
        let routes = |r: &[u16]| Routes::from_slice(r).unwrap();
        assert_eq!(
            f.destinations("alarm/x"),
            ((1 << 10) | (1 << 13), routes(&[0, 0]))
        );
        assert_eq!(
            f.destinations("other"),
            ((1 << 12) | (1 << 13), routes(&[1, 0]))
        );
    }
}
