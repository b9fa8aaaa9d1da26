//! CRC-32C (Castagnoli), the checksum every stored record carries: it catches the bit
//! flips and torn pages of SD cards that a decoder would otherwise accept (a flipped byte
//! in a payload still decodes). No dependency: the CPU's own CRC-32C instruction where it
//! has one (x86_64 with SSE4.2, AArch64 with the CRC extension: the Pi 3 and later), eight
//! bytes at a time; a byte-at-a-time table elsewhere (the Pi Zero's ARMv6). Every record
//! is checksummed when stored and when read: the instruction takes it from about seven
//! instructions a byte to about one (callgrind, `cargo bench --bench compare -- only=callgrind`).

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The CRC-32C of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2, which `hw` needs (checked just above).
        return !unsafe { hw(!0, bytes) };
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("crc") {
        // SAFETY: the CPU has the CRC extension, which `hw` needs (checked just above).
        return !unsafe { hw(!0, bytes) };
    }
    !table(!0, bytes)
}

/// Byte at a time from the table: any CPU.
fn table(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Eight bytes at a time with the SSE4.2 CRC-32C instruction, then the tail byte by byte.
/// See the AArch64 one for the unsafe blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[allow(unused_unsafe)]
unsafe fn hw(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut crc = u64::from(crc);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        // SAFETY: `hw` runs only where the CPU has SSE4.2 (checked by the caller).
        crc = unsafe { _mm_crc32_u64(crc, u64::from_le_bytes(b)) };
    }
    // Truncation is the point: the CRC is the low 32 bits.
    let mut crc = crc as u32;
    for &b in words.remainder() {
        // SAFETY: as above.
        crc = unsafe { _mm_crc32_u8(crc, b) };
    }
    crc
}

/// Eight bytes at a time with the AArch64 CRC-32C instruction, then the tail byte by byte.
/// The intrinsics are unsafe functions for Rust 1.85 (the MSRV) and safe inside a
/// `target_feature` function for later ones: the block serves the first.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "crc")]
#[allow(unused_unsafe)]
unsafe fn hw(mut crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::aarch64::{__crc32cb, __crc32cd};
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        // SAFETY: `hw` runs only where the CPU has the CRC extension (checked by caller).
        crc = unsafe { __crc32cd(crc, u64::from_le_bytes(b)) };
    }
    for &b in words.remainder() {
        // SAFETY: as above.
        crc = unsafe { __crc32cb(crc, b) };
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check value of CRC-32C (RFC 3720, appendix B.4) and its test vectors.
    #[test]
    fn known_values() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(checksum(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(checksum(&ascending), 0x46DD_794E);
        assert_eq!(checksum(b""), 0);
    }

    /// The instruction and the table agree on every length and alignment.
    #[test]
    fn the_instruction_and_the_table_agree() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            for end in start..data.len() {
                let slice = &data[start..end];
                assert_eq!(checksum(slice), !table(!0, slice), "{start}..{end}");
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        let good = checksum(&data);
        for byte in 0..data.len() {
            for bit in 0..8 {
                let mut bad = data.clone();
                bad[byte] ^= 1 << bit;
                assert_ne!(checksum(&bad), good, "byte {byte} bit {bit}");
            }
        }
    }
}
