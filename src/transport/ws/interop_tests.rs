//! Round trips against a real WebSocket client (tokio-websockets): it masks its frames,
//! fragments long messages, sends pings and runs the closing handshake.

use super::{WsStream, accept};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::timeout;
use tokio_websockets::{ClientBuilder, CloseCode, Config, Message, WebSocketStream};

const DEADLINE: Duration = Duration::from_secs(10);

async fn connect(io: DuplexStream, frame_size: usize) -> WebSocketStream<DuplexStream> {
    let (client, response) = ClientBuilder::new()
        .uri("ws://localhost:8083/mqtt?client=test")
        .unwrap()
        .add_header(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("mqtt"),
        )
        .config(Config::default().frame_size(frame_size))
        .connect_on(io)
        .await
        .expect("handshake");
    assert_eq!(response.headers()["sec-websocket-protocol"], "mqtt");
    client
}

/// Echoes everything it reads until end-of-file; returns the byte count.
async fn echo(mut ws: WsStream<DuplexStream>) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 1000];
    let mut total = 0;
    loop {
        let n = ws.read(&mut buf).await?;
        if n == 0 {
            ws.shutdown().await?;
            return Ok(total);
        }
        total += n;
        ws.write_all(&buf[..n]).await?;
        ws.flush().await?;
    }
}

#[tokio::test]
async fn interop_client_round_trip_ping_and_close() {
    let (client_io, server_io) = duplex(4096);
    let server = tokio::spawn(async move {
        let ws = accept(server_io, "/mqtt", 4096).await.expect("accept");
        echo(ws).await
    });
    let mut client = timeout(DEADLINE, connect(client_io, 1000)).await.unwrap();

    let connect_packet = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c".to_vec();
    let publish: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect(); // 5 frames
    let two_packets = b"\xc0\x00\xe0\x00".to_vec();
    let sent = [connect_packet.clone(), publish.clone(), two_packets.clone()].concat();
    client.send(Message::binary(connect_packet)).await.unwrap();
    client.send(Message::ping(&b"keepalive"[..])).await.unwrap();
    client.send(Message::binary(publish)).await.unwrap();
    client.send(Message::binary(two_packets)).await.unwrap();

    let mut echoed = Vec::new();
    let mut pong = false;
    while echoed.len() < sent.len() || !pong {
        let msg = timeout(DEADLINE, client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if msg.is_pong() {
            assert_eq!(&*msg.into_payload(), b"keepalive");
            pong = true;
        } else {
            assert!(msg.is_binary(), "{msg:?}");
            echoed.extend_from_slice(&msg.into_payload());
        }
    }
    assert_eq!(echoed, sent);

    // The client's close is echoed and ends the server's reads.
    timeout(DEADLINE, client.close()).await.unwrap().unwrap();
    let total = timeout(DEADLINE, server).await.unwrap().unwrap().unwrap();
    assert_eq!(total, sent.len());
}

#[tokio::test]
async fn interop_server_shutdown_closes_client() {
    let (client_io, server_io) = duplex(4096);
    let server = tokio::spawn(async move {
        let mut ws = accept(server_io, "/mqtt", 4096).await.expect("accept");
        ws.write_all(b"\x20\x02\x00\x00").await?; // CONNACK
        ws.shutdown().await?;
        let mut rest = Vec::new();
        ws.read_to_end(&mut rest).await.map(|_| rest)
    });
    let mut client = timeout(DEADLINE, connect(client_io, 1 << 20))
        .await
        .unwrap();
    let msg = timeout(DEADLINE, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&*msg.into_payload(), b"\x20\x02\x00\x00");
    let msg = timeout(DEADLINE, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        msg.as_close().map(|(code, _)| code),
        Some(CloseCode::NORMAL_CLOSURE)
    );
    // The client acknowledges the close; the server then reads end-of-file.
    while let Some(Ok(_)) = timeout(DEADLINE, client.next()).await.unwrap() {}
    let rest = timeout(DEADLINE, server).await.unwrap().unwrap().unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn interop_oversized_frame_closes_with_1009() {
    let (client_io, server_io) = duplex(4096);
    let server = tokio::spawn(async move {
        let mut ws = accept(server_io, "/mqtt", 4096).await.expect("accept");
        ws.set_max_payload(1024);
        ws.read_to_end(&mut Vec::new()).await
    });
    let mut client = timeout(DEADLINE, connect(client_io, 1 << 20))
        .await
        .unwrap();
    client.send(Message::binary(vec![0u8; 2000])).await.unwrap();
    let msg = timeout(DEADLINE, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        msg.as_close().map(|(code, _)| code),
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
    let err = timeout(DEADLINE, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}
