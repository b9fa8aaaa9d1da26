//! A minimal HTTP/1.1 endpoint for `/metrics` (Prometheus text), `/health` (JSON, 503
//! while the store is unusable: see [`super::health`]), `/status.json` (what
//! `ferry status --json` prints) and `/`, a self-contained status page (`status.html`,
//! no external assets) that draws `/status.json` every 5 s.
//!
//! Hand-rolled because it serves a few fixed GET routes on a loopback port: a request is
//! at most 8 KiB and must arrive within 5 s, and the connection closes after one response.

use crate::admin::status::Source;
use crate::metrics::Metrics;
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const MAX_REQUEST: usize = 8 * 1024;
const PAGE: &str = include_str!("status.html");

pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    store: Store,
    status: Arc<Source>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let (m, st, status) = (metrics.clone(), store.clone(), status.clone());
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, m, st, &status)).await;
                        });
                    }
                }
            }
        }
    });
    Ok((addr, task))
}

async fn answer(
    mut stream: TcpStream,
    metrics: Arc<Metrics>,
    store: Store,
    status: &Source,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let (status, ctype, body) = if line.starts_with(b"GET / ") {
        ("200 OK", "text/html; charset=utf-8", PAGE.to_string())
    } else if line.starts_with(b"GET /status.json ") {
        let body = status.snapshot().to_json();
        ("200 OK", "application/json", body)
    } else if line.starts_with(b"GET /metrics ") {
        ("200 OK", "text/plain; version=0.0.4", metrics.render())
    } else if line.starts_with(b"GET /health ") {
        let upstreams = metrics
            .upstreams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let h = super::health::render(store.is_usable(), &upstreams, crate::event::now_ms());
        let status = if h.code == 200 {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        (status, "application/json", h.body)
    } else {
        ("404 Not Found", "text/plain", "not found\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
