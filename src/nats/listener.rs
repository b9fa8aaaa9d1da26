//! Accepting NATS connections: the connection cap, socket options, one task per client.

use super::connection;
use super::proto::{ServerInfo, encode_err};
use crate::broker::Hub;
use crate::broker::accept::{Accepted, accept};
use crate::config::Config;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// The nats-server version ferry reports in INFO. Clients gate features on it (headers
/// and no-responders need 2.2+), so it names the protocol level ferry implements rather
/// than ferry's own version, which goes into `go` for operators to see.
pub const NATS_COMPAT_VERSION: &str = "2.10.0";

/// What every NATS connection task shares.
pub struct NatsCtx {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    /// INFO without the per-connection fields (client_id, client_ip).
    pub info: ServerInfo,
}

impl NatsCtx {
    /// The INFO for one connection.
    pub fn info_for(&self, client_id: u64, peer: SocketAddr) -> ServerInfo {
        let mut info = self.info.clone();
        info.client_id = client_id;
        info.client_ip = peer.ip().to_string();
        info
    }
}

/// A server id in nats-server's shape (56 upper-case alphanumerics starting with N),
/// unique per process start.
fn server_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = nanos ^ (u128::from(std::process::id()) << 64);
    let mut id = format!("NFERRY{seed:032X}");
    while id.len() < 56 {
        id.push('0');
    }
    id
}

/// Binds the listener and starts accepting. The task ends on shutdown, after every
/// connection task it started has ended.
pub async fn listen(
    config: Arc<Config>,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(config.nats.listen).await?;
    let addr = listener.local_addr()?;
    let max = config.nats.max_connections;
    let info = ServerInfo {
        server_id: server_id(),
        server_name: config.nats.server_name.clone(),
        version: NATS_COMPAT_VERSION.to_string(),
        proto: 1,
        go: format!("ferry {}", env!("CARGO_PKG_VERSION")),
        host: addr.ip().to_string(),
        port: addr.port(),
        headers: true,
        auth_required: false,
        max_payload: config.nats.max_payload.0 as usize,
        client_id: 0,
        client_ip: String::new(),
    };
    let ctx = Arc::new(NatsCtx { config, hub, info });
    let task = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(max));
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = accept(&listener, &permits, "NATS", &ctx.hub.metrics) => {
                    let (stream, peer, permit) = match accepted {
                        Accepted::Conn(stream, peer, permit) => (stream, peer, permit),
                        Accepted::Refused(stream) => {
                            // Best effort, never waiting: tell the client why, as nats-server does.
                            let mut err = BytesMut::new();
                            encode_err("maximum connections exceeded", &mut err);
                            let _ = stream.try_write(&err);
                            continue;
                        }
                        Accepted::Retry => continue,
                    };
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
