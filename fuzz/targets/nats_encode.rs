//! A test-only encoder of what NATS clients send, the inverse of `ferry::nats::proto::Parser`
//! (ferry itself only encodes server-to-client operations).

use ferry::nats::proto::{ClientOp, ConnectOptions};

/// Appends `op` in its wire form. Ops that came out of the parser encode to something
/// that parses back to them: arguments never hold a space, tab or LF, and CONNECT's
/// strings are JSON-escaped.
pub fn encode(op: &ClientOp, out: &mut Vec<u8>) {
    match op {
        ClientOp::Connect(o) => {
            out.extend_from_slice(b"CONNECT ");
            out.extend_from_slice(connect_json(o).as_bytes());
        }
        ClientOp::Pub {
            subject,
            reply,
            payload,
        } => {
            args(out, "PUB", &[Some(subject), reply.as_ref()]);
            out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
            out.extend_from_slice(payload);
        }
        ClientOp::HPub {
            subject,
            reply,
            headers,
            payload,
        } => {
            args(out, "HPUB", &[Some(subject), reply.as_ref()]);
            let total = headers.len() + payload.len();
            out.extend_from_slice(format!(" {} {total}\r\n", headers.len()).as_bytes());
            out.extend_from_slice(headers);
            out.extend_from_slice(payload);
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => args(out, "SUB", &[Some(subject), queue.as_ref(), Some(sid)]),
        ClientOp::Unsub { sid, max } => {
            args(out, "UNSUB", &[Some(sid)]);
            if let Some(max) = max {
                out.extend_from_slice(format!(" {max}").as_bytes());
            }
        }
        ClientOp::Ping => out.extend_from_slice(b"PING"),
        ClientOp::Pong => out.extend_from_slice(b"PONG"),
    }
    out.extend_from_slice(b"\r\n");
}

/// `OP a b c` for the arguments that are present.
fn args(out: &mut Vec<u8>, op: &str, list: &[Option<&bytes::Bytes>]) {
    out.extend_from_slice(op.as_bytes());
    for a in list.iter().flatten() {
        out.push(b' ');
        out.extend_from_slice(a);
    }
}

/// Every field written out, so the defaults are not what makes the round trip pass.
fn connect_json(o: &ConnectOptions) -> String {
    serde_json::json!({
        "verbose": o.verbose,
        "pedantic": o.pedantic,
        "echo": o.echo,
        "headers": o.headers,
        "no_responders": o.no_responders,
        "name": o.name,
        "lang": o.lang,
        "version": o.version,
        "protocol": o.protocol,
        "user": o.user,
        "pass": o.pass,
        "auth_token": o.auth_token,
        "tls_required": o.tls_required,
    })
    .to_string()
}
