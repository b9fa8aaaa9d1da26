//! Starting and stopping the whole broker: store, hub, listeners, upstream links.

mod durable;
mod health;
mod http;
mod hub;
mod reload;
mod retained;
mod settings;
mod start_error;
mod sys;

pub use durable::Durable;
pub use hub::{Hub, Published, Revoked};
pub use reload::Outcome as ReloadOutcome;
pub use start_error::StartError;

use crate::budget::Budget;
use crate::config::Config;
use crate::forward::{self, Forwarding};
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions, WriterJoin};
use crate::transport::listen::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A started broker. Dropping it does not stop it: call [`Running::shutdown`].
pub struct Running {
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    /// The upstream links; a reload changes them ([`Running::reload_from`]).
    links: tokio::sync::Mutex<forward::Links>,
    store: Store,
    writer: WriterJoin,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    configs: std::sync::Mutex<reload::Configs>,
    /// `[sys] interval`, which a reload may change.
    sys_interval: watch::Sender<Duration>,
    /// The admin socket's thread (stopped, and the socket removed, when dropped).
    _admin: Option<crate::admin::Admin>,
    /// Reloads asked through the admin socket: `main` answers them (it knows the file).
    pub reloads: Option<tokio::sync::mpsc::Receiver<crate::admin::ReloadRequest>>,
    /// The plain TCP MQTT listener.
    pub mqtt_addr: Option<SocketAddr>,
    /// Every MQTT listener, by transport.
    pub mqtt_addrs: Vec<(Transport, SocketAddr)>,
    pub nats_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
}

/// Loads the stored retained messages that fit the limits; the rest (the limits were
/// lowered) are deleted from the store, counted and logged once, so the store holds the
/// set the broker does.
async fn restore_retained(
    hub: &Hub,
    store: &Store,
    stored: Vec<crate::store::StoredEvent>,
    config: &Config,
) -> Result<(), StartError> {
    let left_out = hub.retained.restore(stored);
    if left_out.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        deleted = left_out.len(),
        max_retained = config.mqtt.max_retained,
        max_retained_bytes = hub.retained.max_bytes(),
        "stored retained messages beyond the limits were deleted (mqtt.max_retained or mqtt.max_retained_bytes was lowered)"
    );
    hub.metrics.retained_dropped.add(left_out.len() as u64);
    for topic in left_out {
        store
            .change_retained(crate::store::RetainedChange::Delete(topic))
            .await
            .map_err(StartError::DropRetained)?;
    }
    Ok(())
}

/// Opens the store and binds every listener; an error here means nothing was started.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::default());
    let lanes = forward::lanes(&config);
    let names = forward::lane_names(&config, &lanes);
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
            max_fsyncs_per_sec: config.store.max_fsyncs_per_sec,
            dead_letter_bytes: config.store.dead_letter_max_bytes.0,
            quarantine_bytes: config.store.quarantine_max_bytes.0,
        },
    };
    let dir = config.store.dir.clone();
    let store_metrics = metrics.clone();
    let (store, writer) =
        tokio::task::spawn_blocking(move || Store::open(&dir, &names, opts, store_metrics))
            .await
            .map_err(|e| StartError::Task {
                what: "store open",
                reason: e.to_string(),
            })?
            .map_err(|source| StartError::Store {
                dir: config.store.dir.display().to_string(),
                source,
            })?;
    let store = store.with_ingest(budget.ingest.clone(), budget.ingest_limit);
    let bits: Vec<u8> = store.upstreams().iter().map(|u| u.bit).collect();
    let forwarding = Forwarding::new(&config, &lanes, &bits);
    let policy = crate::policy::Policy::new(&config, metrics.clone())?;
    let config = Arc::new(config);
    let hub = Arc::new(Hub::new(
        forwarding,
        Some(store.clone()),
        metrics.clone(),
        config.clone(),
        policy,
        budget.clone(),
    ));
    let st = store.clone();
    let retained = tokio::task::spawn_blocking(move || st.load_retained())
        .await
        .map_err(|e| StartError::Task {
            what: "store read",
            reason: e.to_string(),
        })?
        .map_err(StartError::LoadRetained)?;
    restore_retained(&hub, &store, retained, &config).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let configs = std::sync::Mutex::new(reload::Configs {
        started: config.clone(),
        applied: config.clone(),
        links: config.clone(),
    });

    let mut listeners = Vec::new();
    let mut mqtt_addr = None;
    let mut mqtt_addrs = Vec::new();
    if config.mqtt.enabled {
        let (addrs, tasks) =
            crate::mqtt::listen(config.clone(), hub.clone(), shutdown_rx.clone()).await?;
        for (transport, addr) in &addrs {
            match transport {
                Transport::Tcp => {
                    tracing::info!(%addr, "MQTT listener ready");
                    mqtt_addr = Some(*addr);
                }
                Transport::Tls => tracing::info!(%addr, "MQTT TLS listener ready"),
                Transport::Ws => {
                    tracing::info!(%addr, path = %config.mqtt.ws_path, "MQTT WebSocket listener ready")
                }
                Transport::Wss => {
                    tracing::info!(%addr, path = %config.mqtt.ws_path, "MQTT secure WebSocket listener ready")
                }
            }
        }
        mqtt_addrs = addrs;
        listeners.extend(tasks);
    }
    let mut nats_addr = None;
    if config.nats.enabled {
        if let Some((addr, task)) =
            crate::nats::listen(config.clone(), hub.clone(), shutdown_rx.clone()).await?
        {
            tracing::info!(%addr, tls = config.nats.tls.as_str(), "NATS listener ready");
            nats_addr = Some(addr);
            listeners.push(task);
        }
    }
    warn_if_open(&config, &mqtt_addrs, nats_addr);
    let history = Arc::new(crate::admin::history::History::default());
    let (sys_interval, sys_rx) = watch::channel(config.sys.interval);
    listeners.push(tokio::spawn(sys::run(
        hub.clone(),
        history.clone(),
        sys_rx,
        shutdown_rx.clone(),
    )));
    let status = Arc::new(crate::admin::status::Source {
        metrics: metrics.clone(),
        store: store.clone(),
        history,
        gateway: forward::gateway_id(&config.gateway.id),
        board: config.board.clone(),
        started: std::time::Instant::now(),
    });
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let mut reloads = None;
    let mut admin = None;
    if let Some(path) = config.admin_socket() {
        admin = Some(crate::admin::serve(&path, status.clone(), reload_tx)?);
        tracing::info!(path = %path.display(), "admin socket ready (ferry status, ferry reload)");
        reloads = Some(reload_rx);
    }
    let mut metrics_addr = None;
    if let Some(listen) = config.metrics.listen {
        let (addr, task) = http::serve(
            listen,
            metrics.clone(),
            store.clone(),
            status.clone(),
            shutdown_rx.clone(),
        )
        .await
        .map_err(|e| StartError::listen("metrics", listen, e))?;
        tracing::info!(%addr, "metrics endpoint ready");
        metrics_addr = Some(addr);
        listeners.push(task);
    }
    let links = tokio::sync::Mutex::new(forward::Links::start(
        &config,
        &lanes,
        &store,
        &metrics,
        &forward::gateway_id(&config.gateway.id),
        config.runtime.worker_threads.resolve(),
    ));
    Ok(Running {
        shutdown,
        listeners,
        links,
        store,
        writer,
        hub,
        metrics,
        configs,
        sys_interval,
        _admin: admin,
        reloads,
        mqtt_addr,
        mqtt_addrs,
        nats_addr,
        metrics_addr,
    })
}

/// Says so, once per listener, when anyone who can reach a non-loopback address may
/// connect without credentials.
fn warn_if_open(config: &Config, mqtt: &[(Transport, SocketAddr)], nats: Option<SocketAddr>) {
    if !config.auth.allow_anonymous {
        return;
    }
    let exposed = mqtt
        .iter()
        .map(|(t, a)| (format!("MQTT {}", t.as_str()), *a))
        .chain(nats.map(|a| ("NATS".to_string(), a)))
        .filter(|(_, a)| !a.ip().is_loopback());
    for (listener, addr) in exposed {
        tracing::warn!(%addr, %listener, "accepting anonymous clients: anyone who can reach this address may publish and subscribe; set [auth] password_file (ferry passwd) or tls.client_ca_file, or listen on 127.0.0.1");
    }
}

impl Running {
    /// Stops accepting, closes connections, lets the links persist their cursors, then
    /// drains the store writer. Bounded: whatever is still running after `grace` is
    /// abandoned (everything acked is already durable).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        // The admin thread holds a store handle (for `ferry status`): it must be gone
        // before the store closes, or the database is still open when ferry exits and
        // the next start finds it not closed cleanly.
        drop(self._admin);
        let links = self.links.into_inner();
        let stop = async {
            links.stop_all().await;
            for t in self.listeners {
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
