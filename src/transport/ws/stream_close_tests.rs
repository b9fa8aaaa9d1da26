//! The stream's closing paths: close frames both ways, protocol errors, end-of-file.

use super::tests::{Client, DEADLINE, client_frame, pair, read_n};
use super::*;
use crate::transport::ws::WsError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// A close frame is echoed with its status code; reads then return end-of-file and writes fail.
#[tokio::test]
async fn stream_close_is_echoed_then_eof() {
    for (payload, echo) in [(&b"\x03\xe9going away"[..], &b"\x03\xe9"[..]), (b"", b"")] {
        let (io, mut ws) = pair(4096);
        let mut client = Client {
            io,
            buf: BytesMut::new(),
        };
        client
            .send(&client_frame(OpCode::Binary, true, b"last"))
            .await;
        client
            .send(&client_frame(OpCode::Close, true, payload))
            .await;
        client
            .send(&client_frame(OpCode::Binary, true, b"after close: ignored"))
            .await;
        assert_eq!(read_n(&mut ws, 4).await, b"last");
        let mut rest = Vec::new();
        timeout(DEADLINE, ws.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
        assert_eq!(client.frame().await, Frame::new(OpCode::Close, echo));
        let err = ws.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(ws.read(&mut [0u8; 4]).await.unwrap(), 0);
    }
}

/// Each protocol violation fails the read with its error and closes with its code.
#[tokio::test]
async fn stream_refusals_close_with_their_code() {
    use crate::transport::ws::frame::FrameError;
    let unmasked = {
        let mut out = BytesMut::new();
        frame::encode(&Frame::new(OpCode::Binary, &b"x"[..]), &mut out);
        out.to_vec()
    };
    let cases: Vec<(Vec<Vec<u8>>, ProtocolError, u16)> = vec![
        (vec![unmasked], ProtocolError::Unmasked, 1002),
        (
            vec![client_frame(OpCode::Text, true, b"{}")],
            ProtocolError::Text,
            1003,
        ),
        (
            vec![client_frame(OpCode::Continuation, true, b"x")],
            ProtocolError::UnexpectedContinuation,
            1002,
        ),
        (
            vec![
                client_frame(OpCode::Binary, false, b"x"),
                client_frame(OpCode::Binary, true, b"y"),
            ],
            ProtocolError::Interleaved,
            1002,
        ),
        (
            vec![vec![0xc2, 0x80, 1, 2, 3, 4]],
            FrameError::ReservedBits.into(),
            1002,
        ),
        (
            vec![vec![0x83, 0x80, 1, 2, 3, 4]],
            FrameError::ReservedOpcode(3).into(),
            1002,
        ),
        (
            vec![vec![0x82, 0xfe, 0, 5, 1, 2, 3, 4]],
            FrameError::NonMinimalLength.into(),
            1002,
        ),
        (
            vec![vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]],
            FrameError::LengthHighBit.into(),
            1002,
        ),
        (
            vec![vec![0x89, 0xfe, 0, 126]],
            FrameError::ControlTooLong.into(),
            1002,
        ),
        (
            vec![vec![0x09, 0x80, 1, 2, 3, 4]],
            FrameError::FragmentedControl.into(),
            1002,
        ),
        (
            vec![vec![0x82, 0xfe, 0x01, 0x00]],
            FrameError::TooLarge { len: 256, max: 200 }.into(),
            1009,
        ),
        (
            vec![client_frame(OpCode::Close, true, b"\x03")],
            ProtocolError::BadClose,
            1002,
        ),
        (
            vec![client_frame(OpCode::Close, true, b"\x03\xed")],
            ProtocolError::BadClose,
            1002,
        ),
        (
            vec![client_frame(OpCode::Close, true, b"\x03\xe8\xff")],
            ProtocolError::CloseReasonNotUtf8,
            1007,
        ),
    ];
    for (frames, want, code) in cases {
        let (io, ws) = pair(4096);
        let mut ws = ws.with_max_payload(200);
        let mut client = Client {
            io,
            buf: BytesMut::new(),
        };
        for f in &frames {
            client.send(f).await;
        }
        // Data before the violation is still read (the fragment "x" before an interleaved frame).
        let err = timeout(DEADLINE, ws.read_to_end(&mut Vec::new()))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<WsError>());
        assert!(
            matches!(inner, Some(WsError::Protocol(p)) if *p == want),
            "{err} for {want:?}"
        );
        let close = client.frame().await;
        assert_eq!(
            close,
            Frame::new(OpCode::Close, code.to_be_bytes().to_vec()),
            "{want:?}"
        );
        // The stream stays failed.
        assert_eq!(
            ws.read(&mut [0u8; 4]).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}

/// `shutdown` sends close 1000 and then ends the stream.
#[tokio::test]
async fn stream_shutdown_sends_close_1000() {
    let (io, mut ws) = pair(4096);
    let mut client = Client {
        io,
        buf: BytesMut::new(),
    };
    ws.write_all(b"\xe0\x00").await.unwrap();
    timeout(DEADLINE, ws.shutdown()).await.unwrap().unwrap();
    assert_eq!(
        client.frame().await,
        Frame::new(OpCode::Binary, &b"\xe0\x00"[..])
    );
    assert_eq!(
        client.frame().await,
        Frame::new(OpCode::Close, &b"\x03\xe8"[..])
    );
    let mut rest = Vec::new();
    timeout(DEADLINE, client.io.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty() && client.buf.is_empty());
    // The client's close reply then ends the read side.
    client
        .send(&client_frame(OpCode::Close, true, b"\x03\xe8"))
        .await;
    assert_eq!(
        timeout(DEADLINE, ws.read(&mut [0u8; 4]))
            .await
            .unwrap()
            .unwrap(),
        0
    );
}

/// Between frames, a connection that ends is end-of-file; inside a frame, an error.
#[tokio::test]
async fn stream_eof_between_and_inside_frames() {
    let (mut io, mut ws) = pair(4096);
    io.write_all(&client_frame(OpCode::Binary, true, b"ab"))
        .await
        .unwrap();
    drop(io);
    let mut all = Vec::new();
    timeout(DEADLINE, ws.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, b"ab");

    let (mut io, mut ws) = pair(4096);
    let wire = client_frame(OpCode::Binary, true, b"abcdef");
    io.write_all(&wire[..wire.len() - 2]).await.unwrap();
    drop(io);
    let err = timeout(DEADLINE, ws.read_to_end(&mut Vec::new()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}
