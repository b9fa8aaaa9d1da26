//! The WebSocket frame codec (RFC 6455 §5.2): pure functions from bytes to frames and
//! back, without I/O, so that they can be unit-tested and fuzzed on their own.
//!
//! `decode` accepts exactly the frames that `encode` produces: lengths must use their
//! minimal encoding, so that `encode(decode(bytes))` gives back the bytes consumed. It
//! checks what the frame format itself requires (reserved bits, opcodes, control-frame
//! rules, lengths); what a server requires of a client (masking, no text, message
//! fragmentation) is the stream's business.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest frame header: 2 bytes, an 8-byte extended length and a 4-byte mask key.
pub const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One frame. `payload` is the application data, already unmasked; `mask` is the key
/// that was (or is to be) applied on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload: Bytes,
}

impl Frame {
    /// A final, unmasked frame, as a server sends them.
    pub fn new(opcode: OpCode, payload: impl Into<Bytes>) -> Frame {
        Frame {
            fin: true,
            opcode,
            mask: None,
            payload: payload.into(),
        }
    }
}

/// Why bytes are not a valid frame. Each is a protocol error; `close_code` is the status
/// to close the connection with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("reserved bits set in a frame (no extension was negotiated)")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("control frame longer than 125 bytes")]
    ControlTooLong,
    #[error("frame length not in its minimal encoding")]
    NonMinimalLength,
    #[error("64-bit frame length with the most significant bit set")]
    LengthHighBit,
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: usize },
}

impl FrameError {
    /// The close status for this error: 1009 (message too big) for `TooLarge`, 1002
    /// (protocol error) for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } => 1009,
            _ => 1002,
        }
    }
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    /// Header bytes, including the extended length and the mask key.
    len: usize,
    payload_len: usize,
}

/// Parses the header at the start of `buf`; `None` if more bytes are needed. Checks are
/// made in the order of the bytes they need, so feeding a frame byte by byte fails with
/// the same error, at the first byte that shows it, as feeding it whole.
fn header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, FrameError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    let short = b1 & 0x7F;
    if opcode.is_control() && usize::from(short) > MAX_CONTROL_PAYLOAD {
        return Err(FrameError::ControlTooLong);
    }
    let (payload_len, mut at) = match short {
        126 => {
            let Some(ext) = buf.get(2..4) else {
                return Ok(None);
            };
            let n = u16::from_be_bytes([ext[0], ext[1]]);
            if n < 126 {
                return Err(FrameError::NonMinimalLength);
            }
            (u64::from(n), 4)
        }
        127 => {
            let Some(ext) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut raw = [0u8; 8];
            raw.copy_from_slice(ext);
            let n = u64::from_be_bytes(raw);
            if n >> 63 != 0 {
                return Err(FrameError::LengthHighBit);
            }
            if n <= u64::from(u16::MAX) {
                return Err(FrameError::NonMinimalLength);
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    let payload_len = match usize::try_from(payload_len) {
        Ok(n) if n <= max_payload => n,
        _ => {
            return Err(FrameError::TooLarge {
                len: payload_len,
                max: max_payload,
            });
        }
    };
    let mask = if masked {
        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: at,
        payload_len,
    }))
}

/// How many more bytes the frame at the start of `buf` needs before `decode` can return
/// it (at least 1); `None` while its header is incomplete or invalid.
pub fn missing(buf: &[u8]) -> Option<usize> {
    let h = header(buf, usize::MAX).ok()??;
    let total = h.len.checked_add(h.payload_len)?;
    Some(total.saturating_sub(buf.len()).max(1))
}

/// Takes one frame off the front of `buf`. `Ok(None)`: `buf` holds only part of a frame
/// (nothing is consumed). The payload is split off `buf` without copying and unmasked in
/// place. A frame whose payload exceeds `max_payload` is refused as soon as its length
/// is known, before its payload arrives.
pub fn decode(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    let Some(h) = header(buf, max_payload)? else {
        return Ok(None);
    };
    match h.len.checked_add(h.payload_len) {
        Some(total) if buf.len() >= total => {}
        _ => return Ok(None),
    }
    buf.advance(h.len);
    let mut payload = buf.split_to(h.payload_len);
    if let Some(key) = h.mask {
        apply_mask(&mut payload, key);
    }
    Ok(Some(Frame {
        fin: h.fin,
        opcode: h.opcode,
        mask: h.mask,
        payload: payload.freeze(),
    }))
}

/// Writes a frame header for a payload of `len` bytes, with the minimal length encoding.
pub fn encode_header(
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
    out: &mut BytesMut,
) {
    out.reserve(MAX_HEADER);
    out.put_u8(if fin { 0x80 } else { 0 } | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.put_u8(mask_bit | len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.put_u8(mask_bit | 126);
        out.put_u16(n);
    } else {
        out.put_u8(mask_bit | 127);
        out.put_u64(len as u64);
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
}

/// Appends `frame` to `out`, masking the payload with `frame.mask` if set. Frames that
/// `decode` would refuse (a long control frame, say) are written as given.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    encode_header(
        frame.fin,
        frame.opcode,
        frame.mask,
        frame.payload.len(),
        out,
    );
    let start = out.len();
    out.extend_from_slice(&frame.payload);
    if let Some(key) = frame.mask {
        apply_mask(&mut out[start..], key);
    }
}

/// XORs `data` with the repeated 4-byte key (masking and unmasking are the same).
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
