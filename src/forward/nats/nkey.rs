//! NATS nkey authentication for the upstream link: the user's seed (`SU...`) from
//! `creds_file`, the public key (`U...`) it stands for, and the Ed25519 signature of the
//! server's INFO nonce that CONNECT carries. A `.creds` file of an operator-mode server
//! (`nsc generate creds`) also holds the user's JWT, which CONNECT carries as it is: the
//! server checks it against the account, ferry only passes it on. The signing is ring's (already in the binary
//! for TLS); the encodings (RFC 4648 base32 without padding, CRC-16/XMODEM, base64url
//! without padding) are a few lines each here rather than three crates.

use ring::signature::{Ed25519KeyPair, KeyPair};

/// The nkey prefix of a seed (`S`), and of a user key (`U`), as the nkeys spec encodes them.
const PREFIX_SEED: u8 = 18 << 3;
const PREFIX_USER: u8 = 20 << 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NkeyError {
    #[error("creds_file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("creds_file {0}: the NATS USER JWT block holds no JWT")]
    Jwt(String),
    #[error("creds_file {path}: not a user nkey seed ({reason})")]
    Seed { path: String, reason: &'static str },
}

/// A user's nkey: signs nonces, names its public key; with the user's JWT when the
/// credentials came from a `.creds` file.
pub struct UserKey {
    pair: Ed25519KeyPair,
    pub jwt: Option<String>,
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        write!(f, "UserKey({})", self.public())
    }
}

impl UserKey {
    /// Reads the seed from `path` (read at every connection attempt, so a rotated key
    /// needs no restart).
    pub fn from_file(path: &std::path::Path) -> Result<UserKey, NkeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| NkeyError::File {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        // The first line after `-----BEGIN NATS USER JWT-----` (a JWT is one line).
        let jwt = match text.split_once("BEGIN NATS USER JWT") {
            Some((_, rest)) => Some(
                rest.lines()
                    .skip(1)
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .filter(|l| !l.starts_with('-'))
                    .ok_or_else(|| NkeyError::Jwt(shown.clone()))?
                    .to_string(),
            ),
            None => None,
        };
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .ok_or(NkeyError::Seed {
                path: shown.clone(),
                reason: "no line starting with SU",
            })?;
        let mut key = UserKey::from_seed(seed).map_err(|reason| NkeyError::Seed {
            path: shown,
            reason,
        })?;
        key.jwt = jwt;
        Ok(key)
    }

    /// Decodes `SU...`: base32 of two prefix bytes, the 32-byte Ed25519 seed and a CRC-16.
    pub fn from_seed(seed: &str) -> Result<UserKey, &'static str> {
        let raw = base32_decode(seed).ok_or("not base32")?;
        let [b0, b1, body @ ..] = raw.as_slice() else {
            return Err("too short");
        };
        if raw.len() != 36 || !crc_ok(&raw) {
            return Err("bad length or checksum");
        }
        if b0 & 0xF8 != PREFIX_SEED {
            return Err("not a seed");
        }
        if ((b0 & 0x07) << 5) | ((b1 & 0xF8) >> 3) != PREFIX_USER {
            return Err("a seed, but not a user's");
        }
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&body[..32]).map_err(|_| "not an Ed25519 seed")?;
        Ok(UserKey { pair, jwt: None })
    }

    /// The public key, `U...`, as nats-server's `users = [{ nkey: ... }]` names it.
    pub fn public(&self) -> String {
        let mut raw = Vec::with_capacity(35);
        raw.push(PREFIX_USER);
        raw.extend_from_slice(self.pair.public_key().as_ref());
        let crc = crc16(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        base32_encode(&raw)
    }

    /// The `sig` of CONNECT: the nonce signed, base64url without padding.
    pub fn sign(&self, nonce: &str) -> String {
        base64url(self.pair.sign(nonce.as_bytes()).as_ref())
    }
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B32.iter().position(|b| *b == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn base32_encode(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in raw {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base64url(raw: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(raw.len() * 4 / 3 + 2);
    for chunk in raw.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// CRC-16/XMODEM, which nkeys append little-endian.
fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for b in data {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn crc_ok(raw: &[u8]) -> bool {
    let Some((body, tail)) = raw.split_last_chunk::<2>() else {
        return false;
    };
    crc16(body) == u16::from_le_bytes(*tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_their_check_values() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").as_deref(), Some(&b"foobar"[..]));
    }

    /// The seed of 32 bytes of 7, the public key and the signature of "nonce" that the
    /// nkeys crate (the reference implementation async-nats uses) gives for it.
    #[test]
    fn a_user_seed_gives_its_public_key_and_signature() {
        let seed = "SUAAOBYHA4DQOBYHA4DQOBYHA4DQOBYHA4DQOBYHA4DQOBYHA4DQOBZ5FE";
        let key = UserKey::from_seed(seed).unwrap();
        assert_eq!(
            key.public(),
            "UDVEU3DD4KOFECV66VIHWEZOYX4ZKR3WV27L464SIIPOU2IUI3JCYSJF"
        );
        assert_eq!(
            key.sign("nonce"),
            "tGzA0mHx0G153n88JvBTKOaRWmSDzbp7vrXQmLDFIewezJGpBo2wfTvbDxtf5lcFAxjK3_cMonLQGCqG5ihzBA"
        );
        let mut bad = seed.to_string();
        bad.replace_range(10..11, if &seed[10..11] == "A" { "B" } else { "A" });
        assert!(UserKey::from_seed(&bad).is_err());
        assert!(
            format!("{key:?}").starts_with("UserKey(U"),
            "never the seed"
        );
    }

    /// A `.creds` file as nsc writes it: the JWT is taken as it is, the seed signs; a
    /// JWT block with nothing in it is an error, not a plain nkey login.
    #[test]
    fn a_creds_file_gives_its_jwt_and_seed() {
        let dir = tempfile::tempdir().unwrap();
        let seed = "SUAAOBYHA4DQOBYHA4DQOBYHA4DQOBYHA4DQOBYHA4DQOBYHA4DQOBZ5FE";
        let creds = dir.path().join("u.creds");
        std::fs::write(
            &creds,
            format!(
                "-----BEGIN NATS USER JWT-----\neyJ0.eyJ1.c2ln\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        )
        .unwrap();
        let key = UserKey::from_file(&creds).unwrap();
        assert_eq!(key.jwt.as_deref(), Some("eyJ0.eyJ1.c2ln"));
        assert!(key.public().starts_with("UDVEU3DD"));
        let plain = dir.path().join("u.nk");
        std::fs::write(&plain, format!("{seed}\n")).unwrap();
        assert_eq!(UserKey::from_file(&plain).unwrap().jwt, None);
        let empty = dir.path().join("e.creds");
        std::fs::write(
            &empty,
            format!("-----BEGIN NATS USER JWT-----\n------END NATS USER JWT------\n{seed}\n"),
        )
        .unwrap();
        assert!(matches!(UserKey::from_file(&empty), Err(NkeyError::Jwt(_))));
    }
}
