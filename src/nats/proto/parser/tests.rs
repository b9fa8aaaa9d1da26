use bytes::{BufMut, Bytes, BytesMut};

use super::*;

pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Feeds `chunks` one after another, draining ops after each, as a read loop does.
pub(super) fn run(chunks: &[&[u8]]) -> Result<Vec<ClientOp>, ProtoError> {
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for c in chunks {
        buf.put_slice(c);
        while let Some(op) = p.next(&mut buf)? {
            ops.push(op);
        }
    }
    assert!(buf.is_empty(), "left over: {:?}", buf);
    Ok(ops)
}

pub(super) fn whole(input: &[u8]) -> Result<Vec<ClientOp>, ProtoError> {
    run(&[input])
}

/// Deterministic xorshift64*, enough to pick split points.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_splits(input: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        // Mostly small pieces, sometimes large, so every boundary is hit.
        let max = if rng.below(4) == 0 { 200 } else { 8 };
        let n = (1 + rng.below(max)).min(rest.len());
        let (a, r) = rest.split_at(n);
        out.push(a);
        rest = r;
    }
    out
}

const STREAM: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"lang\":\"rust\",\"x\":[1]}\r\n\
PING\r\n\
pong\r\n\
SUB foo.* 1\r\n\
sub\tbar  q1\t\t2\r\n\
PUB foo.a 5\r\nhello\r\n\
pub foo.b _INBOX.1 0\r\n\r\n\
PuB\tfoo.c\t\t3\r\na\r\n\r\n\
HPUB foo.h 22 27\r\nNATS/1.0\r\nA: 12345\r\n\r\nworld\r\n\
hpub foo.h r.1 12 12\r\nNATS/1.0\r\n\r\n\r\n\
+OK\r\n\
INFO {\"anything\":true}\r\n\
UNSUB 1\r\n\
unsub 2 10\n\
PING\n";

fn expected() -> Vec<ClientOp> {
    vec![
        ClientOp::Connect(ConnectOptions {
            verbose: false,
            pedantic: false,
            headers: true,
            no_responders: true,
            lang: Some("rust".into()),
            ..ConnectOptions::default()
        }),
        ClientOp::Ping,
        ClientOp::Pong,
        ClientOp::Sub {
            subject: b("foo.*"),
            queue: None,
            sid: b("1"),
        },
        ClientOp::Sub {
            subject: b("bar"),
            queue: Some(b("q1")),
            sid: b("2"),
        },
        ClientOp::Pub {
            subject: b("foo.a"),
            reply: None,
            payload: b("hello"),
        },
        ClientOp::Pub {
            subject: b("foo.b"),
            reply: Some(b("_INBOX.1")),
            payload: b(""),
        },
        ClientOp::Pub {
            subject: b("foo.c"),
            reply: None,
            payload: b("a\r\n"),
        },
        ClientOp::HPub {
            subject: b("foo.h"),
            reply: None,
            headers: b("NATS/1.0\r\nA: 12345\r\n\r\n"),
            payload: b("world"),
        },
        ClientOp::HPub {
            subject: b("foo.h"),
            reply: Some(b("r.1")),
            headers: b("NATS/1.0\r\n\r\n"),
            payload: b(""),
        },
        ClientOp::Unsub {
            sid: b("1"),
            max: None,
        },
        ClientOp::Unsub {
            sid: b("2"),
            max: Some(10),
        },
        ClientOp::Ping,
    ]
}

#[test]
fn many_ops_in_one_buffer() {
    assert_eq!(whole(STREAM).unwrap(), expected());
}

#[test]
fn one_byte_at_a_time() {
    let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
    assert_eq!(run(&chunks).unwrap(), expected());
}

#[test]
fn random_splits_give_identical_ops() {
    for seed in 1..300u64 {
        let chunks = random_splits(STREAM, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        assert_eq!(run(&chunks).unwrap(), expected(), "seed {seed}");
    }
}

#[test]
fn args_are_slices_of_the_read_buffer() {
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"PUB subj 3\r\nabc\r\n"[..]);
    let base = buf.as_ptr() as usize;
    let Some(ClientOp::Pub {
        subject, payload, ..
    }) = p.next(&mut buf).unwrap()
    else {
        panic!("expected PUB");
    };
    assert_eq!(subject.as_ptr() as usize, base + 4);
    assert_eq!(payload.as_ptr() as usize, base + 12);
}

#[test]
fn large_payload_byte_at_a_time() {
    let payload = vec![b'x'; 64 * 1024];
    let mut input = format!("PUB big {}\r\n", payload.len()).into_bytes();
    input.extend_from_slice(&payload);
    input.extend_from_slice(b"\r\n");
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    let ops = run(&chunks).unwrap();
    assert_eq!(
        ops,
        vec![ClientOp::Pub {
            subject: b("big"),
            reply: None,
            payload: Bytes::from(payload)
        }]
    );
}

#[test]
fn ping_pong_ignore_trailing_text() {
    assert_eq!(
        whole(b"PING foo\r\nPONGxyz\r\n").unwrap(),
        vec![ClientOp::Ping, ClientOp::Pong]
    );
}

#[test]
fn every_case_mix_is_accepted() {
    for s in ["PUB", "pub", "Pub", "pUb", "puB"] {
        let input = format!("{s} x 1\r\n1\r\n");
        assert_eq!(whole(input.as_bytes()).unwrap().len(), 1, "{s}");
    }
    for s in ["connect {}\r\n", "Connect\t{}\r\n", "CoNnEcT {}\r\n"] {
        assert!(matches!(
            whole(s.as_bytes()).unwrap()[..],
            [ClientOp::Connect(_)]
        ));
    }
}
