use super::*;
use futures_util::FutureExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::timeout;

pub(super) const DEADLINE: Duration = Duration::from_secs(5);
const KEY: [u8; 4] = [0xa1, 0x5e, 0x07, 0x3c];

/// A client frame on the wire (masked, as clients send them).
pub(super) fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let f = Frame {
        fin,
        opcode,
        mask: Some(KEY),
        payload: Bytes::copy_from_slice(payload),
    };
    let mut out = BytesMut::new();
    frame::encode(&f, &mut out);
    out.to_vec()
}

pub(super) fn pair(capacity: usize) -> (DuplexStream, WsStream<DuplexStream>) {
    let (client, server) = duplex(capacity);
    (client, WsStream::from_raw(server, BytesMut::new()))
}

/// The client side's reader of server frames.
pub(super) struct Client {
    pub(super) io: DuplexStream,
    pub(super) buf: BytesMut,
}

impl Client {
    pub(super) async fn send(&mut self, wire: &[u8]) {
        self.io.write_all(wire).await.unwrap();
    }

    pub(super) async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = frame::decode(&mut self.buf, usize::MAX).unwrap() {
                assert_eq!(f.mask, None, "server frames are not masked");
                return f;
            }
            let n = timeout(DEADLINE, self.io.read_buf(&mut self.buf))
                .await
                .expect("no frame from the server")
                .unwrap();
            assert!(n > 0, "server closed the connection");
        }
    }
}

pub(super) async fn read_n(ws: &mut WsStream<DuplexStream>, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    timeout(DEADLINE, ws.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    got
}

/// MQTT bytes split across frames, frames carrying several packets, and an empty frame
/// in the middle read as one byte stream.
#[tokio::test]
async fn stream_reads_packets_split_across_and_packed_in_frames() {
    let connect = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c".as_slice();
    let pingreq = b"\xc0\x00".as_slice();
    let publish = b"\x30\x0a\x00\x03a/bhello".as_slice();
    let stream: Vec<u8> = [connect, pingreq, publish, pingreq, publish].concat();
    let (io, mut ws) = pair(64 * 1024);
    let mut client = Client {
        io,
        buf: BytesMut::new(),
    };
    let cut = [5, connect.len() + 3, connect.len() + 2 + publish.len()];
    client
        .send(&client_frame(OpCode::Binary, false, &stream[..cut[0]]))
        .await;
    client
        .send(&client_frame(
            OpCode::Continuation,
            false,
            &stream[cut[0]..cut[1]],
        ))
        .await;
    client
        .send(&client_frame(OpCode::Ping, true, b"mid-message"))
        .await;
    client
        .send(&client_frame(
            OpCode::Continuation,
            true,
            &stream[cut[1]..cut[2]],
        ))
        .await;
    client.send(&client_frame(OpCode::Binary, true, b"")).await;
    client
        .send(&client_frame(OpCode::Binary, true, &stream[cut[2]..]))
        .await;
    assert_eq!(read_n(&mut ws, stream.len()).await, stream);
    let pong = client.frame().await;
    assert_eq!(pong, Frame::new(OpCode::Pong, &b"mid-message"[..]));
}

/// A ping is answered while the application only reads (and the read stays pending).
#[tokio::test]
async fn stream_answers_ping_without_writes() {
    let (io, mut ws) = pair(4096);
    let mut client = Client {
        io,
        buf: BytesMut::new(),
    };
    let reader = tokio::spawn(async move {
        let mut b = [0u8; 16];
        let n = ws.read(&mut b).await.unwrap();
        b[..n].to_vec()
    });
    client
        .send(&client_frame(OpCode::Ping, true, b"are you there?"))
        .await;
    assert_eq!(
        client.frame().await,
        Frame::new(OpCode::Pong, &b"are you there?"[..])
    );
    client
        .send(&client_frame(OpCode::Pong, true, b"unsolicited"))
        .await;
    client
        .send(&client_frame(OpCode::Binary, true, b"\xc0\x00"))
        .await;
    assert_eq!(
        timeout(DEADLINE, reader).await.unwrap().unwrap(),
        b"\xc0\x00"
    );
}

/// Writes go out as final, unmasked binary frames of at most 64 KiB; a tiny pipe forces
/// many partial writes underneath and no byte is lost or repeated.
#[tokio::test]
async fn stream_writes_unmasked_binary_frames() {
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let (io, mut ws) = pair(7);
    let mut client = Client {
        io,
        buf: BytesMut::new(),
    };
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        ws.write_all(&data).await.unwrap();
        ws.write_all(b"tail").await.unwrap();
        ws.flush().await.unwrap();
        assert!(
            ws.wbuf.is_empty() && ws.wbuf.capacity() == 0,
            "queue memory kept"
        );
        ws
    });
    let mut got = Vec::new();
    while got.len() < expected.len() + 4 {
        let f = client.frame().await;
        assert!(f.fin && f.opcode == OpCode::Binary, "{f:?}");
        assert!(f.payload.len() <= MAX_WRITE_FRAME);
        got.extend_from_slice(&f.payload);
    }
    assert_eq!(&got[..expected.len()], expected);
    assert_eq!(&got[expected.len()..], b"tail");
    timeout(DEADLINE, writer).await.unwrap().unwrap();
}

/// A client that does not read makes writes wait once the queue is full: queued output
/// stays bounded, and all of it arrives once the client reads.
#[tokio::test]
async fn stream_write_queue_is_bounded() {
    let (io, mut ws) = pair(1024);
    let chunk = vec![7u8; 10_000];
    let mut accepted = 0;
    while let Some(r) = ws.write(&chunk).now_or_never() {
        accepted += r.unwrap();
        assert!(accepted < 1 << 20, "writes never wait");
    }
    assert!(
        ws.wbuf.len() <= MAX_QUEUED + MAX_WRITE_FRAME,
        "queued {}",
        ws.wbuf.len()
    );
    let mut client = Client {
        io,
        buf: BytesMut::new(),
    };
    let writer = tokio::spawn(async move { ws.flush().await.map(|()| ws) });
    let mut got = 0;
    while got < accepted {
        got += client.frame().await.payload.len();
    }
    assert_eq!(got, accepted);
    timeout(DEADLINE, writer).await.unwrap().unwrap().unwrap();
}

/// Split between a reading and a writing task, neither misses its wake-up: the writer's
/// flush and the reader's pong both complete while the client reads slowly.
#[tokio::test]
async fn stream_split_between_tasks_wakes_both() {
    let (io, ws) = pair(16);
    let mut client = Client {
        io,
        buf: BytesMut::new(),
    };
    let (mut rd, mut wr) = tokio::io::split(ws);
    let writer = tokio::spawn(async move {
        wr.write_all(&[5u8; 300]).await.unwrap();
        wr.flush().await.unwrap();
    });
    let reader = tokio::spawn(async move {
        let mut b = [0u8; 8];
        rd.read(&mut b).await.map(|n| b[..n].to_vec())
    });
    tokio::task::yield_now().await;
    client.send(&client_frame(OpCode::Ping, true, b"p")).await;
    let (mut data, mut pong) = (0, false);
    while data < 300 || !pong {
        let f = client.frame().await;
        match f.opcode {
            OpCode::Binary => data += f.payload.len(),
            OpCode::Pong => pong = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    timeout(DEADLINE, writer).await.unwrap().unwrap();
    client
        .send(&client_frame(OpCode::Binary, true, b"ok"))
        .await;
    assert_eq!(
        timeout(DEADLINE, reader).await.unwrap().unwrap().unwrap(),
        b"ok"
    );
}

/// Once everything read was consumed, the stream holds no read buffer; a large frame
/// arriving in pieces is reassembled.
#[tokio::test]
async fn stream_idle_holds_no_buffers() {
    let (io, mut ws) = pair(1024);
    let mut client = Client {
        io,
        buf: BytesMut::new(),
    };
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let wire = client_frame(OpCode::Binary, true, &big);
    let sender = tokio::spawn(async move {
        client.send(&wire).await;
        client
            .send(&client_frame(OpCode::Binary, true, b"small"))
            .await;
        client
    });
    assert_eq!(read_n(&mut ws, big.len()).await, big);
    assert_eq!(read_n(&mut ws, 5).await, b"small");
    assert_eq!(ws.rbuf.capacity(), 0);
    assert!(ws.payload.is_empty());
    assert_eq!(ws.wbuf.capacity(), 0);
    let _client = timeout(DEADLINE, sender).await.unwrap().unwrap();
}
