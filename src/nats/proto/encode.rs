//! What the server writes to a client: INFO, MSG, HMSG, -ERR, +OK, PING, PONG.
//! Byte layouts are nats-server's; `msg_len`/`hmsg_len` give the size of a
//! frame without writing it, for slow-consumer accounting.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use super::errors::ProtoError;

pub const OK: &[u8] = b"+OK\r\n";
pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";

/// The INFO a client gets on connect. Field names, order and "omit when
/// empty" choices copy nats-server's `Info` so clients see the familiar shape.
///
/// What the official clients need: nats-py and async-nats treat every field
/// as optional; both read `max_payload` (async-nats then refuses larger
/// publishes), `headers` (nats-py only asks for headers/no_responders when
/// the server offers them), `auth_required`, `tls_required`, and nats-py
/// `client_id`/`client_ip`. `go` is informational; nats-server always sends
/// it, so we do too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u8,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_available: bool,
    pub max_payload: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub client_id: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `INFO {json}\r\n`.
pub fn encode_info(info: &ServerInfo, out: &mut BytesMut) -> Result<(), ProtoError> {
    let json = serde_json::to_vec(info).map_err(|e| ProtoError::InfoEncode(e.to_string()))?;
    out.reserve(json.len() + 7);
    out.put_slice(b"INFO ");
    out.put_slice(&json);
    out.put_slice(b"\r\n");
    Ok(())
}

/// `-ERR 'text'\r\n`, nats-server's errProto format.
pub fn encode_err(text: &str, out: &mut BytesMut) {
    out.reserve(text.len() + 9);
    out.put_slice(b"-ERR '");
    out.put_slice(text.as_bytes());
    out.put_slice(b"'\r\n");
}

/// `MSG <subject> <sid> [reply] <#bytes>\r\n<payload>\r\n`.
pub fn encode_msg(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
    out: &mut BytesMut,
) {
    out.reserve(msg_len(subject, sid, reply, payload.len()));
    out.put_slice(b"MSG ");
    put_head(out, subject, sid, reply);
    put_decimal(out, payload.len());
    out.put_slice(b"\r\n");
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// `HMSG <subject> <sid> [reply] <#hdr> <#total>\r\n<hdr><payload>\r\n`.
pub fn encode_hmsg(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
    out: &mut BytesMut,
) {
    out.reserve(hmsg_len(subject, sid, reply, headers.len(), payload.len()));
    out.put_slice(b"HMSG ");
    put_head(out, subject, sid, reply);
    put_decimal(out, headers.len());
    out.put_u8(b' ');
    put_decimal(out, headers.len() + payload.len());
    out.put_slice(b"\r\n");
    out.put_slice(headers);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// Encoded size of [`encode_msg`]'s output.
pub fn msg_len(subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload_len: usize) -> usize {
    "MSG ".len() + head_len(subject, sid, reply) + decimal_len(payload_len) + 2 + payload_len + 2
}

/// Encoded size of [`encode_hmsg`]'s output.
pub fn hmsg_len(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers_len: usize,
    payload_len: usize,
) -> usize {
    let total = headers_len + payload_len;
    "HMSG ".len()
        + head_len(subject, sid, reply)
        + decimal_len(headers_len)
        + 1
        + decimal_len(total)
        + 2
        + total
        + 2
}

/// `<subject> <sid> [reply] ` with the trailing space before the sizes.
fn put_head(out: &mut BytesMut, subject: &[u8], sid: &[u8], reply: Option<&[u8]>) {
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    out.put_u8(b' ');
    if let Some(r) = reply {
        out.put_slice(r);
        out.put_u8(b' ');
    }
}

fn head_len(subject: &[u8], sid: &[u8], reply: Option<&[u8]>) -> usize {
    subject.len() + 1 + sid.len() + 1 + reply.map_or(0, |r| r.len() + 1)
}

/// Writes `n` in decimal without going through a String.
fn put_decimal(out: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put_slice(digits.get(i..).unwrap_or(&[]));
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ServerInfo {
        ServerInfo {
            server_id: "NFERRY".into(),
            server_name: "edge-1".into(),
            version: "2.10.0".into(),
            proto: 1,
            go: "go1.22".into(),
            host: "0.0.0.0".into(),
            port: 4222,
            headers: true,
            auth_required: false,
            tls_required: false,
            tls_available: false,
            max_payload: 1048576,
            client_id: 7,
            client_ip: "10.0.0.5".into(),
        }
    }

    #[test]
    fn info_is_byte_exact() {
        let mut out = BytesMut::new();
        encode_info(&info(), &mut out).unwrap();
        assert_eq!(
            &out[..],
            &br#"INFO {"server_id":"NFERRY","server_name":"edge-1","version":"2.10.0","proto":1,"go":"go1.22","host":"0.0.0.0","port":4222,"headers":true,"max_payload":1048576,"client_id":7,"client_ip":"10.0.0.5"}"#[..]
                .iter()
                .chain(b"\r\n")
                .copied()
                .collect::<Vec<u8>>()[..]
        );
        let mut i = info();
        i.auth_required = true;
        i.client_id = 0;
        i.client_ip.clear();
        let mut out = BytesMut::new();
        encode_info(&i, &mut out).unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.contains(r#""headers":true,"auth_required":true,"max_payload":1048576}"#));
        assert!(!s.contains("client_id") && !s.contains("client_ip"));
    }

    #[test]
    fn msg_is_byte_exact() {
        let mut out = BytesMut::new();
        encode_msg(b"foo.bar", b"9", None, b"hello", &mut out);
        assert_eq!(&out[..], b"MSG foo.bar 9 5\r\nhello\r\n");
        assert_eq!(out.len(), msg_len(b"foo.bar", b"9", None, 5));

        let mut out = BytesMut::new();
        encode_msg(b"foo", b"12", Some(b"_INBOX.a"), b"", &mut out);
        assert_eq!(&out[..], b"MSG foo 12 _INBOX.a 0\r\n\r\n");
        assert_eq!(out.len(), msg_len(b"foo", b"12", Some(b"_INBOX.a"), 0));
    }

    #[test]
    fn hmsg_is_byte_exact() {
        let hdr = b"NATS/1.0\r\nA: b\r\n\r\n";
        let mut out = BytesMut::new();
        encode_hmsg(b"foo", b"1", Some(b"r"), hdr, b"hi", &mut out);
        assert_eq!(
            &out[..],
            b"HMSG foo 1 r 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n"
        );
        assert_eq!(out.len(), hmsg_len(b"foo", b"1", Some(b"r"), 18, 2));

        // The no-responders frame nats-server sends (pre-2.12 block).
        let mut out = BytesMut::new();
        encode_hmsg(
            b"_INBOX.x",
            b"3",
            None,
            super::super::headers::no_responders_block(),
            b"",
            &mut out,
        );
        assert_eq!(
            &out[..],
            b"HMSG _INBOX.x 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        );
    }

    #[test]
    fn err_ok_ping_pong() {
        let mut out = BytesMut::new();
        encode_err("Unknown Protocol Operation", &mut out);
        assert_eq!(&out[..], b"-ERR 'Unknown Protocol Operation'\r\n");
        assert_eq!(OK, b"+OK\r\n");
        assert_eq!(PING, b"PING\r\n");
        assert_eq!(PONG, b"PONG\r\n");
    }

    #[test]
    fn decimals() {
        for n in [0usize, 1, 9, 10, 99, 100, 1048576, usize::MAX] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }
}
