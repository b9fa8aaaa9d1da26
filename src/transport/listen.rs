//! The accept loop every listener runs, whatever protocol and transport: the connection
//! cap, socket options, backoff on accept errors, and one task per connection in which
//! the transport's handshake (TLS, WebSocket upgrade) runs under a deadline. A handshake
//! never runs in the accept loop, so one stalled client cannot hold up the others.

use super::Stream;
use super::admission::{Admission, ConnectionCharge, NoPlace};
use super::cap::{ListenLimits, Slot};
use crate::metrics::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What carries the protocol on one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// A connection ready for its protocol.
pub struct Accepted {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// The user a verified client certificate names (`tls.identity_from_cert`).
    pub cert_user: Option<String>,
    pub transport: Transport,
    /// The connection's place in the budget; the protocol admits it once the client
    /// proved itself (`ConnectionCharge::admit`).
    pub charge: ConnectionCharge,
}

/// What a listener needs besides its socket.
#[derive(Clone)]
pub struct ListenOptions {
    /// "MQTT", "NATS": for logs.
    pub protocol: &'static str,
    pub transport: Transport,
    /// Shared by every listener of the protocol, changed by a reload: `max_connections`,
    /// the handshake deadline (the protocol's `connect_timeout`), the largest WebSocket
    /// frame.
    pub limits: Arc<ListenLimits>,
    #[cfg(feature = "tls")]
    pub tls: Option<super::tls::Acceptor>,
    pub ws_path: String,
    pub metrics: Arc<Metrics>,
    /// The budget's share for connections, shared by every listener.
    pub admission: Arc<Admission>,
    /// Refusals for want of memory are logged at most once a second.
    pub memory_log: Arc<RateLimitedLog>,
    /// Called (without waiting) on a connection refused at the cap, to tell the client.
    pub on_refused: Option<fn(&TcpStream)>,
}

/// Logs at most once per interval; the rest are counted and reported with the next line.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last_secs: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    /// Whether to log now; `Some(n)` carries how many were suppressed since the last.
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_secs.load(Ordering::Relaxed);
        if now > last
            && self
                .last_secs
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Accepts on `listener` until shutdown, then waits for every connection task it started.
/// `serve` runs one connection.
pub fn spawn<S, F>(
    listener: TcpListener,
    opts: ListenOptions,
    shutdown: watch::Receiver<bool>,
    serve: S,
) -> JoinHandle<()>
where
    S: Fn(Accepted, watch::Receiver<bool>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let opts = Arc::new(opts);
    let handshake_log = Arc::new(RateLimitedLog::default());
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = accept(&listener, &opts) => {
                    let Some((tcp, peer, permit, charge)) = accepted else { continue };
                    let (opts, serve, log) = (opts.clone(), serve.clone(), handshake_log.clone());
                    let shutdown = shutdown.clone();
                    conns.spawn(async move {
                        let _slot: Slot = permit;
                        // Boxed: the TLS and WebSocket handshakes run once, and inline their
                        // state (about 15 KiB) would be part of every connection's task
                        // for its whole life.
                        let handshake = tokio::time::timeout(opts.limits.handshake_timeout(), Box::pin(upgrade(tcp, peer, charge, &opts)));
                        let accepted = match handshake.await {
                            Ok(Ok(a)) => a,
                            Ok(Err(e)) => {
                                opts.metrics.auth.tls_failures.inc();
                                if let Some(suppressed) = log.allow() {
                                    tracing::info!(%peer, transport = opts.transport.as_str(), error = %e, suppressed, "{} handshake failed", opts.protocol);
                                }
                                return;
                            }
                            Err(_) => {
                                opts.metrics.auth.tls_failures.inc();
                                if let Some(suppressed) = log.allow() {
                                    tracing::info!(%peer, transport = opts.transport.as_str(), suppressed, "{} handshake not done within connect_timeout", opts.protocol);
                                }
                                return;
                            }
                        };
                        serve(accepted, shutdown).await;
                    });
                }
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
    })
}

/// One accepted socket under the cap and inside the budget, with its place in both;
/// None when refused or failed (already handled).
async fn accept(
    listener: &TcpListener,
    opts: &ListenOptions,
) -> Option<(TcpStream, SocketAddr, Slot, ConnectionCharge)> {
    let (stream, peer) = match listener.accept().await {
        Ok(a) => a,
        Err(e) => {
            // EMFILE and friends: back off briefly instead of spinning.
            tracing::warn!(error = %e, "{} accept failed", opts.protocol);
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        }
    };
    let Some(permit) = opts.limits.try_enter() else {
        opts.metrics.connections_refused.inc();
        if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::OverLimit) {
            tracing::warn!(%peer, suppressed, "{} connection refused: max_connections reached", opts.protocol);
        }
        if let Some(tell) = opts.on_refused {
            tell(&stream);
        }
        return None;
    };
    let charge = match opts.admission.enter(&stream) {
        Ok(admitted) => {
            if admitted.evicted {
                opts.metrics.limits.waiting_evicted.inc();
                if let Some(suppressed) = opts.memory_log.allow() {
                    let (open, waiting) = opts.admission.counts();
                    tracing::warn!(%peer, open, waiting, suppressed,
                        "{} connection that had not sent CONNECT yet closed to make room: connections not yet admitted hold their half of the connections' share of the memory budget ([limits] memory)", opts.protocol);
                }
            }
            admitted.charge
        }
        Err(why) => {
            opts.metrics.connections_refused.inc();
            opts.metrics.limits.connections.inc();
            if let Some(suppressed) = opts.memory_log.allow() {
                let (open, waiting) = opts.admission.counts();
                match why {
                    NoPlace::Full => tracing::warn!(%peer, open, waiting, suppressed,
                        "{} connection refused: connections would pass their share of the memory budget ([limits] memory)", opts.protocol),
                    NoPlace::NoDescriptor => tracing::warn!(%peer, open, waiting, suppressed,
                        "{} connection refused: out of file descriptors", opts.protocol),
                }
            }
            if let Some(tell) = opts.on_refused {
                tell(&stream);
            }
            return None;
        }
    };
    // Acks and small deliveries must not wait for Nagle (writes are coalesced by hand).
    let _ = stream.set_nodelay(true);
    // A small kernel send buffer keeps what a slow reader has not taken in ferry's
    // outbox, where it is counted and where publishers see that the subscriber is behind
    // (the stall), instead of in up to 4 MiB of autotuned socket buffer that only turns
    // writable again after half of it drained: seconds for a slow client, long past any
    // stall. It also bounds the kernel memory each client costs.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
    Some((stream, peer, permit, charge))
}

/// The kernel send buffer of a client connection (Linux doubles it for its own
/// bookkeeping): enough for a LAN's bandwidth-delay product.
const SEND_BUFFER: usize = 64 * 1024;

/// Why a transport handshake failed.
#[derive(Debug, thiserror::Error)]
enum UpgradeError {
    #[cfg(feature = "tls")]
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("WebSocket: {0}")]
    Ws(#[from] super::ws::WsError),
    #[error("{0} is not available in this build")]
    Unavailable(&'static str),
}

async fn upgrade(
    tcp: TcpStream,
    peer: SocketAddr,
    charge: ConnectionCharge,
    opts: &ListenOptions,
) -> Result<Accepted, UpgradeError> {
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut cert_user = None;
    let stream = match opts.transport {
        Transport::Tcp => Stream::Tcp(tcp),
        #[cfg(feature = "tls")]
        Transport::Tls => {
            let Some(tls) = &opts.tls else {
                return Err(UpgradeError::Unavailable("TLS"));
            };
            let s = tls.accept(tcp).await.map_err(UpgradeError::Tls)?;
            cert_user = tls.user_of(&s);
            Stream::Tls(Box::new(s))
        }
        Transport::Ws => Stream::Ws(Box::new(websocket(tcp, opts).await?)),
        #[cfg(feature = "tls")]
        Transport::Wss => {
            let Some(tls) = &opts.tls else {
                return Err(UpgradeError::Unavailable("TLS"));
            };
            let s = tls.accept(tcp).await.map_err(UpgradeError::Tls)?;
            cert_user = tls.user_of(&s);
            Stream::Wss(Box::new(websocket(s, opts).await?))
        }
        #[cfg(not(feature = "tls"))]
        Transport::Tls | Transport::Wss => return Err(UpgradeError::Unavailable("TLS")),
    };
    Ok(Accepted {
        stream,
        peer,
        cert_user,
        transport: opts.transport,
        charge,
    })
}

/// The HTTP upgrade on `path`, then frames of at most the limits' `ws_max_frame` bytes.
async fn websocket<S>(
    stream: S,
    opts: &ListenOptions,
) -> Result<super::ws::WsStream<S>, UpgradeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let ws = super::ws::accept(stream, &opts.ws_path, MAX_UPGRADE_REQUEST).await?;
    Ok(ws.with_max_payload(opts.limits.ws_max_frame()))
}

/// The longest HTTP upgrade request accepted (browsers send well under 2 KiB).
const MAX_UPGRADE_REQUEST: usize = 8 * 1024;
