//! Accepting one connection under a listener's connection cap: the part both protocol
//! listeners share.

use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What one `accept` produced.
pub enum Accepted {
    /// A connection and its slot under the cap (held for the connection's life).
    Conn(TcpStream, SocketAddr, OwnedSemaphorePermit),
    /// Over the cap: counted and logged; the caller may tell the client why.
    Refused(TcpStream),
    /// Accept failed (EMFILE and friends); already waited briefly, try again.
    Retry,
}

/// Accepts the next connection for `protocol` ("MQTT", "NATS").
pub async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    protocol: &str,
    metrics: &Metrics,
) -> Accepted {
    let (stream, peer) = match listener.accept().await {
        Ok(a) => a,
        Err(e) => {
            // Back off briefly instead of spinning on a persistent error.
            tracing::warn!(error = %e, "{protocol} accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Accepted::Retry;
        }
    };
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        metrics.connections_refused.inc();
        tracing::warn!(%peer, "{protocol} connection refused: max_connections reached");
        return Accepted::Refused(stream);
    };
    // Acks and small deliveries must not wait for Nagle (writes are coalesced by hand).
    let _ = stream.set_nodelay(true);
    Accepted::Conn(stream, peer, permit)
}
