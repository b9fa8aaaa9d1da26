//! Accepting MQTT connections: the connection cap, socket options, one task per client.

use super::connection;
use super::registry::Registry;
use crate::broker::Hub;
use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// What every MQTT connection task shares.
pub struct MqttCtx {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub registry: Registry,
}

/// Binds the listener and starts accepting. The task ends on shutdown, after every
/// connection task it started has ended.
pub async fn listen(
    config: Arc<Config>,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(config.mqtt.listen).await?;
    let addr = listener.local_addr()?;
    let max = config.mqtt.max_connections;
    let ctx = Arc::new(MqttCtx {
        config,
        hub,
        registry: Registry::default(),
    });
    let task = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(max));
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off briefly instead of spinning.
                            tracing::warn!(error = %e, "MQTT accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        ctx.hub.metrics.connections_refused.inc();
                        tracing::warn!(%peer, max, "MQTT connection refused: connection limit reached");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
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
