//! What one idle NATS connection holds (issue 15: at most 4 KiB): the connection task's
//! state, measured as the size of its future.

use super::connection;
use super::listener::NatsCtx;
use super::proto::ServerInfo;
use crate::mqtt::size_tests::{accepted, hub};
use std::sync::Arc;

/// The future every NATS connection task is: the budget behind "an idle NATS
/// connection costs under 4 KiB" (docs/benchmarks.md). INFO and TLS, CONNECT and its
/// password check, and the close are boxed so they are not in it.
#[tokio::test]
async fn an_idle_connection_stays_within_its_budget() {
    let hub = hub();
    let ctx = Arc::new(NatsCtx {
        hub: hub.clone(),
        tls_mode: crate::config::NatsTls::Off,
        info: ServerInfo::default(),
        #[cfg(feature = "tls")]
        tls: None,
        handshake_log: Default::default(),
    });
    let (accepted, _client) = accepted(&hub).await;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let task = connection::serve(accepted, ctx, shutdown);
    let future = std::mem::size_of_val(&task);
    assert!(
        future <= 2304,
        "the NATS connection task holds {future} bytes"
    );
}
