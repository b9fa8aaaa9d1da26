//! The admin socket: how `ferry status` and `ferry reload` reach a running ferry, also
//! when `/metrics` is off.
//!
//! A Unix stream socket (`[admin] socket`, default `ferry.sock` in `store.dir`) with mode
//! 0660: the service's user and group may ask, nobody else (the directory's own mode
//! applies too). The protocol is one line from the client, `status`, `status json` or
//! `reload`, and the answer to print back, then the connection closes; a reload's answer
//! starts with a line holding the exit status `ferry reload` ends with. The answers are
//! made here, so the client needs no JSON reader. Bounded: one client at a time (the
//! others wait in the listen backlog: this is for an operator and a service manager,
//! not for traffic), a request of at most [`MAX_REQUEST`] bytes read within [`TIMEOUT`],
//! an answer written within [`TIMEOUT`]; a reload may take as long as it takes.
//!
//! A reload is done by whoever owns the config file's path (`main`, which also reloads
//! on SIGHUP): the socket hands it a [`ReloadRequest`] and waits for the outcome.

pub mod client;
pub mod history;
pub mod status;

use crate::broker::ReloadOutcome;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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

/// The admin socket's thread; dropping it stops the thread (and waits for it: it holds
/// a handle to the store) and removes the socket.
pub struct Admin {
    stop: Arc<AtomicBool>,
    path: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the thread from its accept; it sees `stop` and ends. A client it is
        // answering has at most TIMEOUT per read and write; a reload it waits for ends
        // with the event loop's stop (the request's sender is dropped).
        // (Not woken, e.g. the socket file was removed: left to end with the process.)
        if UnixStream::connect(&self.path).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (a stale socket file left by a killed ferry is replaced; a live one is
/// not) and answers on it from a thread of its own, with plain blocking I/O: an
/// operator's few requests need no event loop, and the thread costs the binary less
/// than async code would.
pub fn serve(
    path: &Path,
    status: Arc<status::Source>,
    reloads: mpsc::Sender<ReloadRequest>,
) -> Result<Admin, AdminError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
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
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ferry-admin".into())
        .spawn(move || {
            // Blocked in accept while idle: no wake-ups on a quiet gateway.
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &status, &reloads);
                }
            }
        })
        .map_err(bind_err)?;
    Ok(Admin {
        stop,
        path: path.to_path_buf(),
        thread: Some(thread),
    })
}

/// One client: its request line, then the answer.
fn answer(
    stream: UnixStream,
    status: &status::Source,
    reloads: &mpsc::Sender<ReloadRequest>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let body = match line.trim() {
        "status" => status.snapshot().to_text(),
        "status json" => status.snapshot().to_json() + "\n",
        "reload" => {
            // Done by `main`, on the event loop; this thread waits for the outcome.
            let (tx, rx) = oneshot::channel();
            let outcome = match reloads.blocking_send(tx) {
                Ok(()) => rx.blocking_recv().ok(),
                Err(_) => None,
            };
            let outcome = outcome.unwrap_or_else(|| ReloadOutcome {
                problems: vec!["ferry is stopping: no reload".into()],
                ..ReloadOutcome::default()
            });
            format!("{}\n{}", if outcome.ok { 0 } else { 1 }, outcome.to_text())
        }
        other => format!("unknown request {other:?}: expected status, status json or reload\n"),
    };
    (&stream).write_all(body.as_bytes())
}
