//! A checksum frame for the store's small rows (session records, subscription rows,
//! queued deliveries, dead letters, quarantined entries): `SEALED`, the CRC-32C of the
//! rest (little-endian), then the row as its owner encoded it.
//!
//! Why a frame rather than a new format byte in each row: the rows' own formats belong to
//! their owners (the MQTT module writes session records 1 to 3), and the store must check
//! every row the same way without knowing them. `SEALED` is a byte no row format ever
//! started with, so a row written before checksums (its first byte is its format, 1 to 3)
//! still opens, unchecked, exactly as it was written.

use super::RecordError;

/// First byte of a sealed row; row formats are small numbers and never reach it.
pub const SEALED: u8 = 0xC5;

const HEADER: usize = 5;

/// `row` framed with its checksum.
pub fn seal(row: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + row.len());
    out.push(SEALED);
    out.extend_from_slice(&super::crc32c::checksum(row).to_le_bytes());
    out.extend_from_slice(row);
    out
}

/// The row inside `bytes` once its checksum matched; a row written before checksums is
/// returned as it is.
pub fn open(bytes: &[u8]) -> Result<&[u8], RecordError> {
    match bytes.first() {
        None => Err(RecordError::Empty),
        Some(&SEALED) => {
            if bytes.len() < HEADER {
                return Err(RecordError::Corrupt(
                    postcard::Error::DeserializeUnexpectedEnd,
                ));
            }
            let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            let row = &bytes[HEADER..];
            let computed = super::crc32c::checksum(row);
            if stored != computed {
                return Err(RecordError::Checksum { stored, computed });
            }
            Ok(row)
        }
        Some(_) => Ok(bytes),
    }
}

/// `value` as a sealed row of the store's own: format byte, postcard, under a seal.
pub fn encode<T: serde::Serialize>(format: u8, value: &T) -> Result<Vec<u8>, RecordError> {
    Ok(seal(&postcard::to_extend(value, vec![format])?))
}

/// A row written by [`encode`] with `format`, once its checksum matched.
pub fn decode<'a, T: serde::Deserialize<'a>>(
    format: u8,
    bytes: &'a [u8],
) -> Result<T, RecordError> {
    match open(bytes)?.split_first() {
        Some((&f, body)) if f == format => Ok(postcard::from_bytes(body)?),
        Some((&other, _)) => Err(RecordError::UnknownFormat(other)),
        None => Err(RecordError::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_rows_open_and_older_rows_pass_through() {
        let row = [3u8, 1, 2, 3];
        let sealed = seal(&row);
        assert_eq!(sealed[0], SEALED);
        assert_eq!(sealed.len(), row.len() + HEADER);
        assert_eq!(open(&sealed).unwrap(), &row);
        // Written before checksums: its first byte is its own format.
        assert_eq!(open(&row).unwrap(), &row);
        assert!(matches!(open(&[]), Err(RecordError::Empty)));
        assert!(matches!(open(&[SEALED, 1]), Err(RecordError::Corrupt(_))));
    }

    #[test]
    fn every_flipped_bit_of_a_sealed_row_is_caught() {
        let sealed = seal(b"\x03session record body");
        for byte in 1..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                assert!(open(&bad).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    /// The frame's bytes are part of the store format: they must not change.
    #[test]
    fn the_frame_is_stable() {
        assert_eq!(
            seal(b"\x01ab"),
            [0xC5, 0xE0, 0x6F, 0xE6, 0xD6, 0x01, b'a', b'b'].to_vec(),
            "{:02x?}",
            seal(b"\x01ab")
        );
    }
}
