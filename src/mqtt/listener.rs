//! Accepting MQTT connections: the connection cap, socket options, one task per client.

use super::connection;
use super::sessions::Sessions;
use crate::broker::Hub;
use crate::broker::accept::{Accepted, accept};
use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// How often offline sessions are checked for expiry.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// What every MQTT connection task shares.
pub struct MqttCtx {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub sessions: Arc<Sessions>,
}

/// Binds the listener, restores stored sessions and starts accepting. The task ends on
/// shutdown, after every connection task it started has ended.
pub async fn listen(
    config: Arc<Config>,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(config.mqtt.listen).await?;
    let addr = listener.local_addr()?;
    let max = config.mqtt.max_connections;
    let sessions = Arc::new(Sessions::new(hub.clone(), &config.mqtt));
    if let Some(store) = hub.store.clone() {
        match tokio::task::spawn_blocking(move || store.load_sessions()).await {
            Ok(Ok(records)) => {
                let n = sessions.restore(records);
                if n > 0 {
                    tracing::info!(sessions = n, "restored persistent MQTT sessions");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot read stored MQTT sessions"),
            Err(e) => tracing::error!(error = %e, "session restore task failed"),
        }
    }
    let ctx = Arc::new(MqttCtx {
        config,
        hub,
        sessions,
    });
    let task = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(max));
        let mut conns = tokio::task::JoinSet::new();
        let mut reap = tokio::time::interval(REAP_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = reap.tick() => {
                    ctx.sessions.reap().await;
                }
                accepted = accept(&listener, &permits, "MQTT", &ctx.hub.metrics) => {
                    let Accepted::Conn(stream, peer, permit) = accepted else { continue };
                    let ctx = ctx.clone();
                    let shutdown = shutdown.clone();
                    conns.spawn(async move {
                        connection::serve(stream, peer, ctx, shutdown).await;
                        drop(permit);
                    });
                }
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
    });
    Ok((addr, task))
}
