//! Data representations of spec 1.5: integers, UTF-8 strings, binary data,
//! read from a zero-copy cursor and written to any [`Sink`].
//!
//! Encoders are written once, generic over `Sink`: run against a [`Counter`]
//! they yield the exact length (and validate), run against `BytesMut` they
//! write. That keeps `encoded_len` and `encode` from ever disagreeing.

use bytes::{Buf, Bytes, BytesMut};

use super::error::CodecError;

/// Destination of encoded bytes.
pub(crate) trait Sink {
    fn put_slice(&mut self, data: &[u8]);

    fn put_u8(&mut self, v: u8) {
        self.put_slice(&[v]);
    }
    fn put_u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }
}

impl Sink for BytesMut {
    fn put_slice(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

/// A sink that only counts, used to size length prefixes before writing.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub usize);

impl Sink for Counter {
    fn put_slice(&mut self, data: &[u8]) {
        self.0 += data.len();
    }
}

/// Runs a writer against a [`Counter`] and returns the byte count.
pub(crate) fn count<F>(write: F) -> Result<usize, CodecError>
where
    F: FnOnce(&mut Counter) -> Result<(), CodecError>,
{
    let mut c = Counter(0);
    write(&mut c)?;
    Ok(c.0)
}

/// Whether `s` is acceptable as an MQTT UTF-8 string beyond being valid
/// UTF-8 (which `str` already guarantees, surrogates included): no U+0000.
fn mqtt_str_ok(s: &str) -> bool {
    !s.as_bytes().contains(&0)
}

/// Writes a two-byte length prefix followed by `data`.
pub(crate) fn put_binary<S: Sink>(s: &mut S, data: &[u8]) -> Result<(), CodecError> {
    let len =
        u16::try_from(data.len()).map_err(|_| CodecError::FieldTooLong { len: data.len() })?;
    s.put_u16(len);
    s.put_slice(data);
    Ok(())
}

/// Writes an MQTT UTF-8 string; refuses U+0000 so that whatever we encode decodes.
pub(crate) fn put_str<S: Sink>(s: &mut S, v: &str) -> Result<(), CodecError> {
    if !mqtt_str_ok(v) {
        return Err(CodecError::InvalidUtf8);
    }
    put_binary(s, v.as_bytes())
}

/// A cursor over one packet's body. Reads split off the front of a `Bytes`,
/// so binary fields and payloads share the packet's allocation.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Everything not read yet (e.g. a PUBLISH payload), zero-copy.
    pub fn rest(self) -> Bytes {
        self.buf
    }

    /// Fails unless the body has been consumed exactly.
    pub fn finish(&self, what: &'static str) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::MalformedPacket(what))
        }
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        if self.buf.is_empty() {
            return Err(CodecError::Truncated(what));
        }
        Ok(self.buf.get_u8())
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        if self.buf.len() < 2 {
            return Err(CodecError::Truncated(what));
        }
        Ok(self.buf.get_u16())
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        if self.buf.len() < 4 {
            return Err(CodecError::Truncated(what));
        }
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer inside the body (property lengths, subscription ids).
    pub fn varint(&mut self, what: &'static str) -> Result<usize, CodecError> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8(what)?;
            value |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::MalformedPacket(
            "variable byte integer longer than 4 bytes",
        ))
    }

    /// Splits off the next `n` bytes, zero-copy.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated(what));
        }
        Ok(self.buf.split_to(n))
    }

    /// A sub-reader over the next `n` bytes (e.g. a property block).
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader, CodecError> {
        self.take(n, what).map(Reader::new)
    }

    /// Binary Data: two-byte length then bytes.
    pub fn binary(&mut self, what: &'static str) -> Result<Bytes, CodecError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// UTF-8 String that may contain U+0000; callers decide what that means.
    fn utf8(&mut self, what: &'static str) -> Result<String, CodecError> {
        let raw = self.binary(what)?;
        match std::str::from_utf8(&raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(CodecError::InvalidUtf8),
        }
    }

    /// UTF-8 String per spec 1.5.4: well-formed and without U+0000.
    pub fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let s = self.utf8(what)?;
        if mqtt_str_ok(&s) {
            Ok(s)
        } else {
            Err(CodecError::InvalidUtf8)
        }
    }

    /// A topic name: U+0000 is reported as a bad topic rather than bad UTF-8,
    /// because that is what the session tells a v5 client (reason 0x90).
    pub fn topic(&mut self, what: &'static str) -> Result<String, CodecError> {
        let s = self.utf8(what)?;
        if mqtt_str_ok(&s) {
            Ok(s)
        } else {
            Err(CodecError::InvalidTopic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(b: &[u8]) -> Reader {
        Reader::new(Bytes::copy_from_slice(b))
    }

    #[test]
    fn string_roundtrip_and_counter() {
        let mut out = BytesMut::new();
        put_str(&mut out, "a/b").unwrap();
        assert_eq!(&out[..], b"\x00\x03a/b");
        assert_eq!(count(|c| put_str(c, "a/b")).unwrap(), 5);
        assert_eq!(reader(&out).string("s").unwrap(), "a/b");
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            reader(b"\x00\x02\xC3\x28").string("s"),
            Err(CodecError::InvalidUtf8)
        );
        // UTF-16 surrogate half U+D800 encoded as UTF-8 is ill-formed.
        assert_eq!(
            reader(b"\x00\x03\xED\xA0\x80").string("s"),
            Err(CodecError::InvalidUtf8)
        );
        assert_eq!(
            reader(b"\x00\x02a\x00").string("s"),
            Err(CodecError::InvalidUtf8)
        );
        assert_eq!(
            reader(b"\x00\x02a\x00").topic("s"),
            Err(CodecError::InvalidTopic)
        );
        assert_eq!(
            reader(b"\x00\x05ab").string("s"),
            Err(CodecError::Truncated("s"))
        );
        assert_eq!(
            put_str(&mut BytesMut::new(), "a\0"),
            Err(CodecError::InvalidUtf8)
        );
        let long = "x".repeat(65_536);
        assert_eq!(
            put_str(&mut BytesMut::new(), &long),
            Err(CodecError::FieldTooLong { len: 65_536 })
        );
        assert!(put_str(&mut BytesMut::new(), &long[1..]).is_ok());
    }

    #[test]
    fn integers_and_varint() {
        let mut r = reader(&[0x01, 0x02, 0x00, 0x00, 0x01, 0x00, 0xFF, 0x7F, 0x05]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.u32("b").unwrap(), 0x100);
        assert_eq!(r.varint("c").unwrap(), 16_383);
        assert!(r.finish("x").is_err());
        assert_eq!(r.u8("e").unwrap(), 5);
        assert!(r.finish("x").is_ok());
        assert_eq!(r.u16("d"), Err(CodecError::Truncated("d")));
        let mut r = reader(&[0x80, 0x80, 0x80, 0x80, 0x01]);
        assert!(matches!(r.varint("v"), Err(CodecError::MalformedPacket(_))));
    }

    #[test]
    fn binary_is_zero_copy() {
        let src = Bytes::from_static(b"\x00\x03abcrest");
        let mut r = Reader::new(src.clone());
        let bin = r.binary("b").unwrap();
        assert_eq!(&bin[..], b"abc");
        assert_eq!(bin.as_ptr(), src[2..].as_ptr());
        assert_eq!(&r.rest()[..], b"rest");
    }
}
