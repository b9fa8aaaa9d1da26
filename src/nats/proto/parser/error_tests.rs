//! Error cases of the parser: each with the exact -ERR line (or none).
use bytes::{BufMut, Bytes, BytesMut};

use super::tests::{b, run, whole};
use super::*;

/// Runs `input` whole and byte by byte; both must fail with `err`, whose
/// -ERR text must be `line`.
fn assert_err(input: &[u8], err: ProtoError, line: Option<&str>) {
    assert_eq!(
        whole(input),
        Err(err.clone()),
        "{:?}",
        String::from_utf8_lossy(input)
    );
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&chunks), Err(err.clone()));
    assert_eq!(err.err_line(), line);
}

#[test]
fn unknown_operations() {
    let u = Some("Unknown Protocol Operation");
    for bad in [
        &b"FOO\r\n"[..],
        b"\r\n",
        b"MSG foo 1 1\r\nx\r\n",
        b"HMSG foo 1 0 0\r\n\r\n",
        b"PUBX foo 1\r\n",
        b"PUB\r\n",
        b"SUB\r\n",
        b"PU\r\n",
        b"-ERR\r\n",
        b"CONNECT{}\r\nXPING\r\n",
    ] {
        assert_err(bad, ProtoError::UnknownOp, u);
    }
}

#[test]
fn garbage_is_rejected_before_the_line_ends() {
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1"[..]);
    assert_eq!(p.next(&mut buf), Err(ProtoError::UnknownOp));
}

#[test]
fn payload_must_end_with_crlf() {
    let u = Some("Unknown Protocol Operation");
    assert_err(b"PUB foo 3\r\nabcd\r\n", ProtoError::UnknownOp, u);
    assert_err(b"PUB foo 3\r\nabc\n\r", ProtoError::UnknownOp, u);
    assert_err(
        b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\nX\r\n",
        ProtoError::UnknownOp,
        u,
    );
}

#[test]
fn bad_arguments_close_silently() {
    assert_err(b"PUB foo\r\n", ProtoError::BadArgs { op: "PUB" }, None);
    assert_err(b"PUB a b c 1\r\n", ProtoError::BadArgs { op: "PUB" }, None);
    assert_err(b"PUB foo x\r\n", ProtoError::BadSize { op: "PUB" }, None);
    assert_err(b"PUB foo -1\r\n", ProtoError::BadSize { op: "PUB" }, None);
    assert_err(
        b"PUB foo 1234567890\r\n",
        ProtoError::BadSize { op: "PUB" },
        None,
    );
    assert_err(b"HPUB foo 5\r\n", ProtoError::BadArgs { op: "HPUB" }, None);
    assert_err(
        b"HPUB foo x 5\r\n",
        ProtoError::BadSize { op: "HPUB" },
        None,
    );
    assert_err(b"HPUB foo 13 12\r\n", ProtoError::HeaderSizeTooLarge, None);
    assert_err(b"SUB foo\r\n", ProtoError::BadArgs { op: "SUB" }, None);
    assert_err(b"SUB a b c d\r\n", ProtoError::BadArgs { op: "SUB" }, None);
    assert_err(
        b"UNSUB 1 2 3\r\n",
        ProtoError::BadArgs { op: "UNSUB" },
        None,
    );
    assert_err(b"UNSUB  \r\n", ProtoError::BadArgs { op: "UNSUB" }, None);
}

#[test]
fn unparsable_unsub_max_means_now() {
    assert_eq!(
        whole(b"UNSUB 7 abc\r\n").unwrap(),
        vec![ClientOp::Unsub {
            sid: b("7"),
            max: None
        }]
    );
}

#[test]
fn connect_json_errors() {
    let e = whole(b"CONNECT {\"verbose\":\r\n").unwrap_err();
    assert!(matches!(e, ProtoError::ConnectJson(_)));
    assert_eq!(e.err_line(), None);
    assert!(e.closes_connection());
}

#[test]
fn client_err_and_bad_info() {
    assert_eq!(
        whole(b"-ERR 'boom'\r\n"),
        Err(ProtoError::PeerErr("'boom'".into()))
    );
    assert!(matches!(whole(b"INFO {\r\n"), Err(ProtoError::InfoJson(_))));
}

#[test]
fn hpub_lying_header_length() {
    // Real block is 22 bytes ("NATS/1.0\r\nA: 12345\r\n\r\n"), 20 announced.
    let input = b"HPUB foo 20 27\r\nNATS/1.0\r\nA: 12345\r\n\r\nworld\r\n";
    let e = whole(input).unwrap_err();
    assert!(matches!(e, ProtoError::BadHeaderBlock(_)));
    assert_eq!(e.err_line(), None);
    assert!(e.closes_connection());
    // Announced longer than real: block runs into the payload.
    assert!(matches!(
        whole(b"HPUB foo 24 27\r\nNATS/1.0\r\nA: 12345\r\n\r\nworld\r\n"),
        Err(ProtoError::BadHeaderBlock(_))
    ));
    // Block not starting with the version line.
    assert!(matches!(
        whole(b"HPUB foo 12 12\r\nname:derek\r\n\r\n"),
        Err(ProtoError::BadHeaderBlock(_))
    ));
}

#[test]
fn hpub_zero_header_length_is_plain() {
    assert_eq!(
        whole(b"HPUB foo 0 5\r\nHELLO\r\n").unwrap(),
        vec![ClientOp::HPub {
            subject: b("foo"),
            reply: None,
            headers: Bytes::new(),
            payload: b("HELLO"),
        }]
    );
}

#[test]
fn max_payload_rejected_before_payload_arrives() {
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"PUB big 10485760\r\n"[..]);
    let e = p.next(&mut buf).unwrap_err();
    assert_eq!(
        e,
        ProtoError::MaxPayload {
            size: 10 * 1024 * 1024,
            max: 1024 * 1024
        }
    );
    assert_eq!(e.err_line(), Some("Maximum Payload Violation"));
    assert!(e.closes_connection());

    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"HPUB big r 12 1048577\r\n"[..]);
    assert!(matches!(
        p.next(&mut buf),
        Err(ProtoError::MaxPayload { .. })
    ));

    // Exactly max_payload is fine.
    let mut p = Parser::new(Limits {
        max_control_line: 4096,
        max_payload: 3,
    });
    let mut buf = BytesMut::from(&b"PUB a 3\r\nabc\r\n"[..]);
    assert!(p.next(&mut buf).unwrap().is_some());
}

#[test]
fn long_control_line_rejected_while_incomplete() {
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"PUB "[..]);
    let chunk = vec![b'a'; 1024];
    let mut fed = 0;
    let err = loop {
        buf.put_slice(&chunk);
        fed += chunk.len();
        match p.next(&mut buf) {
            Ok(None) => assert!(fed <= 4096, "accepted {fed} bytes without a line end"),
            Ok(Some(op)) => panic!("unexpected {op:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(fed, 5 * 1024);
    assert_eq!(err, ProtoError::MaxControlLine);
    assert_eq!(err.err_line(), Some("maximum control line exceeded"));
    assert!(err.closes_connection());
}

#[test]
fn eight_kib_control_line_rejected() {
    let mut line = b"SUB ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 8 * 1024));
    line.extend_from_slice(b" 1\r\n");
    assert_err(
        &line,
        ProtoError::MaxControlLine,
        Some("maximum control line exceeded"),
    );
}

#[test]
fn control_line_limit_is_on_the_arguments() {
    let subject = "s".repeat(4096 - 2);
    let ok = format!("SUB {subject} 1\r\n");
    assert_eq!(whole(ok.as_bytes()).unwrap().len(), 1);
    let bad = format!("SUB {subject}x 1\r\n");
    assert_eq!(whole(bad.as_bytes()), Err(ProtoError::MaxControlLine));
    // Whitespace runs are bounded too, though nats-server would skip them.
    let spaces = format!("PING{}", " ".repeat(5000));
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::from(spaces.as_bytes());
    assert_eq!(p.next(&mut buf), Err(ProtoError::MaxControlLine));
}

#[test]
fn trailing_cr_is_not_counted_against_the_limit() {
    let mut p = Parser::new(Limits {
        max_control_line: 4,
        max_payload: 10,
    });
    let mut buf = BytesMut::from(&b"SUB a 1\r"[..]);
    assert_eq!(p.next(&mut buf), Ok(None));
    buf.put_slice(b"\n");
    assert!(matches!(p.next(&mut buf), Ok(Some(ClientOp::Sub { .. }))));
}
