use super::*;
use crate::transport::ws::frame::{self, Frame, OpCode};
use std::time::Duration;
use tokio::io::{DuplexStream, duplex};
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(5);

const GOOD: &str = "GET /mqtt HTTP/1.1\r\nHost: localhost:8083\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n";

/// Reads what the server sent up to the end of its response head (or end-of-file).
async fn response_head(client: &mut DuplexStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match timeout(DEADLINE, client.read(&mut byte))
            .await
            .expect("response timed out")
        {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8(got).expect("response not UTF-8")
}

/// Sends `request` to `accept` and returns its result and the response head.
async fn exchange(
    request: &[u8],
    max_request: usize,
) -> (
    Result<WsStream<DuplexStream>, WsError>,
    String,
    DuplexStream,
) {
    let (mut client, server) = duplex(64 * 1024);
    client.write_all(request).await.unwrap();
    let result = timeout(DEADLINE, accept(server, "/mqtt", max_request))
        .await
        .expect("accept timed out");
    let head = response_head(&mut client).await;
    (result, head, client)
}

/// The example of RFC 6455 §1.3.
#[test]
fn handshake_rfc6455_accept_key() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[tokio::test]
async fn handshake_answers_101() {
    let (result, head, _client) = exchange(format!("{GOOD}\r\n").as_bytes(), 4096).await;
    assert!(result.is_ok());
    assert_eq!(
        head,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[tokio::test]
async fn handshake_answers_with_the_mqtt_subprotocol() {
    for (offer, answer) in [
        ("mqtt", "mqtt"),
        ("mqttv3.1", "mqttv3.1"),
        ("wamp, mqtt", "mqtt"),
    ] {
        let request = format!("{GOOD}Sec-WebSocket-Protocol: {offer}\r\n\r\n");
        let (result, head, _client) = exchange(request.as_bytes(), 4096).await;
        assert!(result.is_ok(), "{offer}");
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nSec-WebSocket-Protocol: {answer}\r\n")),
            "{head}"
        );
    }
}

/// Each refusal with its exact status line (and the headers that go with it).
#[tokio::test]
async fn handshake_refusals_answer_their_status() {
    let good = GOOD.to_owned();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            good.replacen("GET", "POST", 1),
            "405 Method Not Allowed",
            "Allow: GET",
        ),
        (good.replacen("/mqtt", "/ws", 1), "404 Not Found", ""),
        (
            good.replacen("Version: 13", "Version: 8", 1),
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13",
        ),
        (
            good.replacen("Sec-WebSocket-Version: 13\r\n", "", 1),
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13",
        ),
        (
            good.replacen("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", 1),
            "400 Bad Request",
            "",
        ),
        (
            good.replacen("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1),
            "400 Bad Request",
            "",
        ),
        (
            good.replacen("Upgrade: websocket\r\n", "", 1),
            "400 Bad Request",
            "",
        ),
        (
            good.replacen("Connection: Upgrade", "Connection: close", 1),
            "400 Bad Request",
            "",
        ),
        (
            format!("{good}Sec-WebSocket-Protocol: chat\r\n"),
            "400 Bad Request",
            "",
        ),
        (
            good.replacen("HTTP/1.1", "HTTP/1.0", 1),
            "400 Bad Request",
            "",
        ),
        (
            format!("{good}X-Padding: {}\r\n", "x".repeat(5000)),
            "431 Request Header Fields Too Large",
            "",
        ),
    ];
    for (request, status, header) in cases {
        let (result, head, _client) = exchange(format!("{request}\r\n").as_bytes(), 4096).await;
        let err = result.expect_err(status);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{err}: got {head:?}, want {status}"
        );
        assert!(head.contains(&format!("\r\n{header}")), "{head}");
        assert!(head.contains("Content-Length: 0\r\n"), "{head}");
    }
}

#[tokio::test]
async fn handshake_too_large_without_blank_line() {
    let request = format!("{GOOD}X-Endless: {}", "y".repeat(300));
    let (result, head, _client) = exchange(request.as_bytes(), 256).await;
    assert!(matches!(result, Err(WsError::RequestTooLarge(256))));
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
}

#[tokio::test]
async fn handshake_incomplete_request_gets_no_answer() {
    let (mut client, server) = duplex(4096);
    client.write_all(&GOOD.as_bytes()[..40]).await.unwrap();
    client.shutdown().await.unwrap();
    let result = timeout(DEADLINE, accept(server, "/mqtt", 4096))
        .await
        .unwrap();
    assert!(matches!(result, Err(WsError::Incomplete)));
    let mut rest = Vec::new();
    timeout(DEADLINE, client.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
}

/// A request arriving a few bytes at a time (the blank line split across reads).
#[tokio::test]
async fn handshake_request_in_pieces() {
    let (mut client, server) = duplex(4096);
    let request = format!("{GOOD}\r\n");
    let writer = tokio::spawn(async move {
        for piece in request.as_bytes().chunks(3) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let result = timeout(DEADLINE, accept(server, "/mqtt", 4096))
        .await
        .unwrap();
    assert!(result.is_ok());
    let mut client = writer.await.unwrap();
    assert!(
        response_head(&mut client)
            .await
            .starts_with("HTTP/1.1 101 ")
    );
}

/// A client that sends its first frame right behind the request: the frame is not lost.
#[tokio::test]
async fn handshake_keeps_pipelined_first_frame() {
    let mut request = format!("{GOOD}\r\n").into_bytes();
    let connect = Frame {
        mask: Some([1, 2, 3, 4]),
        ..Frame::new(
            OpCode::Binary,
            &b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"[..],
        )
    };
    let mut wire = bytes::BytesMut::new();
    frame::encode(&connect, &mut wire);
    request.extend_from_slice(&wire);
    let (result, head, _client) = exchange(&request, 4096).await;
    assert!(head.starts_with("HTTP/1.1 101 "));
    let mut ws = result.unwrap();
    let mut got = vec![0u8; connect.payload.len()];
    timeout(DEADLINE, ws.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, connect.payload);
}
