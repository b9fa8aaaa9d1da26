//! What one idle MQTT connection holds (issue 15: at most 4 KiB): the connection task's
//! state, measured as the size of its future, and the session state it owns.

use super::connection;
use super::listener::MqttCtx;
use super::sessions::Sessions;
use crate::broker::Hub;
use crate::transport::listen::{Accepted, Transport};
use std::sync::Arc;

pub(crate) fn hub() -> Arc<Hub> {
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let config = crate::config::Config::default();
    let policy = crate::policy::Policy::new(&config, metrics.clone()).unwrap();
    Arc::new(Hub::new(
        crate::forward::Forwarding::default(),
        None,
        metrics,
        Arc::new(config),
        policy,
        Arc::new(crate::budget::Budget::new(32 << 20, 4 << 20)),
    ))
}

/// A connection accepted on loopback, as the listener hands it over.
pub(crate) async fn accepted(hub: &Hub) -> (Accepted, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    let charge = hub.admission.enter(&server).unwrap().charge;
    let accepted = Accepted {
        stream: crate::transport::Stream::Tcp(server),
        peer,
        cert_user: None,
        transport: Transport::Tcp,
        charge,
    };
    (accepted, client)
}

/// The future every MQTT connection task is (its state while idle, and its largest
/// state), and what its session holds beside it: the budget behind "an idle MQTT
/// connection costs about 4 KiB" (docs/benchmarks.md). The rare steps (CONNECT, the
/// password check, opening and closing the session, the will, SUBSCRIBE, store waits)
/// are boxed so they are not in it.
#[tokio::test]
async fn an_idle_connection_stays_within_its_budget() {
    let hub = hub();
    let ctx = Arc::new(MqttCtx {
        hub: hub.clone(),
        sessions: Arc::new(Sessions::new(hub.clone())),
    });
    let (accepted, _client) = accepted(&hub).await;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let task = connection::serve(accepted, ctx, shutdown);
    let future = std::mem::size_of_val(&task);
    assert!(
        future <= 1792,
        "the MQTT connection task holds {future} bytes"
    );
    let session = std::mem::size_of::<super::sessions::Opened>()
        + std::mem::size_of::<crate::router::Outbox>();
    assert!(session <= 512, "an MQTT session holds {session} bytes");
}
