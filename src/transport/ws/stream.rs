//! [`WsStream`]: the MQTT byte stream carried in WebSocket binary frames, server side.
//! Reads yield the payloads of the client's data frames as one byte stream; writes go out
//! as unmasked binary frames. Control frames are answered here: pings get pongs, a close
//! gets a close reply and then end-of-file, protocol errors get a close with their code.

use super::error::ProtocolError;
use super::frame::{self, Frame, OpCode};
use super::waker::{Side, WriteWaker};
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The default limit on one frame's payload (`set_max_payload` changes it).
pub const DEFAULT_MAX_PAYLOAD: usize = 16 << 20;
/// Bytes read from the inner stream at a time (more while a large frame arrives).
const READ_CHUNK: usize = 8 * 1024;
/// The largest data frame sent: one write of more is sent as several frames.
const MAX_WRITE_FRAME: usize = 64 * 1024;
/// While this much output is queued, writes wait for it to drain, and reads stop decoding
/// frames (each ping would queue a pong): a client that does not read cannot make the
/// queue grow past this plus one frame.
const MAX_QUEUED: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// A close frame arrived, or the connection ended: reads return end-of-file.
    Closed,
    /// The client broke the protocol: reads return this error.
    Failed(ProtocolError),
}

/// A WebSocket connection seen as a byte stream; see the module doc. It holds no read
/// buffer while idle, at most one frame plus one read chunk while reading, and at most
/// 64 KiB plus one frame of output.
pub struct WsStream<S> {
    inner: S,
    /// Bytes from the wire not yet decoded (part of a frame, or more than one frame).
    rbuf: BytesMut,
    /// What the reader has not taken yet of the last data frame's payload.
    payload: Bytes,
    /// Encoded frames not yet written to `inner`. Frames are whole, so a pong or close can
    /// be appended at any time.
    wbuf: BytesMut,
    max_payload: usize,
    /// A binary frame without FIN arrived: continuation frames follow.
    in_message: bool,
    read: ReadState,
    /// A close frame is queued or sent: no data frame may follow it.
    close_sent: bool,
    write_waker: WriteWaker,
}

impl<S> WsStream<S> {
    /// Wraps a stream whose handshake is done; `read_ahead` holds bytes already read
    /// from it after the handshake (they are decoded first).
    pub fn from_raw(inner: S, read_ahead: BytesMut) -> Self {
        WsStream {
            inner,
            rbuf: read_ahead,
            payload: Bytes::new(),
            wbuf: BytesMut::new(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            in_message: false,
            read: ReadState::Open,
            close_sent: false,
            write_waker: WriteWaker::default(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Frames with a larger payload are refused (close 1009, and the read fails). The
    /// caller sets it to its largest packet plus a margin; a message may still span
    /// several frames, so this bounds memory, not packet size.
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max;
    }

    pub fn with_max_payload(mut self, max: usize) -> Self {
        self.max_payload = max;
        self
    }

    fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        frame::encode_header(true, opcode, None, payload.len(), &mut self.wbuf);
        self.wbuf.extend_from_slice(payload);
    }

    fn release_read(&mut self) {
        self.rbuf = BytesMut::new();
        self.payload = Bytes::new();
        self.in_message = false;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Writes queued frames until none are left; the inner stream's wake-up goes to
    /// both sides (see `waker`). An emptied queue gives its memory back.
    fn poll_drain(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<io::Result<()>> {
        if self.wbuf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut wcx = Context::from_waker(self.write_waker.register(side, cx.waker()));
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(&mut wcx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        self.wbuf = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Starts writing queued frames without waiting for them. An error is left for the
    /// next write or flush, which hits it again; the read side carries on meanwhile.
    fn push(&mut self, cx: &mut Context<'_>, side: Side) {
        let _ = self.poll_drain(cx, side);
    }

    /// Closes with the error's code and makes reads fail with it.
    fn fail(&mut self, cx: &mut Context<'_>, e: ProtocolError) {
        self.read = ReadState::Failed(e);
        self.release_read();
        if !self.close_sent {
            self.close_sent = true;
            self.queue(OpCode::Close, &e.close_code().to_be_bytes());
        }
        self.push(cx, Side::Read);
    }

    fn on_frame(&mut self, cx: &mut Context<'_>, f: Frame) {
        if f.mask.is_none() {
            return self.fail(cx, ProtocolError::Unmasked);
        }
        match f.opcode {
            OpCode::Binary | OpCode::Continuation => {
                let continuation = f.opcode == OpCode::Continuation;
                if continuation != self.in_message {
                    let e = if continuation {
                        ProtocolError::UnexpectedContinuation
                    } else {
                        ProtocolError::Interleaved
                    };
                    return self.fail(cx, e);
                }
                self.in_message = !f.fin;
                // Empty frames are allowed; the read loop then goes on to the next.
                self.payload = f.payload;
            }
            OpCode::Text => self.fail(cx, ProtocolError::Text),
            OpCode::Ping => {
                if !self.close_sent {
                    self.queue(OpCode::Pong, &f.payload);
                    self.push(cx, Side::Read);
                }
            }
            OpCode::Pong => {}
            OpCode::Close => match close_reply(&f.payload) {
                Err(e) => self.fail(cx, e),
                Ok(code) => {
                    self.read = ReadState::Closed;
                    self.release_read();
                    if !self.close_sent {
                        self.close_sent = true;
                        let reply = code.map(u16::to_be_bytes);
                        self.queue(OpCode::Close, reply.as_ref().map_or(&[][..], |c| &c[..]));
                        self.push(cx, Side::Read);
                    }
                }
            },
        }
    }

    /// Reads more bytes into `rbuf`; `false` at end-of-file. An empty `rbuf` is filled
    /// from a stack buffer, so that a connection waiting for its next frame holds no heap
    /// buffer; a partial frame grows with what arrives, doubling, up to its full size.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.rbuf.is_empty() {
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(false));
            }
            self.rbuf = BytesMut::from(rb.filled());
            return Poll::Ready(Ok(true));
        }
        let missing = frame::missing(&self.rbuf).unwrap_or(1);
        let want = READ_CHUNK.max(missing.min(self.rbuf.len()));
        let start = self.rbuf.len();
        self.rbuf.resize(start + want, 0);
        let mut rb = ReadBuf::new(&mut self.rbuf[start..]);
        let polled = Pin::new(&mut self.inner).poll_read(cx, &mut rb);
        let n = rb.filled().len();
        self.rbuf.truncate(start + n);
        ready!(polled)?;
        Poll::Ready(Ok(n > 0))
    }

    /// The connection ended without a close frame: end-of-file between frames, an error
    /// inside one.
    fn on_eof(&mut self) -> io::Result<()> {
        let truncated = !self.rbuf.is_empty();
        self.read = ReadState::Closed;
        self.release_read();
        if truncated {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection ended inside a WebSocket frame",
            ));
        }
        Ok(())
    }
}

/// The status code to echo for a close frame's payload (`None`: it had none).
fn close_reply(payload: &[u8]) -> Result<Option<u16>, ProtocolError> {
    let [hi, lo, reason @ ..] = payload else {
        return if payload.is_empty() {
            Ok(None)
        } else {
            Err(ProtocolError::BadClose)
        };
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    // RFC 6455 §7.4 and the IANA registry: 1004-1006 and 1015 are never sent in a frame.
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(ProtocolError::BadClose);
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(ProtocolError::CloseReasonNotUtf8);
    }
    Ok(Some(code))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    /// Gives the next payload bytes of binary (and continuation) frames, answering the
    /// control frames met on the way. Queued output (a pong, say) is pushed first,
    /// without waiting for it.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.push(cx, Side::Read);
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.payload.is_empty() {
                let n = this.payload.len().min(buf.remaining());
                buf.put_slice(&this.payload[..n]);
                this.payload.advance(n);
                if this.payload.is_empty() {
                    this.payload = Bytes::new(); // let go of the frame's memory
                }
                return Poll::Ready(Ok(()));
            }
            match this.read {
                ReadState::Open => {}
                ReadState::Closed => return Poll::Ready(Ok(())),
                ReadState::Failed(e) => return Poll::Ready(Err(e.into())),
            }
            if this.wbuf.len() >= MAX_QUEUED {
                ready!(this.poll_drain(cx, Side::Read))?;
            }
            match frame::decode(&mut this.rbuf, this.max_payload) {
                Ok(Some(f)) => {
                    if this.rbuf.is_empty() {
                        this.rbuf = BytesMut::new();
                    }
                    this.on_frame(cx, f);
                }
                Ok(None) => {
                    if !ready!(this.poll_fill(cx))? {
                        this.on_eof()?;
                    }
                }
                Err(e) => this.fail(cx, e.into()),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    /// Queues up to 64 KiB of `buf` as one binary frame and starts sending it. Bytes
    /// reported written are queued whole and go out on later calls (`poll_flush` waits
    /// for them); while the queue is full this waits instead.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "WebSocket close already sent",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.wbuf.len() >= MAX_QUEUED {
            ready!(this.poll_drain(cx, Side::Write))?;
        }
        let n = buf.len().min(MAX_WRITE_FRAME);
        frame::encode_header(true, OpCode::Binary, None, n, &mut this.wbuf);
        this.wbuf.extend_from_slice(&buf[..n]);
        this.push(cx, Side::Write);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx, Side::Write))?;
        let mut wcx = Context::from_waker(this.write_waker.register(Side::Write, cx.waker()));
        Pin::new(&mut this.inner).poll_flush(&mut wcx)
    }

    /// Sends a close frame (1000) unless one was sent, then shuts the inner stream down.
    /// The close frame is best-effort: if it cannot be written, the shutdown goes on.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            this.queue(OpCode::Close, &1000u16.to_be_bytes());
        }
        if ready!(this.poll_drain(cx, Side::Write)).is_err() {
            this.wbuf = BytesMut::new();
        }
        let mut wcx = Context::from_waker(this.write_waker.register(Side::Write, cx.waker()));
        Pin::new(&mut this.inner).poll_shutdown(&mut wcx)
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("inner", &self.inner)
            .field("read", &self.read)
            .field("buffered_in", &(self.rbuf.len() + self.payload.len()))
            .field("queued_out", &self.wbuf.len())
            .field("close_sent", &self.close_sent)
            .finish()
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "stream_close_tests.rs"]
mod close_tests;
