//! Transports, written once for both protocols: the [`Stream`] a connection reads and
//! writes (plain TCP, TLS, WebSocket, secure WebSocket), the TLS acceptor, and the accept
//! loop every listener runs ([`listen`]).
//!
//! A protocol connection sees only a `Stream`; which transport carries it is decided by
//! the listener that accepted it (NATS also upgrades a plain stream to TLS in place, as
//! nats-server does).

pub mod admission;
pub mod cap;
pub mod listen;
#[cfg(feature = "tls")]
pub mod tls;
pub mod ws;

use bytes::BytesMut;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection over any transport.
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tls::ServerTls>),
    Ws(Box<ws::WsStream<TcpStream>>),
    #[cfg(feature = "tls")]
    Wss(Box<ws::WsStream<tls::ServerTls>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Stream {
    /// The transport's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Stream::Tcp(_) => "tcp",
            #[cfg(feature = "tls")]
            Stream::Tls(_) => "tls",
            Stream::Ws(_) => "ws",
            #[cfg(feature = "tls")]
            Stream::Wss(_) => "wss",
        }
    }

    /// Reads what is available into `buf`, growing it by `chunk` when it is nearly full.
    /// On plain TCP the buffer is grown only once the socket is readable, so an idle
    /// connection holds no read buffer; other transports keep their own buffers anyway.
    /// Cancel-safe. `Ok(0)` is end of stream.
    pub async fn read_some(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => tcp_read_some(s, buf, chunk).await,
            other => {
                reserve(buf, chunk);
                tokio::io::AsyncReadExt::read_buf(other, buf).await
            }
        }
    }
}

/// Makes room for `chunk` more bytes when less than a quarter of it is free.
fn reserve(buf: &mut BytesMut, chunk: usize) {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
}

/// Reads from a plain TCP socket into `buf`, growing it only once the socket is
/// readable. Readiness can be stale (left by a read that did not drain the socket to
/// WouldBlock): then the chunk is given back rather than held while the connection
/// idles. Polled with the socket's own readiness slot rather than a `readable()`
/// future: the wait holds no state of its own, and it is part of every idle
/// connection's task.
async fn tcp_read_some(s: &TcpStream, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        loop {
            std::task::ready!(s.poll_read_ready(cx))?;
            reserve(buf, chunk);
            match s.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    }
                }
                r => return Poll::Ready(r),
            }
        }
    })
    .await
}

impl ReadHalf<'_> {
    /// [`Stream::read_some`] for the read half: an idle plain-TCP connection holds no
    /// read buffer.
    pub async fn read_some(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(r) => tcp_read_some(r.as_ref(), buf, chunk).await,
            ReadHalf::Shared(r) => {
                reserve(buf, chunk);
                tokio::io::AsyncReadExt::read_buf(r, buf).await
            }
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            Stream::Tls($s) => $e,
            Stream::Ws($s) => $e,
            #[cfg(feature = "tls")]
            Stream::Wss($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Ws(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Stream::Wss(s) => s.is_write_vectored(),
        }
    }
}

/// The two halves of a [`Stream`], for a loop that reads and writes in one `select!`.
/// Plain TCP splits without a lock; other transports share their state behind tokio's
/// split (their reads may need to write, e.g. a TLS alert or a WebSocket pong).
pub enum ReadHalf<'a> {
    Tcp(tokio::net::tcp::ReadHalf<'a>),
    Shared(tokio::io::ReadHalf<&'a mut Stream>),
}

pub enum WriteHalf<'a> {
    Tcp(tokio::net::tcp::WriteHalf<'a>),
    Shared(tokio::io::WriteHalf<&'a mut Stream>),
}

impl Stream {
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            other => {
                let (r, w) = tokio::io::split(other);
                (ReadHalf::Shared(r), WriteHalf::Shared(w))
            }
        }
    }
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Shared(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Shared(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Shared(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Shared(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
