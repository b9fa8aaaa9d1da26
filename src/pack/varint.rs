//! LEB128 varints and zigzag deltas, the integer encodings of `ferry-batch-v1`
//! (docs/batch-format.md).
//!
//! Only the shortest encoding of a value is accepted: every value then has exactly one
//! encoding, so a batch decoded and encoded again gives the same bytes, and a decoder
//! cannot be made to loop over a run of `0x80` padding bytes.

/// The longest LEB128 encoding of a `u64`: 10 groups of 7 bits.
pub const MAX_LEN: usize = 10;

/// Appends the LEB128 encoding of `v`.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes that [`put`] writes for `v`.
pub fn len(v: u64) -> usize {
    // 1 byte for 0..=127, one more for every 7 bits above that.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// Longer than the shortest encoding, or more than 64 bits.
    NonCanonical,
}

/// Reads a varint from the front of `input`: the value and the bytes it took.
pub fn get(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut v = 0u64;
    for (i, &b) in input.iter().enumerate().take(MAX_LEN) {
        let group = u64::from(b & 0x7f);
        // The 10th byte holds bit 63 only.
        if i == MAX_LEN - 1 && b > 1 {
            return Err(VarintError::NonCanonical);
        }
        v |= group << (7 * i);
        if b & 0x80 == 0 {
            // A last byte of 0 after the first adds nothing: a padded encoding.
            if b == 0 && i > 0 {
                return Err(VarintError::NonCanonical);
            }
            return Ok((v, i + 1));
        }
    }
    if input.len() >= MAX_LEN {
        Err(VarintError::NonCanonical)
    } else {
        Err(VarintError::Truncated)
    }
}

/// `v - prev` as an unsigned zigzag value: small either way when `v` is near `prev`.
/// Wrapping, so every pair of `u64`s has a delta and [`undelta`] inverts it exactly.
pub fn delta(prev: u64, v: u64) -> u64 {
    let d = v.wrapping_sub(prev) as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

/// The value whose [`delta`] from `prev` is `z`.
pub fn undelta(prev: u64, z: u64) -> u64 {
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    prev.wrapping_add(d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        for (v, bytes) in [
            (0u64, &[0x00][..]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(len(v), bytes.len(), "{v}");
            assert_eq!(get(bytes), Ok((v, bytes.len())), "{v}");
        }
    }

    #[test]
    fn malformed_varints_are_refused() {
        assert_eq!(get(&[]), Err(VarintError::Truncated));
        assert_eq!(get(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(get(&[0xff; 9]), Err(VarintError::Truncated));
        // Padded: 0 and 1 written in two bytes.
        assert_eq!(get(&[0x80, 0x00]), Err(VarintError::NonCanonical));
        assert_eq!(get(&[0x81, 0x00]), Err(VarintError::NonCanonical));
        // 65 bits and more.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(get(&over), Err(VarintError::NonCanonical));
        assert_eq!(get(&[0xff; 11]), Err(VarintError::NonCanonical));
    }

    #[test]
    fn zigzag_deltas() {
        assert_eq!(delta(10, 10), 0);
        assert_eq!(delta(10, 9), 1);
        assert_eq!(delta(10, 11), 2);
        assert_eq!(delta(0, u64::MAX), 1);
        assert_eq!(undelta(0, 1), u64::MAX);
    }

    proptest! {
        #[test]
        fn round_trips(v: u64, prev: u64, tail: Vec<u8>) {
            let mut out = Vec::new();
            put(&mut out, v);
            prop_assert_eq!(out.len(), len(v));
            out.extend_from_slice(&tail);
            prop_assert_eq!(get(&out), Ok((v, len(v))));
            prop_assert_eq!(undelta(prev, delta(prev, v)), v);
        }
    }
}
