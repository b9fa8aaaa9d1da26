//! The running upstream links, one task per `[[upstream]]`, each with its own stop
//! signal, so that a reload can change them one by one: the link of an upstream whose
//! settings or forward rules changed is stopped (it persists its cursor) and started
//! again on the new ones from where the store says its lanes stand; the link of an
//! upstream the file no longer names is stopped, and its lanes keep their cursors, so
//! the store keeps its backlog; an upstream named again gets its link back.
//!
//! With `runtime.worker_threads` above 1 the links run on forwarding threads of their
//! own ([`Workers`]); otherwise on the event loop.
//!
//! The store registers lanes when it opens: a reload can use only those. An upstream or
//! a priority the store has no lane for waits for a restart ([`Links::bits_for`]).

use super::workers::Workers;
use super::{Lane, lane_names, link, routes_for};
use crate::config::{Config, ForwardRule, UpstreamConfig};
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopping link may take to persist its cursor and close its connection.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Links {
    store: Store,
    metrics: Arc<Metrics>,
    gateway: Arc<str>,
    /// The lanes the store has a slot for since it opened: (name, slot, bit).
    registered: Vec<(String, usize, u8)>,
    running: Vec<Running>,
    workers: Workers,
}

struct Running {
    config: UpstreamConfig,
    rules: Vec<ForwardRule>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a reload did to the links, by upstream name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
}

impl Links {
    /// Starts a link per upstream of `config` (`lanes` in the order the store
    /// registered them), on `threads - 1` forwarding threads (none: the event loop).
    pub fn start(
        config: &Config,
        lanes: &[Lane],
        store: &Store,
        metrics: &Arc<Metrics>,
        gateway: &str,
        threads: usize,
    ) -> Links {
        // Every lane the store keeps a slot for: the configured ones, and those of
        // upstreams (or priorities) no longer configured, whose backlog it keeps.
        let registered = store
            .upstreams()
            .iter()
            .enumerate()
            .map(|(slot, s)| (s.name.to_string(), slot, s.bit))
            .collect();
        let mut links = Links {
            store: store.clone(),
            metrics: metrics.clone(),
            gateway: gateway.into(),
            registered,
            running: Vec::new(),
            workers: Workers::new(threads),
        };
        let since = *store.committed().borrow();
        for i in 0..config.upstream.len() {
            links.spawn(config, lanes, i, since);
        }
        links
    }

    /// The store bit of each of `lanes` (of `config`), or the names of those the store
    /// has no place for yet.
    pub fn bits_for(&self, config: &Config, lanes: &[Lane]) -> Result<Vec<u8>, Vec<String>> {
        let mut missing = Vec::new();
        let mut bits = Vec::new();
        for name in lane_names(config, lanes) {
            match self.registered.iter().find(|(n, _, _)| *n == name) {
                Some((_, _, bit)) => bits.push(*bit),
                None => missing.push(name),
            }
        }
        if missing.is_empty() {
            Ok(bits)
        } else {
            Err(missing)
        }
    }

    fn spawn(&mut self, config: &Config, lanes: &[Lane], i: usize, rules_since: u64) {
        let upstream = &config.upstream[i];
        let names = lane_names(config, lanes);
        let own = lanes
            .iter()
            .zip(&names)
            .filter(|(l, _)| l.upstream == i)
            .filter_map(|(_, name)| {
                let (_, slot, bit) = self.registered.iter().find(|(n, _, _)| n == name)?;
                let (cursor, live) = self.store.lane_state(*slot)?;
                Some(link::LaneSlot {
                    slot: *slot,
                    bit: *bit,
                    cursor,
                    live,
                })
            })
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let link = link::Link {
            config: upstream.clone(),
            routes: routes_for(&upstream.name, &config.forward),
            store: self.store.clone(),
            lanes: own,
            metrics: self.metrics.upstream(&upstream.name),
            shutdown: stop_rx,
            gateway: self.gateway.clone(),
            max_packet: usize::MAX,
            attempts: 0,
            rules_since,
        };
        self.running.push(Running {
            config: upstream.clone(),
            rules: rules_of(config, &upstream.name),
            stop,
            task: self.workers.spawn(i, link.run()),
        });
    }

    /// Runs `config`'s upstreams (its lanes all registered: [`Links::bits_for`]): a link
    /// whose upstream and rules are as they were goes on; the others stop, and start
    /// again on the new ones with `rules_since` (the store's end once every event
    /// matched under the old rules is stored).
    pub async fn reload(&mut self, config: &Config, lanes: &[Lane], rules_since: u64) -> Changes {
        let mut changes = Changes::default();
        let mut kept = Vec::new();
        for r in std::mem::take(&mut self.running) {
            let same = config
                .upstream
                .iter()
                .any(|u| *u == r.config && rules_of(config, &u.name) == r.rules);
            if same {
                kept.push(r);
                continue;
            }
            let name = r.config.name.clone();
            stop(r).await;
            if config.upstream.iter().any(|u| u.name == name) {
                changes.restarted.push(name);
            } else {
                self.metrics.upstream(&name).connected.set(0);
                changes.stopped.push(name);
            }
        }
        self.running = kept;
        for (i, u) in config.upstream.iter().enumerate() {
            if self.running.iter().any(|r| r.config.name == u.name) {
                continue;
            }
            if !changes.restarted.contains(&u.name) {
                changes.started.push(u.name.clone());
            }
            self.spawn(config, lanes, i, rules_since);
        }
        changes
    }

    /// Forwarding threads running besides the event loop.
    pub fn threads(&self) -> usize {
        self.workers.threads()
    }

    /// Stops every link (each persists its cursor first), then the forwarding threads.
    pub async fn stop_all(mut self) {
        for r in &self.running {
            let _ = r.stop.send(true);
        }
        for r in std::mem::take(&mut self.running) {
            let _ = tokio::time::timeout(STOP_GRACE, r.task).await;
        }
        // Their links have ended: each thread's runtime is idle and drops at once
        // (one still running past its grace is dropped with it).
        self.workers.stop();
    }
}

async fn stop(r: Running) {
    let _ = r.stop.send(true);
    if tokio::time::timeout(STOP_GRACE, r.task).await.is_err() {
        tracing::warn!(upstream = %r.config.name, grace = ?STOP_GRACE, "upstream link did not stop in time; starting its successor anyway");
    }
}

fn rules_of(config: &Config, upstream: &str) -> Vec<ForwardRule> {
    config
        .forward
        .iter()
        .filter(|r| r.upstream == upstream)
        .cloned()
        .collect()
}
