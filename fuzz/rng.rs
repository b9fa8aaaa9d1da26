//! A tiny xorshift64* generator and a hash to seed it from an input, so the
//! harness needs no random-number crate and every run can be replayed.

pub struct Rng(u64);

impl Rng {
    /// Any seed is fine (0 too): it is scrambled by splitmix64 first.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// A length in `1..=max`, mostly small: fuzzing wants many small edits
    /// and the occasional large one.
    pub fn len(&mut self, max: usize) -> usize {
        let cap = if self.one_in(8) { max } else { max.min(8) };
        1 + self.below(cap.max(1))
    }
}

/// FNV-1a: a stable hash, so decisions a target derives from its input are
/// the same on every run (a replayed artifact takes the same path).
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}
