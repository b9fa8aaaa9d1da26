//! `ferry::transport::ws`: the frame codec and the upgrade request check, on arbitrary bytes.
//!
//! Checks: no panic; every frame that decodes re-encodes to exactly the bytes it was
//! decoded from (decode refuses non-minimal lengths, so there is one wire form per
//! frame); a frame cut short by one byte is "not complete yet" (`Ok(None)`), never an
//! error or a different frame, so a frame arriving in pieces decodes the same; `Ok(None)`
//! leaves the buffer alone; and the HTTP upgrade check accepts or refuses without
//! panicking.

use bytes::BytesMut;
use ferry::transport::ws::{frame, request};

/// The frame payload limit used here: small, so that the "too large" refusal is reached.
const MAX_PAYLOAD: usize = 4096;

pub const DICT: &[&[u8]] = &[
    b"\x82",
    b"\x02",
    b"\x80",
    b"\x81",
    b"\x88",
    b"\x89",
    b"\x8a",
    b"\xfe",
    b"\xff",
    b"\x7e\x01\x00",
    b"\x7f\x00\x00\x00\x00\x00\x01\x00\x00",
    b"\x03\xe8",
    b"GET /mqtt HTTP/1.1\r\n",
    b"Upgrade: websocket\r\n",
    b"Connection: keep-alive, Upgrade\r\n",
    b"Sec-WebSocket-Version: 13\r\n",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    b"Sec-WebSocket-Protocol: mqtt\r\n",
    b"\r\n\r\n",
];

pub fn run(data: &[u8]) -> Result<bool, String> {
    let mut accepted = upgrade(data);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match frame::decode(&mut buf, MAX_PAYLOAD) {
            Ok(Some(f)) => {
                accepted = true;
                let used = before.len() - buf.len();
                let mut out = BytesMut::new();
                frame::encode(&f, &mut out);
                if out[..] != before[..used] {
                    return Err(format!(
                        "re-encoded frame differs: {:02x?} -> {:02x?}",
                        &before[..used],
                        &out[..]
                    ));
                }
                let mut short = BytesMut::from(&before[..used - 1]);
                match frame::decode(&mut short, MAX_PAYLOAD) {
                    Ok(None) if short.len() == used - 1 => {}
                    other => {
                        return Err(format!(
                            "a frame cut short by one byte gave {other:?}: {:02x?}",
                            &before[..used - 1]
                        ));
                    }
                }
            }
            Ok(None) => {
                if buf != before {
                    return Err("Ok(None) consumed bytes".into());
                }
                return Ok(accepted);
            }
            Err(e) => {
                let _ = (e.to_string(), e.close_code());
                return Ok(accepted);
            }
        }
    }
}

/// The upgrade request check on the input as a request head.
fn upgrade(data: &[u8]) -> bool {
    match request::check(data, "/mqtt") {
        Ok(_) => true,
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
