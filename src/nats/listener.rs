//! The NATS listener: its INFO, and the shared accept loop (`transport::listen`).

use super::connection;
use super::proto::{ServerInfo, encode_err};
use crate::broker::Hub;
use crate::broker::StartError;
use crate::config::{Config, NatsConfig, NatsTls};
use crate::transport::listen::{self, ListenOptions, Transport};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The nats-server version ferry reports in INFO. Clients gate features on it (headers
/// and no-responders need 2.2+), so it names the protocol level ferry implements rather
/// than ferry's own version, which goes into `go` for operators to see.
pub const NATS_COMPAT_VERSION: &str = "2.10.0";

/// What every NATS connection task shares.
pub struct NatsCtx {
    pub hub: Arc<Hub>,
    /// `nats.tls` as ferry started with it (the acceptor below is made for it).
    pub tls_mode: NatsTls,
    /// INFO without the per-connection fields (client_id, client_ip, and what the
    /// connection's settings say: max_payload, server_name).
    pub info: ServerInfo,
    /// For `nats.tls` other than "off".
    #[cfg(feature = "tls")]
    pub tls: Option<crate::transport::tls::Acceptor>,
    /// Failed TLS handshakes are logged at most once a second.
    pub handshake_log: crate::transport::listen::RateLimitedLog,
}

impl NatsCtx {
    /// The INFO for one connection, which runs under `cfg`.
    pub fn info_for(&self, client_id: u64, peer: SocketAddr, cfg: &NatsConfig) -> ServerInfo {
        let mut info = self.info.clone();
        info.client_id = client_id;
        info.client_ip = peer.ip().to_string();
        info.max_payload = usize::try_from(cfg.max_payload.0).unwrap_or(usize::MAX);
        info.server_name.clone_from(&cfg.server_name);
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
    shutdown: watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, StartError> {
    let Some(addr) = config.nats.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::listen("NATS", addr, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::listen("NATS", addr, e))?;
    #[cfg(feature = "tls")]
    let tls = match config.nats.tls {
        NatsTls::Off => None,
        _ => {
            let acceptor = crate::transport::tls::Acceptor::new(&config.tls)?;
            hub.register_tls(&acceptor);
            Some(acceptor)
        }
    };
    let info = ServerInfo {
        server_id: server_id(),
        server_name: config.nats.server_name.clone(),
        version: NATS_COMPAT_VERSION.to_string(),
        proto: 1,
        go: format!("ferry {}", env!("CARGO_PKG_VERSION")),
        host: addr.ip().to_string(),
        port: addr.port(),
        headers: true,
        auth_required: hub.policy().auth_required(),
        tls_required: false,
        tls_available: false,
        max_payload: config.nats.max_payload.0 as usize,
        client_id: 0,
        client_ip: String::new(),
    };
    let opts = ListenOptions {
        protocol: "NATS",
        transport: Transport::Tcp,
        limits: hub.settings.nats.clone(),
        #[cfg(feature = "tls")]
        tls: tls.clone(),
        ws_path: String::new(),
        metrics: hub.metrics.clone(),
        admission: hub.admission.clone(),
        memory_log: Default::default(),
        on_refused: Some(|stream| {
            // Best effort, never waiting: tell the client why, as nats-server does.
            let mut err = BytesMut::new();
            encode_err("maximum connections exceeded", &mut err);
            let _ = stream.try_write(&err);
        }),
    };
    let ctx = Arc::new(NatsCtx {
        tls_mode: config.nats.tls,
        hub,
        info,
        #[cfg(feature = "tls")]
        tls,
        handshake_log: Default::default(),
    });
    let task = listen::spawn(listener, opts, shutdown, move |conn, stop| {
        connection::serve(conn, ctx.clone(), stop)
    });
    Ok(Some((addr, task)))
}
