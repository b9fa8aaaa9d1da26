//! `ferry::nats::proto::Parser`, the resumable parser of what NATS clients send.
//!
//! The input is one client's byte stream. With the default limits and with tiny ones
//! (so the limit errors are reached), it is fed to a fresh parser
//! - whole,
//! - one byte at a time,
//! - split in two: at every point for inputs up to 64 bytes, else at 4 points
//!   chosen from the input's hash (so a saved input replays identically),
//!
//! draining operations after each chunk as the connection does. Checks:
//! - no panic, and the three feedings give the same operations, the same error (if any)
//!   and the same number of bytes left buffered;
//! - every operation re-encoded with the test encoder (`nats_encode`) parses back to
//!   exactly that one operation;
//! - HPUB header blocks: `Headers::parse` never panics, and a block it accepts encodes
//!   (`Headers::encode`) to a block that parses back equal;
//! - PUB/HPUB delivered to a subscriber: `encode_msg`/`encode_hmsg` write the expected
//!   MSG/HMSG, of exactly the size `msg_len`/`hmsg_len` report;
//! - CONNECT options, subject checks and error texts are exercised for panics.

use bytes::BytesMut;
use ferry::nats::proto::{
    ClientOp, Headers, Limits, Parser, ProtoError, encode_hmsg, encode_msg, hmsg_len, msg_len,
    subject_matches, valid_publish_subject, valid_subscribe_subject,
};

use super::nats_encode;
use crate::rng::{Rng, hash};

pub const DICT: &[&[u8]] = &[
    b"PUB ",
    b"HPUB ",
    b"SUB ",
    b"UNSUB ",
    b"PING",
    b"PONG",
    b"CONNECT ",
    b"INFO ",
    b"+OK",
    b"-ERR ",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"NATS/1.0\r\n",
    b"NATS/1.0 503\r\n",
    b"\r\n\r\n",
    b": ",
    b"{}",
    b"\"headers\":true",
    b"\"verbose\":null",
    b"\"protocol\":256",
    b"\\u0000",
    b"999999999",
    b"1000000000",
    b"_INBOX.",
    b".>",
    b".*",
];

const SMALL: Limits = Limits {
    max_control_line: 24,
    max_payload: 40,
};
/// For re-parsing encoded ops: whatever the first parse accepted must fit.
const ROOMY: Limits = Limits {
    max_control_line: usize::MAX,
    max_payload: usize::MAX,
};
/// Inputs up to this long are split at every point.
const SPLIT_ALL: usize = 64;

/// What one feeding produced: the operations, then the error that ended it or the
/// number of bytes still buffered.
#[derive(Debug, PartialEq)]
struct Trace {
    ops: Vec<ClientOp>,
    end: Result<usize, ProtoError>,
}

/// Feeds `data` cut at the ascending positions `cuts`.
fn feed(data: &[u8], cuts: &[usize], limits: Limits) -> Trace {
    let mut parser = Parser::new(limits);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&data.len())) {
        buf.extend_from_slice(&data[from..to]);
        from = to;
        loop {
            match parser.next(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(e) => return Trace { ops, end: Err(e) },
            }
        }
    }
    Trace {
        ops,
        end: Ok(buf.len()),
    }
}

fn compare(how: &str, whole: &Trace, other: &Trace) -> Result<(), String> {
    if whole == other {
        return Ok(());
    }
    let i = whole
        .ops
        .iter()
        .zip(&other.ops)
        .take_while(|(a, b)| a == b)
        .count();
    Err(format!(
        "fed whole vs {how}: {} vs {} ops, first difference at op {i}: {:?} vs {:?}; \
         end {:?} vs {:?}",
        whole.ops.len(),
        other.ops.len(),
        whole.ops.get(i),
        other.ops.get(i),
        whole.end,
        other.end
    ))
}

pub fn run(data: &[u8]) -> Result<bool, String> {
    let mut accepted = false;
    for limits in [Limits::default(), SMALL] {
        let whole = feed(data, &[], limits);
        let bytewise: Vec<usize> = (1..data.len()).collect();
        compare("byte at a time", &whole, &feed(data, &bytewise, limits))?;
        let points: Vec<usize> = if data.len() <= SPLIT_ALL {
            (1..data.len()).collect()
        } else {
            let mut rng = Rng::new(hash(data));
            (0..4).map(|_| 1 + rng.below(data.len() - 1)).collect()
        };
        for at in points {
            compare(
                &format!("split at {at}"),
                &whole,
                &feed(data, &[at], limits),
            )?;
        }
        if let Err(e) = &whole.end {
            let _ = (e.err_line(), e.closes_connection(), e.to_string());
        }
        for op in &whole.ops {
            check_op(op)?;
        }
        accepted |= !whole.ops.is_empty();
    }
    Ok(accepted)
}

fn check_op(op: &ClientOp) -> Result<(), String> {
    let mut wire = Vec::new();
    nats_encode::encode(op, &mut wire);
    let again = feed(&wire, &[], ROOMY);
    if again.ops.as_slice() != std::slice::from_ref(op) || again.end != Ok(0) {
        return Err(format!(
            "{op:?} encodes to {:?}, which parses to {again:?}",
            String::from_utf8_lossy(&wire)
        ));
    }
    match op {
        ClientOp::Connect(o) => {
            let _ = (o.validate(true), o.validate(false));
        }
        ClientOp::Pub {
            subject,
            reply,
            payload,
        } => {
            let _ = valid_publish_subject(subject);
            let mut out = BytesMut::new();
            encode_msg(subject, b"1", reply.as_deref(), payload, &mut out);
            let len = msg_len(subject, b"1", reply.as_deref(), payload.len());
            check_delivery(op, &out, len)?;
        }
        ClientOp::HPub {
            subject,
            reply,
            headers,
            payload,
        } => {
            let _ = valid_publish_subject(subject);
            check_headers(headers)?;
            let mut out = BytesMut::new();
            encode_hmsg(subject, b"1", reply.as_deref(), headers, payload, &mut out);
            let len = hmsg_len(
                subject,
                b"1",
                reply.as_deref(),
                headers.len(),
                payload.len(),
            );
            check_delivery(op, &out, len)?;
        }
        ClientOp::Sub { subject, .. } => {
            if valid_subscribe_subject(subject) {
                let _ = subject_matches(subject, b"a.b.c");
                let _ = subject_matches(subject, subject);
            }
        }
        ClientOp::Unsub { .. } | ClientOp::Ping | ClientOp::Pong => {}
    }
    Ok(())
}

/// The MSG/HMSG a subscriber with sid 1 gets for a publish: `msg_len`/`hmsg_len` (used
/// for slow-consumer accounting) must be its exact size, and it must read like the
/// publish it came from with the sid added.
fn check_delivery(op: &ClientOp, out: &[u8], len: usize) -> Result<(), String> {
    let mut expected = Vec::new();
    nats_encode::encode(op, &mut expected);
    let expected = match expected.iter().position(|&b| b == b' ') {
        Some(sp) => {
            let (verb, rest) = expected.split_at(sp);
            let verb: &[u8] = if verb == b"PUB" { b"MSG" } else { b"HMSG" };
            // "<verb> <subject> 1 <rest of the line>"
            let subj_end = rest[1..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(rest.len(), |i| i + 1);
            [verb, &rest[..subj_end], b" 1", &rest[subj_end..]].concat()
        }
        None => expected,
    };
    if out.len() != len || out != expected.as_slice() {
        return Err(format!(
            "{op:?} is delivered as {:?} ({} bytes, size function says {len}), \
             expected {:?}",
            String::from_utf8_lossy(out),
            out.len(),
            String::from_utf8_lossy(&expected)
        ));
    }
    Ok(())
}

fn check_headers(block: &[u8]) -> Result<(), String> {
    let Ok(h) = Headers::parse(block) else {
        return Ok(());
    };
    let _ = h.get_all("nats-msg-id").count();
    let mut out = BytesMut::new();
    h.encode(&mut out).map_err(|e| {
        format!(
            "header block {:?} parses to {h:?}, which does not encode: {e}",
            String::from_utf8_lossy(block)
        )
    })?;
    match Headers::parse(&out) {
        Ok(again) if again == h => Ok(()),
        other => Err(format!(
            "header block {:?} parses to {h:?}, encodes to {:?}, which parses to {other:?}",
            String::from_utf8_lossy(block),
            String::from_utf8_lossy(&out)
        )),
    }
}
