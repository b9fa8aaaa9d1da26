//! Resumable parser for what NATS clients send, in the spirit of
//! nats-server's parser.go: the connection keeps one [`Parser`] and one read
//! buffer, appends whatever the socket delivered and calls [`Parser::next`]
//! until it returns `Ok(None)`.
//!
//! Unlike nats-server we do not walk every byte through a state machine: a
//! control line is found with one LF search (resumed where the last call
//! stopped), its arguments become `Bytes` slices of the line (no copy), and a
//! payload is taken by length alone once enough bytes are buffered. Limits are
//! checked before anything big is buffered: the control-line limit while the
//! line is still incomplete, max_payload as soon as the PUB/HPUB line is read.

#[cfg(test)]
mod error_tests;
mod line;
#[cfg(test)]
mod tests;

use bytes::{Buf, Bytes, BytesMut};

use super::connect::ConnectOptions;
use super::errors::ProtoError;
use line::{Parsed, PendingPub};

/// Size limits, nats-server defaults in [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest allowed control-line argument part (bytes after the operation
    /// name and its separator), like nats-server's `max_control_line`.
    pub max_control_line: usize,
    /// Largest PUB/HPUB total size (headers + payload).
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// One operation from a client. Byte fields are slices of the connection's
/// read buffer: free to take, but each keeps the whole underlying read chunk
/// alive. Copy (`Bytes::copy_from_slice`) what is stored for long, such as a
/// subscription's subject or sid.
///
/// Subjects are not syntax-checked here; see [`super::subject`] for the
/// rules and when nats-server applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    Connect(ConnectOptions),
    Pub {
        subject: Bytes,
        reply: Option<Bytes>,
        payload: Bytes,
    },
    /// `headers` is the raw header block, `NATS/1.0...\r\n\r\n`, or empty
    /// when the client sent a header length of 0 (nats-server then delivers
    /// the message as a plain MSG).
    HPub {
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Bytes,
        payload: Bytes,
    },
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    /// `max`: `Some(n)` with n > 0 means auto-unsubscribe after n messages
    /// in total; `None` or `Some(0)` means remove now (nats-server treats an
    /// unparsable max the same way, so that is folded into `None`).
    Unsub {
        sid: Bytes,
        max: Option<u64>,
    },
    Ping,
    Pong,
}

/// Where the parser stands between calls.
#[derive(Debug)]
enum State {
    /// Reading a control line. The first `scanned` bytes of the buffer are
    /// known to contain no LF, so the next search starts there.
    Line { scanned: usize },
    /// PUB/HPUB line consumed; waiting until `total + 2` bytes are buffered.
    Payload(PendingPub),
}

/// Parser state for one client connection.
///
/// Invariant kept by the caller: between calls the buffer only grows at the
/// back; the parser alone removes bytes from the front. After an `Err` the
/// connection must be closed (or the parser and buffer dropped): the state
/// is not meaningful any more.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
}

impl Parser {
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            state: State::Line { scanned: 0 },
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes the next complete operation off the front of `buf`.
    /// `Ok(None)`: more input is needed (everything seen so far is fine).
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ProtoError> {
        loop {
            let pending = match &mut self.state {
                State::Line { scanned } => {
                    let Some(line) = Self::take_line(scanned, buf, &self.limits)? else {
                        return Ok(None);
                    };
                    match line {
                        Parsed::Op(op) => return Ok(Some(op)),
                        Parsed::Skip => continue,
                        Parsed::Payload(p) => p,
                    }
                }
                State::Payload(p) => {
                    let need = p.total + 2;
                    if buf.len() < need {
                        // Make room once for the whole payload, so the read
                        // loop does not grow the buffer step by step.
                        buf.reserve(need - buf.len());
                        return Ok(None);
                    }
                    if buf.get(p.total..need) != Some(b"\r\n".as_slice()) {
                        return Err(ProtoError::UnknownOp);
                    }
                    let p = match std::mem::replace(&mut self.state, State::Line { scanned: 0 }) {
                        State::Payload(p) => p,
                        // Unreachable: we are in the Payload arm.
                        State::Line { .. } => return Err(ProtoError::UnknownOp),
                    };
                    let body = buf.split_to(p.total).freeze();
                    buf.advance(2);
                    return Ok(Some(Self::finish_pub(p, body)?));
                }
            };
            self.state = State::Payload(pending);
        }
    }

    /// Finds and parses one control line; `Ok(None)` when it is incomplete.
    fn take_line(
        scanned: &mut usize,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Parsed>, ProtoError> {
        let recognised = line::recognise(buf)?;
        let from = (*scanned).min(buf.len());
        let lf = buf
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map(|off| from + off);
        let Some(lf) = lf else {
            *scanned = buf.len();
            if let Some((_, kw_len)) = recognised {
                // A trailing CR may be the start of the terminator.
                let mut end = buf.len();
                if buf.last() == Some(&b'\r') {
                    end -= 1;
                }
                line::check_line_len(buf.get(..end).unwrap_or(&[]), kw_len, limits)?;
            }
            return Ok(None);
        };
        *scanned = 0;
        // A full line whose start is still no complete keyword ("PU\r\n").
        let Some((kind, kw_len)) = recognised else {
            return Err(ProtoError::UnknownOp);
        };
        let line = buf.split_to(lf + 1).freeze();
        line::parse_line(kind, kw_len, &line, limits).map(Some)
    }

    fn finish_pub(p: PendingPub, body: Bytes) -> Result<ClientOp, ProtoError> {
        Ok(match p.hdr_len {
            None => ClientOp::Pub {
                subject: p.subject,
                reply: p.reply,
                payload: body,
            },
            Some(hdr_len) => {
                let (headers, payload) = line::split_headers(body, hdr_len)?;
                ClientOp::HPub {
                    subject: p.subject,
                    reply: p.reply,
                    headers,
                    payload,
                }
            }
        })
    }
}
