//! Starting and stopping the whole broker: store, hub, listeners, upstream links.

pub mod accept;
mod http;
mod hub;
mod retained;

pub use hub::{Durable, Hub, Published};

use crate::budget::Budget;
use crate::config::Config;
use crate::forward::{self, Forwarding};
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions, WriterJoin};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A started broker. Dropping it does not stop it: call [`Running::shutdown`].
pub struct Running {
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    links: Vec<JoinHandle<()>>,
    store: Store,
    writer: WriterJoin,
    pub mqtt_addr: Option<SocketAddr>,
    pub nats_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
}

/// Opens the store and binds every listener; an error here means nothing was started.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::default());
    let names: Vec<String> = config.upstream.iter().map(|u| u.name.clone()).collect();
    let budget = Arc::new(Budget::new(
        usize::try_from(config.limits.memory.0).unwrap_or(usize::MAX),
        usize::try_from(config.store.cache_size.0).unwrap_or(usize::MAX),
    ));
    metrics.watch_budget(budget.clone());
    let opts = StoreOptions {
        cache_size: budget.cache,
        queue_bytes: budget.ingest_limit,
        max_batch: config.store.max_batch,
        linger: config.store.linger,
        queue: config.store.queue,
        limits: crate::store::Limits {
            max_bytes: config.store.max_bytes.0,
            max_age: config.store.max_age,
            on_full: config.store.on_full,
            fsync: config.store.fsync,
        },
    };
    let dir = config.store.dir.clone();
    let store_metrics = metrics.clone();
    let (store, writer) =
        tokio::task::spawn_blocking(move || Store::open(&dir, &names, opts, store_metrics))
            .await
            .context("store open task")?
            .with_context(|| format!("cannot open store in {}", config.store.dir.display()))?;
    let bits: Vec<u8> = store.upstreams().iter().map(|u| u.bit).collect();
    let forwarding = Forwarding::new(&config.upstream, &config.forward, &bits);
    let hub = Arc::new(Hub::new(
        forwarding,
        Some(store.clone()),
        metrics.clone(),
        config.mqtt.max_retained,
        crate::acl::Acl::new(config.acl.clone()),
        budget.clone(),
    ));
    let st = store.clone();
    let retained = tokio::task::spawn_blocking(move || st.load_retained())
        .await
        .context("store read task")?
        .context("cannot read retained messages from the store")?;
    hub.retained.restore(retained);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let config = Arc::new(config);

    let mut listeners = Vec::new();
    let mut mqtt_addr = None;
    if config.mqtt.enabled {
        let (addr, task) = crate::mqtt::listen(config.clone(), hub.clone(), shutdown_rx.clone())
            .await
            .with_context(|| format!("cannot listen for MQTT on {}", config.mqtt.listen))?;
        tracing::info!(%addr, "MQTT listener ready");
        mqtt_addr = Some(addr);
        listeners.push(task);
    }
    let mut nats_addr = None;
    if config.nats.enabled {
        let (addr, task) = crate::nats::listen(config.clone(), hub.clone(), shutdown_rx.clone())
            .await
            .with_context(|| format!("cannot listen for NATS on {}", config.nats.listen))?;
        tracing::info!(%addr, "NATS listener ready");
        nats_addr = Some(addr);
        listeners.push(task);
    }
    let mut metrics_addr = None;
    if let Some(listen) = config.metrics.listen {
        let (addr, task) = http::serve(listen, metrics.clone(), shutdown_rx.clone())
            .await
            .with_context(|| format!("cannot listen for metrics on {listen}"))?;
        tracing::info!(%addr, "metrics endpoint ready");
        metrics_addr = Some(addr);
        listeners.push(task);
    }
    let links = forward::spawn_all(&config, &store, &metrics, &shutdown_rx);
    Ok(Running {
        shutdown,
        listeners,
        links,
        store,
        writer,
        mqtt_addr,
        nats_addr,
        metrics_addr,
    })
}

impl Running {
    /// Stops accepting, closes connections, lets the links persist their cursors, then
    /// drains the store writer. Bounded: whatever is still running after `grace` is
    /// abandoned (everything acked is already durable).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let stop = async {
            for t in self.listeners.into_iter().chain(self.links) {
                let _ = t.await;
            }
            self.store.close().await;
        };
        if tokio::time::timeout(grace, stop).await.is_err() {
            tracing::warn!(?grace, "shutdown grace period over; stopping anyway");
        }
        drop(self.store);
        let writer = self.writer;
        let _ =
            tokio::time::timeout(grace, tokio::task::spawn_blocking(move || writer.join())).await;
    }
}
