//! The MQTT listeners (plain TCP, TLS, WebSocket, secure WebSocket), the sessions they
//! share, and the reaper of expired offline sessions.

use super::connection;
use super::sessions::Sessions;
use crate::broker::Hub;
use crate::broker::StartError;
use crate::config::Config;
use crate::transport::listen::{self, ListenOptions, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often offline sessions are checked for expiry.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// What every MQTT connection task shares.
pub struct MqttCtx {
    pub hub: Arc<Hub>,
    pub sessions: Arc<Sessions>,
}

/// The configured MQTT listeners: (transport, address) for each enabled one.
pub fn endpoints(config: &Config) -> Vec<(Transport, SocketAddr)> {
    let m = &config.mqtt;
    [
        (Transport::Tcp, m.listen),
        (Transport::Tls, m.tls_listen),
        (Transport::Ws, m.ws_listen),
        (Transport::Wss, m.wss_listen),
    ]
    .into_iter()
    .filter_map(|(t, a)| a.map(|a| (t, a)))
    .collect()
}

/// Binds every MQTT listener, restores stored sessions and starts accepting. Returns the
/// bound addresses and one task per listener plus the session reaper; all end on
/// shutdown, the listeners after every connection task they started has ended.
pub async fn listen(
    config: Arc<Config>,
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
) -> Result<(Vec<(Transport, SocketAddr)>, Vec<JoinHandle<()>>), StartError> {
    let mut bound = Vec::new();
    for (transport, addr) in endpoints(&config) {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::listen(format!("MQTT ({})", transport.as_str()), addr, e))?;
        bound.push((transport, listener));
    }
    #[cfg(feature = "tls")]
    let tls = if bound
        .iter()
        .any(|(t, _)| matches!(t, Transport::Tls | Transport::Wss))
    {
        let acceptor = crate::transport::tls::Acceptor::new(&config.tls)?;
        hub.register_tls(&acceptor);
        Some(acceptor)
    } else {
        None
    };
    let sessions = Arc::new(Sessions::new(hub.clone()));
    if let Some(store) = hub.store.clone() {
        match tokio::task::spawn_blocking(move || store.load_sessions()).await {
            Ok(Ok(records)) => {
                let (n, migrate) = sessions.restore(records);
                if n > 0 {
                    tracing::info!(sessions = n, "restored persistent MQTT sessions");
                }
                if let Some(store) = &hub.store {
                    for change in migrate {
                        if let Err(e) = store.change_state(change).await {
                            tracing::warn!(error = %e, "cannot store a session's subscriptions as rows");
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot read stored MQTT sessions"),
            Err(e) => tracing::error!(error = %e, "session restore task failed"),
        }
    }
    let ctx = Arc::new(MqttCtx {
        hub: hub.clone(),
        sessions,
    });
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for (transport, listener) in bound {
        let addr = listener.local_addr().map_err(|e| {
            let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
            StartError::listen(format!("MQTT ({})", transport.as_str()), unknown, e)
        })?;
        addrs.push((transport, addr));
        let opts = ListenOptions {
            protocol: "MQTT",
            transport,
            limits: hub.settings.mqtt.clone(),
            #[cfg(feature = "tls")]
            tls: tls.clone(),
            ws_path: config.mqtt.ws_path.clone(),
            metrics: hub.metrics.clone(),
            admission: hub.admission.clone(),
            memory_log: Default::default(),
            on_refused: None,
        };
        let ctx = ctx.clone();
        tasks.push(listen::spawn(
            listener,
            opts,
            shutdown.clone(),
            move |conn, stop| connection::serve(conn, ctx.clone(), stop),
        ));
    }
    let mut stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let mut reap = tokio::time::interval(REAP_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = reap.tick() => {
                    ctx.sessions.reap().await;
                }
            }
        }
    }));
    Ok((addrs, tasks))
}
