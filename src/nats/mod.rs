//! The NATS client-protocol listener: nats-py, async-nats and nats.go programs connect
//! to ferry as to a nats-server. Subjects are mapped into the one canonical (MQTT-form)
//! topic space (see `crate::topic::nats` and docs/topic-mapping.md), so NATS and MQTT
//! clients see each other's messages and forwarding rules apply to both.
//!
//! Layers, outermost first: listener (accept, connection cap) -> connection (the I/O
//! loop) -> ops (PUB/SUB/UNSUB against the hub) -> session (pure per-connection state)
//! and deliver (router deliveries -> MSG/HMSG) -> proto (parser and encoders).

mod connection;
mod deliver;
mod handshake;
mod listener;
mod ops;
pub mod proto;
mod puback;
mod session;
#[cfg(test)]
mod size_tests;

use crate::broker::Hub;
use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use listener::NATS_COMPAT_VERSION;
pub use puback::STREAM as PUBACK_STREAM;

/// Binds the NATS listener and starts accepting; the task ends on shutdown after every
/// connection has closed.
pub async fn listen(
    config: Arc<Config>,
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, crate::broker::StartError> {
    listener::listen(config, hub, shutdown).await
}
