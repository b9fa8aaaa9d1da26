use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(first: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("{first}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn standard(extra: &[&str]) -> Vec<u8> {
    let mut headers = vec![
        "Host: broker.local:8083",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    headers.extend_from_slice(extra);
    request("GET /mqtt HTTP/1.1", &headers)
}

#[test]
fn request_accepts_a_browser_request() {
    let head = request(
        "GET /mqtt?clientId=abc HTTP/1.1",
        &[
            "host: broker.local",
            "connection: keep-alive, Upgrade",
            "pragma: no-cache",
            "upgrade: WebSocket",
            "origin: http://localhost:3000",
            "sec-websocket-version:13",
            "user-agent: Mozilla/5.0 \u{e9}",
            "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==\t",
            "sec-websocket-extensions: permessage-deflate; client_max_window_bits",
            "sec-websocket-protocol: mqtt",
        ],
    );
    assert_eq!(
        check(&head, "/mqtt").unwrap(),
        Upgrade {
            key: KEY,
            protocol: Some("mqtt")
        }
    );
}

#[test]
fn request_subprotocol_selection() {
    let cases: [(&[&str], Option<&str>); 6] = [
        (&[], None),
        (&["Sec-WebSocket-Protocol: mqtt"], Some("mqtt")),
        (&["Sec-WebSocket-Protocol: mqttv3.1"], Some("mqttv3.1")),
        (&["Sec-WebSocket-Protocol: wamp, MQTT"], Some("MQTT")),
        (
            &["Sec-WebSocket-Protocol: mqttv3.1, mqtt"],
            Some("mqttv3.1"),
        ),
        (
            &[
                "Sec-WebSocket-Protocol: chat",
                "Sec-WebSocket-Protocol: x, mqtt",
            ],
            Some("mqtt"),
        ),
    ];
    for (extra, want) in cases {
        let head = standard(extra);
        assert_eq!(check(&head, "/mqtt").unwrap().protocol, want, "{extra:?}");
    }
    let head = standard(&["Sec-WebSocket-Protocol: chat, superchat"]);
    assert!(
        matches!(check(&head, "/mqtt"), Err(WsError::Subprotocol(p)) if p == "chat, superchat")
    );
}

#[test]
fn request_path_forms() {
    for first in [
        "GET /mqtt HTTP/1.1",
        "GET /mqtt? HTTP/1.1",
        "GET /mqtt?a=b&c HTTP/1.1",
        "GET http://broker.local:8083/mqtt HTTP/1.1",
    ] {
        let mut head = standard(&[]);
        head.splice(..b"GET /mqtt HTTP/1.1".len(), first.bytes());
        assert!(check(&head, "/mqtt").is_ok(), "{first}");
    }
    for (first, path) in [
        ("GET / HTTP/1.1", "/"),
        ("GET /mqtt/ HTTP/1.1", "/mqtt/"),
        ("GET /MQTT HTTP/1.1", "/MQTT"),
        ("GET http://host HTTP/1.1", "/"),
    ] {
        let mut head = standard(&[]);
        head.splice(..b"GET /mqtt HTTP/1.1".len(), first.bytes());
        assert!(
            matches!(check(&head, "/mqtt"), Err(WsError::Path(p)) if p == path),
            "{first}"
        );
    }
}

#[test]
fn request_refusals() {
    let base = standard(&[]);
    let text = String::from_utf8(base.clone()).unwrap();
    let edit = |from: &str, to: &str| text.replacen(from, to, 1).into_bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (edit("GET", "POST"), "Method(\"POST\")"),
        (edit("Upgrade: websocket", "Upgrade: h2c"), "NotUpgrade"),
        (edit("Upgrade: websocket\r\n", ""), "NotUpgrade"),
        (
            edit("Connection: Upgrade", "Connection: keep-alive"),
            "NotUpgrade",
        ),
        (edit("Version: 13", "Version: 8"), "Version(Some(\"8\"))"),
        (edit("Sec-WebSocket-Version: 13\r\n", ""), "Version(None)"),
        (edit(KEY, "c2hvcnQ="), "Key"),
        (edit(KEY, "not base64 at all"), "Key"),
        (
            edit("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "Key",
        ),
        (
            edit(
                "Sec-WebSocket-Version",
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version",
            ),
            "Key",
        ),
        (edit("HTTP/1.1", "HTTP/1.0"), "Malformed"),
        (edit("GET /mqtt", "GET  /mqtt"), "Malformed"),
        (edit("\r\nUpgrade", "\nUpgrade"), "Malformed"),
        (
            edit("Upgrade: websocket", "Upgrade : websocket"),
            "Malformed",
        ),
        (
            edit("Upgrade: websocket", "Upgrade: websocket\r\n folded"),
            "Malformed",
        ),
        (edit("Upgrade: websocket", "Upgrade websocket"), "Malformed"),
        (
            edit("Upgrade: websocket", "Upgrade: web\rsocket"),
            "Malformed",
        ),
        (b"\r\n\r\n".to_vec(), "Malformed"),
    ];
    for (head, want) in cases {
        let got = format!("{:?}", check(&head, "/mqtt").unwrap_err());
        assert!(
            got.starts_with(want),
            "{got} for {:?}",
            String::from_utf8_lossy(&head)
        );
    }
}
