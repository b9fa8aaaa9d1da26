//! The NATS client-protocol listener (work in progress: see issue 3).

pub mod proto;

use crate::broker::Hub;
use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub async fn listen(
    config: Arc<Config>,
    _hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(config.nats.listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = shutdown.changed().await;
        drop(listener);
    });
    Ok((addr, task))
}
