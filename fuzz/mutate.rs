//! Mutations: byte-level edits for every target, plus token- and line-level
//! edits for text targets. Several edits are stacked per execution.

use crate::rng::Rng;

/// Byte values that sit on boundaries parsers care about (lengths, flags,
/// continuation bits, sign bits).
const INTERESTING: [u8; 8] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x7E, 0x81, 0x40];
const INTERESTING16: [u16; 6] = [0x0000, 0xFFFF, 0x7FFF, 0x8000, 0x0100, 0x00FF];
/// Numbers for text targets: zero, signs, type limits and one past them.
const NUMBERS: [&str; 14] = [
    "0",
    "1",
    "-1",
    "255",
    "256",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "999999999",
    "1000000000",
    "9223372036854775807",
    "18446744073709551616",
    "1e400",
];

/// How a target's inputs should be mutated.
pub struct Mutator<'a> {
    /// Tokens worth inserting (keywords, magic values).
    pub dict: &'a [&'a [u8]],
    /// Also use token- and line-level edits, and mostly printable random bytes.
    pub text: bool,
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
}

impl Mutator<'_> {
    /// Applies 1 to 8 stacked edits to `data`; `other` is a second input
    /// (from the corpus or the pool) to splice from.
    pub fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
        let n = if rng.one_in(4) { 1 + rng.below(8) } else { 1 };
        for _ in 0..n {
            self.one(rng, data, other);
        }
        data.truncate(self.max_len);
    }

    fn random_byte(&self, rng: &mut Rng) -> u8 {
        if self.text && !rng.one_in(4) {
            // Printable ASCII, space, tab, CR and LF.
            const EXTRA: [u8; 3] = [b'\t', b'\r', b'\n'];
            let i = rng.below(95 + EXTRA.len());
            return if i < 95 {
                0x20 + i as u8
            } else {
                EXTRA[i - 95]
            };
        }
        rng.byte()
    }

    fn random_bytes(&self, rng: &mut Rng, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.random_byte(rng)).collect()
    }

    fn one(&self, rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
        if data.is_empty() {
            let n = rng.len(16);
            let mut fresh = self.random_bytes(rng, n);
            if !self.dict.is_empty() && rng.one_in(2) {
                fresh = self.dict[rng.below(self.dict.len())].to_vec();
            }
            data.extend_from_slice(&fresh);
            return;
        }
        let ops = if self.text { 19 } else { 14 };
        let len = data.len();
        let at = rng.below(len);
        match rng.below(ops) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => data[at] = self.random_byte(rng),
            3 => {
                let delta = 1 + rng.below(16) as u8;
                data[at] = if rng.one_in(2) {
                    data[at].wrapping_add(delta)
                } else {
                    data[at].wrapping_sub(delta)
                };
            }
            4 if len >= 2 => {
                let at = rng.below(len - 1);
                let v = INTERESTING16[rng.below(INTERESTING16.len())].to_be_bytes();
                data[at..at + 2].copy_from_slice(&v);
            }
            5 => {
                let n = rng.len(32);
                let bytes = self.random_bytes(rng, n);
                data.splice(at..at, bytes);
            }
            6 => {
                let n = rng.len(len - at);
                data.drain(at..at + n);
            }
            7 => {
                // Duplicate a range, at a random place (often right after itself).
                let n = rng.len(len - at);
                let chunk = data[at..at + n].to_vec();
                let to = if rng.one_in(2) {
                    at + n
                } else {
                    rng.below(len + 1)
                };
                data.splice(to..to, chunk);
            }
            8 if !other.is_empty() => {
                // Splice: our head, the other input's tail.
                let from = rng.below(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            9 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = rng.len(other.len() - from);
                data.splice(at..at, other[from..from + n].iter().copied());
            }
            10 => data.truncate(at),
            11 => {
                let n = rng.len(32);
                let bytes = self.random_bytes(rng, n);
                data.extend_from_slice(&bytes);
            }
            12 | 13 if !self.dict.is_empty() => {
                let token = self.dict[rng.below(self.dict.len())];
                if rng.one_in(2) {
                    data.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    data.splice(at..end, token.iter().copied());
                }
            }
            14..=16 => self.replace_token(rng, data, other),
            17 | 18 => line_edit(rng, data, other),
            _ => data[at] = rng.byte(),
        }
    }

    /// Replaces one token with a dictionary word, a number, or a token taken
    /// from either input.
    fn replace_token(&self, rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
        let spans = tokens(data);
        if spans.is_empty() {
            return;
        }
        let (s, e) = spans[rng.below(spans.len())];
        let with: Vec<u8> = match rng.below(4) {
            0 if !self.dict.is_empty() => self.dict[rng.below(self.dict.len())].to_vec(),
            1 => NUMBERS[rng.below(NUMBERS.len())].as_bytes().to_vec(),
            2 => {
                let theirs = tokens(other);
                match theirs.get(rng.below(theirs.len().max(1))) {
                    Some(&(a, b)) => other[a..b].to_vec(),
                    None => Vec::new(),
                }
            }
            _ => {
                let (a, b) = spans[rng.below(spans.len())];
                data[a..b].to_vec()
            }
        };
        data.splice(s..e, with);
    }
}

/// Bytes that separate tokens in the text formats fuzzed here (TOML, NATS
/// control lines, JSON, header lines).
fn is_separator(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'='
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b':'
    )
}

/// Spans of maximal non-separator runs.
fn tokens(data: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, &b) in data.iter().enumerate() {
        match (is_separator(b), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, data.len()));
    }
    spans
}

/// Deletes, duplicates or swaps whole lines, or inserts a line of `other`.
fn line_edit(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let mut lines: Vec<Vec<u8>> = data
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if lines.is_empty() {
        return;
    }
    let i = rng.below(lines.len());
    match rng.below(4) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        2 => {
            let j = rng.below(lines.len());
            lines.swap(i, j);
        }
        _ => {
            let theirs: Vec<&[u8]> = other.split_inclusive(|&b| b == b'\n').collect();
            if let Some(line) = theirs.get(rng.below(theirs.len().max(1))) {
                lines.insert(i, line.to_vec());
            }
        }
    }
    *data = lines.concat();
}
