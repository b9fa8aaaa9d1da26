//! Control-line handling: recognising the operation name and turning a
//! complete line into an operation, without copying any argument.

use bytes::Bytes;

use super::super::connect::ConnectOptions;
use super::super::errors::ProtoError;
use super::super::headers::check_block;
use super::{ClientOp, Limits};

/// Client operations nats-server accepts on a CLIENT connection. `MSG`,
/// `HMSG` and the route/leaf ops are protocol errors there, as in nats-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpKind {
    Pub,
    HPub,
    Sub,
    Unsub,
    Ping,
    Pong,
    Connect,
    Info,
    Ok,
    Err,
}

/// (keyword in upper case, op, whether a space/tab must follow the keyword).
/// PING/PONG/+OK ignore anything up to the line end and CONNECT/INFO take the
/// rest of the line, exactly like nats-server's byte states. No keyword is a
/// prefix of another, so at most one can match a given prefix.
const OPS: [(&[u8], OpKind, bool); 10] = [
    (b"PUB", OpKind::Pub, true),
    (b"HPUB", OpKind::HPub, true),
    (b"SUB", OpKind::Sub, true),
    (b"UNSUB", OpKind::Unsub, true),
    (b"PING", OpKind::Ping, false),
    (b"PONG", OpKind::Pong, false),
    (b"CONNECT", OpKind::Connect, false),
    (b"INFO", OpKind::Info, false),
    (b"+OK", OpKind::Ok, false),
    (b"-ERR", OpKind::Err, true),
];

/// Recognises the operation at the front of `buf` (case-insensitive) from as
/// few bytes as possible, so garbage is rejected at once rather than after a
/// whole line has been buffered. `Ok(None)`: not enough bytes to decide yet.
/// Returns the op and its keyword length.
pub(super) fn recognise(buf: &[u8]) -> Result<Option<(OpKind, usize)>, ProtoError> {
    if buf.is_empty() {
        return Ok(None);
    }
    for (kw, kind, needs_ws) in OPS {
        let n = kw.len().min(buf.len());
        let (Some(have), Some(want)) = (buf.get(..n), kw.get(..n)) else {
            continue;
        };
        if !have.eq_ignore_ascii_case(want) {
            continue;
        }
        if buf.len() < kw.len() {
            return Ok(None);
        }
        if !needs_ws {
            return Ok(Some((kind, kw.len())));
        }
        return match buf.get(kw.len()) {
            None => Ok(None),
            Some(b' ' | b'\t') => Ok(Some((kind, kw.len()))),
            Some(_) => Err(ProtoError::UnknownOp),
        };
    }
    Err(ProtoError::UnknownOp)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Enforces max_control_line on `content` (a line without its terminator,
/// possibly incomplete). Like nats-server the limit applies to the arguments,
/// i.e. what follows the keyword and its separating whitespace; the
/// separator run is limited separately because nats-server skips it without
/// buffering while we must hold it.
/// Returns where the arguments start.
pub(super) fn check_line_len(
    content: &[u8],
    kw_len: usize,
    limits: &Limits,
) -> Result<usize, ProtoError> {
    let rest = content.get(kw_len..).unwrap_or(&[]);
    let ws = rest.iter().take_while(|b| is_ws(**b)).count();
    let arg_len = rest.len() - ws;
    if arg_len > limits.max_control_line || ws > limits.max_control_line {
        return Err(ProtoError::MaxControlLine);
    }
    Ok(kw_len + ws)
}

/// What a complete control line turned into.
pub(super) enum Parsed {
    Op(ClientOp),
    /// Lines nats-server accepts from clients and ignores (+OK, INFO).
    Skip,
    /// PUB/HPUB: the payload (and its CRLF) follows.
    Payload(PendingPub),
}

/// A PUB/HPUB whose control line was read and checked.
#[derive(Debug)]
pub(super) struct PendingPub {
    pub(super) subject: Bytes,
    pub(super) reply: Option<Bytes>,
    /// `Some` for HPUB.
    pub(super) hdr_len: Option<usize>,
    pub(super) total: usize,
}

/// Up to `MAX` whitespace-separated argument ranges; `count` keeps counting
/// past `MAX` so callers can reject too many arguments without allocating.
struct Args {
    ranges: [(usize, usize); MAX],
    count: usize,
}
const MAX: usize = 4;

impl Args {
    fn split(line: &[u8], start: usize, end: usize) -> Args {
        let mut args = Args {
            ranges: [(0, 0); MAX],
            count: 0,
        };
        let mut tok: Option<usize> = None;
        for i in start..end {
            let ws = line.get(i).is_none_or(|b| is_ws(*b));
            match (ws, tok) {
                (true, Some(s)) => {
                    args.push(s, i);
                    tok = None;
                }
                (false, None) => tok = Some(i),
                _ => {}
            }
        }
        if let Some(s) = tok {
            args.push(s, end);
        }
        args
    }

    fn push(&mut self, s: usize, e: usize) {
        if let Some(slot) = self.ranges.get_mut(self.count) {
            *slot = (s, e);
        }
        self.count += 1;
    }

    fn bytes(&self, line: &Bytes, i: usize) -> Bytes {
        match self.ranges.get(i) {
            Some(&(s, e)) if s <= e && e <= line.len() => line.slice(s..e),
            _ => Bytes::new(),
        }
    }
}

/// nats-server's parseSize: 1 to 9 ASCII digits, nothing else.
fn parse_size(d: &[u8]) -> Option<usize> {
    if d.is_empty() || d.len() > 9 {
        return None;
    }
    d.iter().try_fold(0usize, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

/// Turns one complete line (including its LF) into an operation.
pub(super) fn parse_line(
    kind: OpKind,
    kw_len: usize,
    line: &Bytes,
    limits: &Limits,
) -> Result<Parsed, ProtoError> {
    // Strip "\n" and an optional "\r" before it; a bare LF is accepted like
    // nats-server does (telnet users).
    let mut end = line.len().saturating_sub(1);
    if end > 0 && line.get(end - 1) == Some(&b'\r') {
        end -= 1;
    }
    let content = line.get(..end).unwrap_or(&[]);
    let start = check_line_len(content, kw_len, limits)?;
    let arg = content.get(start..).unwrap_or(&[]);
    let args = Args::split(line, start, end);
    let size = |i: usize, op: &'static str| {
        parse_size(&args.bytes(line, i)).ok_or(ProtoError::BadSize { op })
    };
    match kind {
        OpKind::Ping => Ok(Parsed::Op(ClientOp::Ping)),
        OpKind::Pong => Ok(Parsed::Op(ClientOp::Pong)),
        OpKind::Ok => Ok(Parsed::Skip),
        OpKind::Connect => Ok(Parsed::Op(ClientOp::Connect(ConnectOptions::from_json(
            arg,
        )?))),
        OpKind::Info => serde_json::from_slice::<serde::de::IgnoredAny>(arg)
            .map(|_| Parsed::Skip)
            .map_err(|e| ProtoError::InfoJson(e.to_string())),
        OpKind::Err => Err(ProtoError::PeerErr(
            String::from_utf8_lossy(arg).into_owned(),
        )),
        OpKind::Pub => {
            let (reply, size_at) = match args.count {
                2 => (None, 1),
                3 => (Some(args.bytes(line, 1)), 2),
                _ => return Err(ProtoError::BadArgs { op: "PUB" }),
            };
            let total = size(size_at, "PUB")?;
            check_payload(total, limits)?;
            Ok(Parsed::Payload(PendingPub {
                subject: args.bytes(line, 0),
                reply,
                hdr_len: None,
                total,
            }))
        }
        OpKind::HPub => {
            let (reply, hdr_at) = match args.count {
                3 => (None, 1),
                4 => (Some(args.bytes(line, 1)), 2),
                _ => return Err(ProtoError::BadArgs { op: "HPUB" }),
            };
            let hdr_len = size(hdr_at, "HPUB")?;
            let total = size(hdr_at + 1, "HPUB")?;
            if hdr_len > total {
                return Err(ProtoError::HeaderSizeTooLarge);
            }
            check_payload(total, limits)?;
            Ok(Parsed::Payload(PendingPub {
                subject: args.bytes(line, 0),
                reply,
                hdr_len: Some(hdr_len),
                total,
            }))
        }
        OpKind::Sub => {
            let (queue, sid_at) = match args.count {
                2 => (None, 1),
                3 => (Some(args.bytes(line, 1)), 2),
                _ => return Err(ProtoError::BadArgs { op: "SUB" }),
            };
            Ok(Parsed::Op(ClientOp::Sub {
                subject: args.bytes(line, 0),
                queue,
                sid: args.bytes(line, sid_at),
            }))
        }
        OpKind::Unsub => {
            // nats-server turns an unparsable max into "unsubscribe now"
            // rather than an error; None carries that meaning here.
            let max = match args.count {
                1 => None,
                2 => parse_size(&args.bytes(line, 1)).map(|n| n as u64),
                _ => return Err(ProtoError::BadArgs { op: "UNSUB" }),
            };
            Ok(Parsed::Op(ClientOp::Unsub {
                sid: args.bytes(line, 0),
                max,
            }))
        }
    }
}

fn check_payload(total: usize, limits: &Limits) -> Result<(), ProtoError> {
    if total > limits.max_payload {
        return Err(ProtoError::MaxPayload {
            size: total,
            max: limits.max_payload,
        });
    }
    Ok(())
}

/// Splits a received HPUB body into header block and payload, checking the
/// block really ends at the announced length (a lying length is an error,
/// which nats-server does not check). A zero header length is accepted as
/// "no headers", as nats-server does.
pub(super) fn split_headers(mut body: Bytes, hdr_len: usize) -> Result<(Bytes, Bytes), ProtoError> {
    if hdr_len > body.len() {
        return Err(ProtoError::HeaderSizeTooLarge);
    }
    let headers = body.split_to(hdr_len);
    if hdr_len > 0 {
        check_block(&headers)?;
    }
    Ok((headers, body))
}
