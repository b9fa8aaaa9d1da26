//! The admin socket: how `ferry status` and `ferry reload` reach a running ferry, also
//! when `/metrics` is off.
//!
//! A Unix stream socket (`[admin] socket`, default `ferry.sock` in `store.dir`) with mode
//! 0660: the service's user and group may ask, nobody else (the directory's own mode
//! applies too). The protocol is one line from the client, `status` or `reload`, and
//! one JSON document back, then the connection closes. Bounded: at most [`MAX_CLIENTS`]
//! at once, a request of at most [`MAX_REQUEST`] bytes within [`TIMEOUT`].
//!
//! A reload is done by whoever owns the config file's path (`main`, which also reloads
//! on SIGHUP): the socket hands it a [`ReloadRequest`] and waits for the outcome.

pub mod client;
pub mod history;
pub mod status;

use crate::broker::ReloadOutcome;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub const MAX_CLIENTS: usize = 4;
pub const MAX_REQUEST: u64 = 256;
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A reload asked through the socket; the outcome goes back on the sender.
pub type ReloadRequest = oneshot::Sender<ReloadOutcome>;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("another ferry answers on the admin socket {0} (admin.socket): is it running already?")]
    InUse(PathBuf),
    #[error("cannot make the admin socket {path} (admin.socket): {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds `path` (a stale socket file left by a killed ferry is replaced; a live one is
/// not) and answers on it until `shutdown`, then removes it.
pub async fn serve(
    path: &Path,
    status: Arc<status::Source>,
    reloads: mpsc::Sender<ReloadRequest>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, AdminError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(AdminError::InUse(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    let bind_err = |source| AdminError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_err)?;
    let path = path.to_path_buf();
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    // Beyond MAX_CLIENTS at once, a client is closed unanswered.
                    let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                    let (status, reloads) = (status.clone(), reloads.clone());
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(TIMEOUT, answer(stream, &status, &reloads)).await;
                        drop(slot);
                    });
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn answer(
    stream: UnixStream,
    status: &status::Source,
    reloads: &mpsc::Sender<ReloadRequest>,
) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    BufReader::new(tokio::io::AsyncReadExt::take(rd, MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let body = match line.trim() {
        "status" => serde_json::to_string(&status.snapshot()),
        "reload" => {
            let (tx, rx) = oneshot::channel();
            let outcome = match reloads.send(tx).await {
                Ok(()) => rx.await.ok(),
                Err(_) => None,
            };
            let outcome = outcome.unwrap_or_else(|| ReloadOutcome {
                problems: vec!["ferry is stopping: no reload".into()],
                ..ReloadOutcome::default()
            });
            serde_json::to_string(&outcome)
        }
        other => Ok(serde_json::json!({
            "error": format!("unknown request {:?}: expected \"status\" or \"reload\"", other)
        })
        .to_string()),
    }
    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    wr.write_all(body.as_bytes()).await?;
    wr.write_all(b"\n").await?;
    wr.shutdown().await
}
