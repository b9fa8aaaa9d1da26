//! A TCP proxy in the test, between ferry and its upstream broker: passes bytes, adds
//! latency, freezes its open connections (a black hole: open, nothing passes), or mutes
//! their replies (what ferry sends arrives; nothing comes back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy to `127.0.0.1:<upstream>` whose open connections can be frozen: they stay
/// open, and bytes read from either side are dropped instead of passed on. Connections
/// accepted later pass bytes again. `latency` delays every chunk passed on (a slow
/// network).
pub struct Proxy {
    pub port: u16,
    holes: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    /// Per connection: the server-to-client direction only.
    mutes: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16, latency: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let holes: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let mutes: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let list = holes.clone();
        let mute_list = mutes.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let hole = Arc::new(AtomicBool::new(false));
                list.lock().unwrap().push(hole.clone());
                let mute = Arc::new(AtomicBool::new(false));
                mute_list.lock().unwrap().push(mute.clone());
                tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    // Either side closing ends both (dropping the halves closes them).
                    tokio::select! {
                        _ = pass(cr, sw, hole.clone(), latency) => {}
                        _ = pass(sr, cw, mute, latency) => {}
                    }
                });
            }
        });
        Proxy {
            port,
            holes,
            mutes,
            task,
        }
    }

    /// Connections open now keep passing what the client sends, and drop every reply.
    pub fn mute_replies(&self) {
        for mute in self.mutes.lock().unwrap().iter() {
            mute.store(true, Ordering::SeqCst);
        }
    }

    /// Freezes every connection open now.
    pub fn black_hole(&self) {
        for hole in self.holes.lock().unwrap().iter() {
            hole.store(true, Ordering::SeqCst);
        }
        self.mute_replies();
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.holes.lock().unwrap().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until `from` closes; once `hole` is set, reads and drops.
async fn pass(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    hole: Arc<AtomicBool>,
    latency: Duration,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if !hole.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
