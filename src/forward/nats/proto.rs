//! The client side of the NATS protocol, as ferry speaks it to a NATS or JetStream
//! upstream, without I/O: parsing what the server sends (INFO, MSG, HMSG, PING, PONG,
//! +OK, -ERR), encoding what the client sends (CONNECT, SUB, PUB, HPUB, PING, PONG), and
//! reading JetStream's publish acknowledgement. The server side of the protocol (what
//! ferry's own NATS listener parses) is `crate::nats::proto`; the two directions share
//! only the header block rules.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest control line ferry accepts from an upstream (an INFO with a long
/// `connect_urls` list is the largest one in practice).
const MAX_LINE: usize = 64 * 1024;

/// Why bytes from the upstream could not be read as the NATS protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("control line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("unknown protocol operation {0:?}")]
    UnknownOp(String),
    #[error("malformed {op} line {line:?}")]
    Malformed { op: &'static str, line: String },
    #[error("message of {0} bytes is larger than this link accepts")]
    TooLarge(usize),
    #[error("message not terminated by CRLF")]
    Unterminated,
}

/// One operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// The JSON after `INFO `.
    Info(Bytes),
    Msg(Message),
    Ping,
    Pong,
    Ok,
    /// The text of `-ERR '...'`, without the quotes.
    Err(String),
}

/// A MSG or HMSG delivered to one of ferry's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: Bytes,
    pub sid: Bytes,
    pub reply: Option<Bytes>,
    /// The raw header block (HMSG), `NATS/1.0[ status]\r\n...\r\n\r\n`.
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

impl Message {
    /// The status code of the header block's version line (`NATS/1.0 503` -> 503).
    pub fn status(&self) -> Option<u16> {
        let h = self.headers.as_ref()?;
        let line = h.split(|b| *b == b'\r').next()?;
        let rest = line.strip_prefix(b"NATS/1.0")?;
        let code = rest.trim_ascii_start().split(|b| *b == b' ').next()?;
        std::str::from_utf8(code).ok()?.parse().ok()
    }
}

/// Takes the next complete operation out of `buf`; `Ok(None)` until one is complete.
/// `max_message` bounds MSG/HMSG sizes (what ferry reads back is only small acks).
pub fn parse(buf: &mut BytesMut, max_message: usize) -> Result<Option<ServerOp>, ProtoError> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_LINE {
            return Err(ProtoError::LineTooLong);
        }
        return Ok(None);
    };
    if eol > MAX_LINE {
        return Err(ProtoError::LineTooLong);
    }
    let line = &buf[..eol];
    let (op, args) = match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&line[..i], line[i + 1..].trim_ascii()),
        None => (line, &b""[..]),
    };
    let simple = |buf: &mut BytesMut, op| {
        buf.advance(eol + 2);
        Ok(Some(op))
    };
    match op.to_ascii_uppercase().as_slice() {
        b"PING" => simple(buf, ServerOp::Ping),
        b"PONG" => simple(buf, ServerOp::Pong),
        b"+OK" => simple(buf, ServerOp::Ok),
        b"-ERR" => {
            let text = String::from_utf8_lossy(args);
            let text = text.trim_matches('\'').to_string();
            simple(buf, ServerOp::Err(text))
        }
        b"INFO" => {
            let json = Bytes::copy_from_slice(args);
            simple(buf, ServerOp::Info(json))
        }
        b"MSG" | b"HMSG" => {
            let with_headers = op.len() == 4;
            let args = args.to_vec();
            message(buf, eol, &args, with_headers, max_message)
        }
        _ => Err(ProtoError::UnknownOp(
            String::from_utf8_lossy(&op[..op.len().min(32)]).into_owned(),
        )),
    }
}

/// `MSG subject sid [reply] size` or `HMSG subject sid [reply] hdr_size total_size`.
fn message(
    buf: &mut BytesMut,
    eol: usize,
    args: &[u8],
    with_headers: bool,
    max_message: usize,
) -> Result<Option<ServerOp>, ProtoError> {
    let op = if with_headers { "HMSG" } else { "MSG" };
    let bad = || ProtoError::Malformed {
        op,
        line: String::from_utf8_lossy(&args[..args.len().min(200)]).into_owned(),
    };
    let fields: Vec<&[u8]> = args
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|f| !f.is_empty())
        .collect();
    let number = |f: &[u8]| -> Result<usize, ProtoError> {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let sizes = if with_headers { 2 } else { 1 };
    if fields.len() != 2 + sizes && fields.len() != 3 + sizes {
        return Err(bad());
    }
    let reply = (fields.len() == 3 + sizes).then(|| fields[2]);
    let total = number(fields[fields.len() - 1])?;
    let header_len = if with_headers {
        let h = number(fields[fields.len() - 2])?;
        if h > total {
            return Err(bad());
        }
        Some(h)
    } else {
        None
    };
    if total > max_message {
        return Err(ProtoError::TooLarge(total));
    }
    let need = eol + 2 + total + 2;
    if buf.len() < need {
        buf.reserve(need - buf.len());
        return Ok(None);
    }
    if &buf[need - 2..need] != b"\r\n" {
        return Err(ProtoError::Unterminated);
    }
    let subject = Bytes::copy_from_slice(fields[0]);
    let sid = Bytes::copy_from_slice(fields[1]);
    let reply = reply.map(Bytes::copy_from_slice);
    buf.advance(eol + 2);
    let mut body = buf.split_to(total).freeze();
    buf.advance(2);
    let headers = header_len.map(|h| body.split_to(h));
    Ok(Some(ServerOp::Msg(Message {
        subject,
        sid,
        reply,
        headers,
        payload: body,
    })))
}

/// What ferry learns from the server's INFO.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Info {
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub version: String,
    /// The largest payload (headers included) the server takes; 0: not said.
    #[serde(default)]
    pub max_payload: u64,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub tls_required: bool,
    /// Sent when the server has nkey users: what CONNECT's `sig` signs.
    #[serde(default)]
    pub nonce: Option<String>,
}

impl Info {
    pub fn parse(json: &[u8]) -> Result<Info, String> {
        serde_json::from_slice(json).map_err(|e| format!("unreadable INFO from the upstream: {e}"))
    }
}

/// The CONNECT ferry sends. Secrets are only ever written to the socket.
#[derive(Debug, serde::Serialize)]
pub struct Connect<'a> {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    pub name: &'a str,
    pub lang: &'static str,
    pub version: &'static str,
    pub protocol: u8,
    pub headers: bool,
    pub no_responders: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<&'a str>,
    /// The user's public nkey and its signature of the INFO nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<&'a str>,
    /// The user's JWT (operator mode), from a `.creds` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<&'a str>,
}

impl Connect<'_> {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"CONNECT ");
        // Serializing plain strings, bools and integers cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        out.put_slice(&json);
        out.put_slice(b"\r\n");
    }
}

pub fn encode_sub(subject: &str, sid: &str, out: &mut BytesMut) {
    out.put_slice(b"SUB ");
    out.put_slice(subject.as_bytes());
    out.put_u8(b' ');
    out.put_slice(sid.as_bytes());
    out.put_slice(b"\r\n");
}

pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";

/// `PUB` (no headers) or `HPUB` (a non-empty header block) of `payload` on `subject`.
pub fn encode_pub(
    subject: &str,
    reply: Option<&str>,
    headers: &[u8],
    payload: &[u8],
    out: &mut BytesMut,
) {
    let mut itoa = [0u8; 20];
    out.reserve(subject.len() + reply.map_or(0, str::len) + headers.len() + payload.len() + 64);
    out.put_slice(if headers.is_empty() {
        b"PUB "
    } else {
        b"HPUB "
    });
    out.put_slice(subject.as_bytes());
    out.put_u8(b' ');
    if let Some(r) = reply {
        out.put_slice(r.as_bytes());
        out.put_u8(b' ');
    }
    if !headers.is_empty() {
        out.put_slice(decimal(headers.len(), &mut itoa));
        out.put_u8(b' ');
    }
    out.put_slice(decimal(headers.len() + payload.len(), &mut itoa));
    out.put_slice(b"\r\n");
    out.put_slice(headers);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// What a JetStream publish request was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubAck {
    /// Stored (or, `duplicate`, already stored under the same `Nats-Msg-Id`).
    Stored { seq: u64, duplicate: bool },
    /// Refused: JetStream's API error.
    Error {
        code: u16,
        err_code: u32,
        description: String,
    },
}

#[derive(serde::Deserialize)]
struct RawAck {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<RawError>,
}

#[derive(serde::Deserialize)]
struct RawError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u32,
    #[serde(default)]
    description: String,
}

impl PubAck {
    /// Reads `{"stream":..,"seq":..[,"duplicate":true]}` or `{"error":{..}}`.
    pub fn parse(payload: &[u8]) -> Result<PubAck, String> {
        let raw: RawAck = serde_json::from_slice(payload).map_err(|e| {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(200)]);
            format!("unreadable JetStream acknowledgement {shown:?}: {e}")
        })?;
        match (raw.error, raw.seq) {
            (Some(e), _) => Ok(PubAck::Error {
                code: e.code,
                err_code: e.err_code,
                description: e.description,
            }),
            (None, Some(seq)) => Ok(PubAck::Stored {
                seq,
                duplicate: raw.duplicate,
            }),
            (None, None) => Err(format!(
                "JetStream acknowledgement without seq or error: {:?}",
                String::from_utf8_lossy(&payload[..payload.len().min(200)])
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<ServerOp> {
        let mut buf = BytesMut::from(input);
        let mut ops = Vec::new();
        while let Some(op) = parse(&mut buf, 1 << 20).unwrap() {
            ops.push(op);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        ops
    }

    #[test]
    fn control_lines() {
        assert_eq!(
            all(b"PING\r\nPONG\r\n+OK\r\n-ERR 'Authorization Violation'\r\nINFO {\"a\":1}\r\n"),
            vec![
                ServerOp::Ping,
                ServerOp::Pong,
                ServerOp::Ok,
                ServerOp::Err("Authorization Violation".into()),
                ServerOp::Info(Bytes::from_static(b"{\"a\":1}")),
            ]
        );
    }

    #[test]
    fn msg_and_hmsg() {
        let ops = all(
            b"MSG _INBOX.x.7 1 5\r\nhello\r\nHMSG a.b 2 r.1 16 18\r\nNATS/1.0 503\r\n\r\nhi\r\n",
        );
        assert_eq!(
            ops[0],
            ServerOp::Msg(Message {
                subject: Bytes::from_static(b"_INBOX.x.7"),
                sid: Bytes::from_static(b"1"),
                reply: None,
                headers: None,
                payload: Bytes::from_static(b"hello"),
            })
        );
        let ServerOp::Msg(m) = &ops[1] else {
            panic!("{:?}", ops[1])
        };
        assert_eq!(m.reply.as_deref(), Some(&b"r.1"[..]));
        assert_eq!(m.headers.as_deref(), Some(&b"NATS/1.0 503\r\n\r\n"[..]));
        assert_eq!(m.payload, Bytes::from_static(b"hi"));
        assert_eq!(m.status(), Some(503));
    }

    #[test]
    fn partial_input_waits_and_resumes() {
        let whole = b"MSG s 1 5\r\nhello\r\nPONG\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut ops = Vec::new();
            while let Some(op) = parse(&mut buf, 100).unwrap() {
                ops.push(op);
            }
            buf.extend_from_slice(&whole[cut..]);
            while let Some(op) = parse(&mut buf, 100).unwrap() {
                ops.push(op);
            }
            assert_eq!(ops.len(), 2, "cut at {cut}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            &b"WHAT\r\n"[..],
            b"MSG s\r\n",
            b"MSG s 1 x\r\n",
            b"HMSG s 1 9 5\r\nhello\r\n",
            b"MSG s 1 2\r\nhiXX",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parse(&mut buf, 100).is_err(), "{bad:?}");
        }
        let mut big = BytesMut::from(&b"MSG s 1 101\r\n"[..]);
        assert_eq!(parse(&mut big, 100), Err(ProtoError::TooLarge(101)));
        let mut long = BytesMut::from(&vec![b'I'; MAX_LINE + 1][..]);
        assert_eq!(parse(&mut long, 100), Err(ProtoError::LineTooLong));
    }

    #[test]
    fn pub_and_hpub_bytes() {
        let mut out = BytesMut::new();
        encode_pub("a.b", None, b"", b"hi", &mut out);
        encode_pub(
            "a.b",
            Some("_INBOX.x.1"),
            b"NATS/1.0\r\nK: v\r\n\r\n",
            b"hi",
            &mut out,
        );
        assert_eq!(
            &out[..],
            &b"PUB a.b 2\r\nhi\r\nHPUB a.b _INBOX.x.1 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n"[..]
        );
        let mut sub = BytesMut::new();
        encode_sub("_INBOX.x.*", "1", &mut sub);
        assert_eq!(&sub[..], b"SUB _INBOX.x.* 1\r\n");
    }

    #[test]
    fn connect_leaves_out_unset_secrets() {
        let mut out = BytesMut::new();
        Connect {
            verbose: false,
            pedantic: false,
            tls_required: false,
            name: "ferry-cloud",
            lang: "rust",
            version: "0.1.0",
            protocol: 1,
            headers: true,
            no_responders: true,
            user: None,
            pass: None,
            auth_token: Some("s3cret"),
            nkey: None,
            sig: None,
            jwt: None,
        }
        .encode(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("CONNECT {") && text.ends_with("}\r\n"));
        assert!(text.contains("\"auth_token\":\"s3cret\"") && !text.contains("\"user\""));
    }

    #[test]
    fn pub_acks() {
        assert_eq!(
            PubAck::parse(br#"{"stream":"EV","seq":42}"#),
            Ok(PubAck::Stored {
                seq: 42,
                duplicate: false
            })
        );
        assert_eq!(
            PubAck::parse(br#"{"stream":"EV","domain":"d","seq":42,"duplicate":true}"#),
            Ok(PubAck::Stored {
                seq: 42,
                duplicate: true
            })
        );
        assert_eq!(
            PubAck::parse(
                br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"EV","seq":0}"#
            ),
            Ok(PubAck::Error {
                code: 503,
                err_code: 10077,
                description: "maximum messages exceeded".into()
            })
        );
        assert!(PubAck::parse(b"not json").is_err());
        assert!(PubAck::parse(b"{}").is_err());
    }
}
