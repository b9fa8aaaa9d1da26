//! `ferry::mqtt::codec::decode` / `encode`.
//!
//! The input is a byte stream from one client. It is decoded packet by packet as
//! - a new connection (`None`: only CONNECT may come; after it, the CONNECT's version),
//! - an MQTT 3.1, 3.1.1 and 5 connection (`Some(protocol)` from the first byte),
//!
//! and the same again with the first packet's remaining length rewritten to fit the
//! input, so mutations of the body are not all lost to a wrong length. Checks:
//! - decode never panics; `Ok(None)` leaves the buffer as it was;
//! - a decoded packet cut short (after 1, 2, half, all but one of its bytes) gives
//!   `Ok(None)`, as a packet still arriving must;
//! - every decoded packet encodes (`encode` refuses only what `decode` rejects), to
//!   exactly `encoded_len` bytes, and those bytes decode to an equal packet, whole.
//!
//! Not checked: that the re-encoding is byte-for-byte the input. decode accepts several
//! wire forms of one packet and encode writes one, so that cannot hold (the run prints
//! how often it did). The forms, as found by running this target with any byte
//! difference made a failure:
//! - a Variable Byte Integer with more bytes than needed (remaining length, property
//!   length, subscription identifier), e.g. PINGREQ as `c0 80 00`. MQTT 5 section 1.5.5
//!   says "The encoded value MUST use the minimum number of bytes necessary to represent
//!   the value [MQTT-1.5.5-1]" (3.1.1 has no such rule), so for MQTT 5 decode could
//!   refuse these as malformed, as mosquitto does for the varints inside the body;
//! - MQTT 5 properties in another order than encode writes them;
//! - MQTT 5 PUBACK/PUBREC/PUBREL/PUBCOMP with reason 0x00 and no properties written out
//!   in full, and any reason code without a property length (DISCONNECT and AUTH are
//!   always written with one, for rumqttc's sake);
//! - bits MQTT 3.1 called "not used" (fixed-header flags, CONNACK's first byte).
//!
//! So the round trip compared is decode(encode(decode(x))) == decode(x).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::BytesMut;
use ferry::mqtt::codec::{MAX_VARINT, Packet, Protocol, decode, encode, encoded_len};

const MAX_PACKET: usize = 1 << 20;

const STARTS: [Option<Protocol>; 4] = [
    None,
    Some(Protocol::V31),
    Some(Protocol::V311),
    Some(Protocol::V5),
];

pub const DICT: &[&[u8]] = &[
    b"\x00\x04MQTT\x05",
    b"\x00\x04MQTT\x04",
    b"\x00\x06MQIsdp\x03",
    b"\xff\xff\xff\x7f",
    b"\x80\x80\x80\x01",
    b"\x80\x00",
    b"\x26\x00\x01k\x00\x01v",
    b"\x0b\x80\x01",
    b"\x23\x00\x01",
    b"\x00\x00",
    b"\x00\x01a",
];

static DECODED: AtomicU64 = AtomicU64::new(0);
static EXACT: AtomicU64 = AtomicU64::new(0);

pub fn stats() -> String {
    let decoded = DECODED.load(Relaxed);
    let exact = EXACT.load(Relaxed);
    format!("{decoded} packets decoded, {exact} of them re-encoded byte-for-byte")
}

pub fn run(data: &[u8]) -> Result<bool, String> {
    let mut accepted = false;
    for start in STARTS {
        accepted |= stream(data, start)?;
    }
    if let Some(fixed) = with_fitting_length(data) {
        for start in STARTS {
            accepted |= stream(&fixed, start)?;
        }
    }
    Ok(accepted)
}

/// `data` with its first remaining length replaced by the length of what follows it.
fn with_fitting_length(data: &[u8]) -> Option<Vec<u8>> {
    let (&first, rest) = data.split_first()?;
    let continued = rest.iter().take(4).take_while(|b| **b & 0x80 != 0).count();
    let body = rest.get((continued + 1).min(rest.len())..).unwrap_or(&[]);
    if body.len() > MAX_VARINT {
        return None;
    }
    let mut out = vec![first];
    let mut v = body.len();
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(body);
    (out != data).then_some(out)
}

/// Decodes packets off the front until the buffer is empty, incomplete or bad.
fn stream(data: &[u8], start: Option<Protocol>) -> Result<bool, String> {
    let mut protocol = start;
    let mut buf = BytesMut::from(data);
    let mut any = false;
    loop {
        let before = buf.clone();
        match decode(&mut buf, protocol, MAX_PACKET) {
            Ok(None) => {
                if buf != before {
                    return Err(format!(
                        "decode returned Ok(None) but changed the buffer ({protocol:?})"
                    ));
                }
                return Ok(any);
            }
            Err(e) => {
                let _ = e.reason_code();
                return Ok(any);
            }
            Ok(Some(packet)) => {
                any = true;
                let consumed = before.len() - buf.len();
                incomplete_prefixes(protocol, &before[..consumed])?;
                round_trip(&packet, protocol, &before[..consumed])?;
                if protocol.is_none() {
                    // As the session does: the connection now speaks the CONNECT's version.
                    if let Packet::Connect(c) = &packet {
                        protocol = Some(c.protocol);
                    }
                }
            }
        }
    }
}

/// A packet cut short is not a packet yet: `Ok(None)`, never an error, for a few cuts.
fn incomplete_prefixes(protocol: Option<Protocol>, wire: &[u8]) -> Result<(), String> {
    for cut in [1, 2, wire.len() / 2, wire.len() - 1] {
        if cut == 0 || cut >= wire.len() {
            continue;
        }
        let mut buf = BytesMut::from(&wire[..cut]);
        match decode(&mut buf, protocol, MAX_PACKET) {
            Ok(None) if buf.len() == cut => {}
            other => {
                return Err(format!(
                    "{protocol:?}: {wire:02x?} decodes, but its first {cut} bytes give {other:?}"
                ));
            }
        }
    }
    Ok(())
}

fn round_trip(packet: &Packet, ctx: Option<Protocol>, wire: &[u8]) -> Result<(), String> {
    DECODED.fetch_add(1, Relaxed);
    let protocol = match (packet, ctx) {
        (Packet::Connect(c), _) => c.protocol,
        (_, Some(p)) => p,
        (_, None) => return Err(format!("decoded {packet:?} before any CONNECT")),
    };
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).map_err(|e| {
        format!("{ctx:?}: decoded {packet:?} from {wire:02x?}, but encoding it fails: {e}")
    })?;
    if out.len() != encoded_len(packet, protocol) {
        return Err(format!(
            "encoded_len {} != encoded {} bytes for {packet:?}",
            encoded_len(packet, protocol),
            out.len()
        ));
    }
    let encoded = out.clone();
    match decode(&mut out, ctx, usize::MAX) {
        Ok(Some(again)) if again == *packet && out.is_empty() => {}
        other => {
            return Err(format!(
                "{ctx:?}: {wire:02x?} decodes to {packet:?}, which encodes to {:02x?}, \
                 which decodes to {other:?} with {} bytes left over",
                &encoded[..],
                out.len()
            ));
        }
    }
    if encoded[..] == *wire {
        EXACT.fetch_add(1, Relaxed);
    }
    Ok(())
}
