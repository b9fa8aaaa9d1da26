//! The password file named by `[auth] password_file`: one `user:hash` per line, where the
//! hash is an argon2 PHC string (`$argon2id$v=19$m=7168,t=5,p=1$<salt>$<hash>`). Lines
//! whose first non-blank character is `#`, and blank lines, are comments; they survive
//! [`PasswordFile::set`] / [`PasswordFile::remove`] / [`PasswordFile::save`].
//!
//! New hashes are argon2id with m = 7 MiB, t = 5, p = 1: the smallest-memory setting of
//! the OWASP Password Storage Cheat Sheet, so that a Pi Zero (512 MB, one ARM11 core)
//! verifies without a large allocation. Verification accepts any argon2 variant, version
//! and parameters stored in the hash (a file made by mosquitto-style tools or another
//! argon2 implementation works), up to [`MAX_M_COST_KIB`] and [`MAX_T_COST`]: every
//! verification allocates m and costs m * t, so a file asking for more is refused when it
//! is loaded rather than stalling the gateway at the first CONNECT.
//!
//! Errors never contain a hash or a password: a line is named by `path:line`, a user by
//! its (escaped) name.

use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Memory cost of new hashes, in KiB (7 MiB).
pub const M_COST_KIB: u32 = 7 * 1024;
/// Passes over memory of new hashes.
pub const T_COST: u32 = 5;
/// Lanes of new hashes.
pub const P_COST: u32 = 1;
/// The largest memory cost a loaded hash may ask for, in KiB (64 MiB).
pub const MAX_M_COST_KIB: u32 = 64 * 1024;
/// The largest number of passes a loaded hash may ask for.
pub const MAX_T_COST: u32 = 10;
/// Mode of a saved password file: owner read/write, group (the broker's) read.
pub const FILE_MODE: u32 = 0o640;
/// Bytes of OS randomness in the salt of a new hash (the PHC recommendation).
const SALT_LEN: usize = 16;
/// Shortest salt argon2 accepts, in bytes (RFC 9106 allows 8).
const MIN_SALT_LEN: usize = 8;

/// What an unknown user is verified against, so that "no such user" costs the same
/// argon2 work as "wrong password" and timing does not tell which users exist. Made by
/// the argon2 reference implementation with the parameters of new hashes and a random,
/// discarded password (a unit test checks the parameters stay in step).
const DUMMY_HASH: &str = "$argon2id$v=19$m=7168,t=5,p=1$ZmVycnktdW5rbm93bi11c2Vy$SKpUFA8jUJ8NRcPlp8WkqD4fXn1GKaF/KVsfC4Lc64Y";

/// The outcome of [`PasswordFile::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The user exists and the password matches.
    Ok,
    /// No such user (after the same work as a wrong password).
    UnknownUser,
    /// The user exists and the password does not match.
    BadPassword,
}

/// Why a user name is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserProblem {
    /// The name is empty.
    Empty,
    /// The name contains whitespace (it would not survive editing the file by hand).
    Whitespace,
    /// The name contains a control character.
    Control,
    /// The name contains `:`, the separator.
    Colon,
    /// The name starts with `#`, which makes the line a comment.
    LeadingHash,
}

impl fmt::Display for UserProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UserProblem::Empty => "empty user name",
            UserProblem::Whitespace => "user name contains whitespace",
            UserProblem::Control => "user name contains a control character",
            UserProblem::Colon => "user name contains ':'",
            UserProblem::LeadingHash => "user name starts with '#' (the line would be a comment)",
        })
    }
}

/// Why a stored hash is not accepted. None of these carries the hash itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashProblem {
    /// Not a PHC string at all.
    NotPhc,
    /// A PHC string of another algorithm (its identifier, e.g. `pbkdf2-sha256`).
    NotArgon2 { algorithm: String },
    /// An argon2 version other than 16 (0x10) or 19 (0x13).
    UnsupportedVersion { version: u32 },
    /// Parameters argon2 rejects (the library's reason).
    BadParams { reason: String },
    /// Parameters above the sanity cap.
    TooCostly { m_kib: u32, t: u32 },
    /// No salt, or a salt argon2 cannot use.
    BadSalt,
    /// No hash output after the salt.
    MissingHash,
}

impl fmt::Display for HashProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashProblem::NotPhc => {
                f.write_str("is not a PHC string ($argon2id$v=19$m=..,t=..,p=..$salt$hash)")
            }
            HashProblem::NotArgon2 { algorithm } => {
                write!(
                    f,
                    "uses algorithm '{algorithm}', not argon2i, argon2d or argon2id"
                )
            }
            HashProblem::UnsupportedVersion { version } => {
                write!(f, "has argon2 version {version}, not 16 or 19")
            }
            HashProblem::BadParams { reason } => write!(f, "has invalid parameters: {reason}"),
            HashProblem::TooCostly { m_kib, t } => write!(
                f,
                "asks for m={m_kib} KiB, t={t}: above the limit of m={MAX_M_COST_KIB} KiB, \
                 t={MAX_T_COST} (every login would allocate m)"
            ),
            HashProblem::BadSalt => write!(
                f,
                "has no salt, or one shorter than {MIN_SALT_LEN} bytes or not in B64"
            ),
            HashProblem::MissingHash => f.write_str("has no hash output after the salt"),
        }
    }
}

/// Everything that can go wrong with a password file. `origin:line` names the line for
/// problems of content; nothing here carries a hash or a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswdError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// Saving failed at `step`. Before the step "fsync directory" the previous file, if
    /// any, is unchanged; at that step the new file is in place but maybe not durable.
    #[error("cannot save {} ({step}): {source}", path.display())]
    Write {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    /// The bytes of the line are not UTF-8.
    #[error("{origin}:{line}: not valid UTF-8")]
    NotUtf8 { origin: String, line: usize },
    /// A non-comment line without `:`.
    #[error("{origin}:{line}: missing ':' between user name and hash")]
    MissingColon { origin: String, line: usize },
    /// The user name of the line is not acceptable.
    #[error("{origin}:{line}: {problem}")]
    BadUser {
        origin: String,
        line: usize,
        problem: UserProblem,
    },
    /// The hash of the line is not acceptable.
    #[error("{origin}:{line}: the hash of user {user:?} {problem}")]
    BadHash {
        origin: String,
        line: usize,
        user: String,
        problem: HashProblem,
    },
    /// The user already appeared on line `first`.
    #[error("{origin}:{line}: duplicate user {user:?} (first on line {first})")]
    DuplicateUser {
        origin: String,
        line: usize,
        user: String,
        first: usize,
    },
    /// A user name given to [`PasswordFile::set`] is not acceptable.
    #[error("invalid user name: {problem}")]
    InvalidUser { problem: UserProblem },
    /// An empty password was given to be hashed.
    #[error("empty password")]
    EmptyPassword,
    /// The OS gave no random bytes for a salt.
    #[error("cannot get random bytes for a salt: {source}")]
    Random { source: io::Error },
    /// argon2 failed to hash (not expected with the fixed parameters).
    #[error("hashing failed: {0}")]
    Hashing(password_hash::Error),
}

/// One line of the file, kept so that comments and order survive a rewrite.
#[derive(Debug, Clone)]
enum Line {
    /// A comment or blank line, verbatim (without its line ending).
    Other(String),
    /// A user and its validated PHC hash.
    Entry { user: String, hash: String },
}

/// A parsed password file: every hash in it was checked when it was loaded.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    lines: Vec<Line>,
    /// user -> index into `lines`.
    index: HashMap<String, usize>,
}

impl PasswordFile {
    /// An empty file: no users.
    pub fn new() -> PasswordFile {
        PasswordFile::default()
    }

    /// Reads and parses `path`. A missing file is a [`PasswdError::Read`] whose source
    /// has kind `NotFound`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswdError> {
        let bytes = fs::read(path).map_err(|source| PasswdError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let text = std::str::from_utf8(&bytes).map_err(|e| PasswdError::NotUtf8 {
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            origin: origin.clone(),
        })?;
        PasswordFile::parse(text, &origin)
    }

    /// Parses the text of a password file; `origin` names it in errors. Stops at the
    /// first malformed line. Lines may end in `\n` or `\r\n`; trailing blanks after a
    /// hash and a leading byte-order mark are ignored.
    pub fn parse(text: &str, origin: &str) -> Result<PasswordFile, PasswdError> {
        let mut file = PasswordFile::new();
        // A byte-order mark (some editors write one) would otherwise join the first user
        // name, which would then never match.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut pieces = text.split('\n').peekable();
        let mut number = 0;
        while let Some(raw) = pieces.next() {
            number += 1;
            if raw.is_empty() && pieces.peek().is_none() {
                break; // after the final newline
            }
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let content = line.trim();
            if content.is_empty() || content.starts_with('#') {
                file.lines.push(Line::Other(line.to_string()));
                continue;
            }
            // The hash never contains ':', so the last one separates: a user name with
            // ':' is then reported as such instead of as a broken hash.
            let Some((user, hash)) = line.rsplit_once(':') else {
                return Err(PasswdError::MissingColon {
                    origin: origin.into(),
                    line: number,
                });
            };
            check_user(user).map_err(|problem| PasswdError::BadUser {
                origin: origin.into(),
                line: number,
                problem,
            })?;
            let hash = hash.trim_end();
            check_hash(hash).map_err(|problem| PasswdError::BadHash {
                origin: origin.into(),
                line: number,
                user: user.into(),
                problem,
            })?;
            if let Some(&first) = file.index.get(user) {
                return Err(PasswdError::DuplicateUser {
                    origin: origin.into(),
                    line: number,
                    user: user.into(),
                    first: first + 1, // while parsing, lines[i] is line i + 1
                });
            }
            file.index.insert(user.to_string(), file.lines.len());
            file.lines.push(Line::Entry {
                user: user.to_string(),
                hash: hash.to_string(),
            });
        }
        Ok(file)
    }

    /// Checks `password` for `user`. CPU-heavy (one argon2 run, ~7 MiB allocated with
    /// the default parameters): call it on a blocking thread. An unknown user costs the
    /// same as a wrong password. The comparison is constant-time (argon2's
    /// `verify_password`).
    pub fn verify(&self, user: &str, password: &[u8]) -> Verified {
        match self.hash_of(user) {
            Some(hash) if matches(hash, password) => Verified::Ok,
            Some(_) => Verified::BadPassword,
            None => {
                std::hint::black_box(matches(DUMMY_HASH, password));
                Verified::UnknownUser
            }
        }
    }

    /// The users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry { user, .. } => Some(user.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there are no users.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// Adds `user`, or changes its password in place, hashing with argon2id and the
    /// parameters of new hashes ([`M_COST_KIB`], [`T_COST`], [`P_COST`]).
    pub fn set(&mut self, user: &str, password: &[u8]) -> Result<(), PasswdError> {
        check_user(user).map_err(|problem| PasswdError::InvalidUser { problem })?;
        let hash = hash_password(password)?;
        let entry = Line::Entry {
            user: user.to_string(),
            hash,
        };
        match self.index.get(user) {
            Some(&i) => self.lines[i] = entry,
            None => {
                self.index.insert(user.to_string(), self.lines.len());
                self.lines.push(entry);
            }
        }
        Ok(())
    }

    /// Removes `user`; false if it had no entry.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.lines.remove(i);
        for at in self.index.values_mut() {
            if *at > i {
                *at -= 1;
            }
        }
        true
    }

    /// The file's text: comments as they were, one `user:hash` line per user.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(text) => out.push_str(text),
                Line::Entry { user, hash } => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(hash);
                }
            }
            out.push('\n');
        }
        out
    }

    /// Writes the file atomically: a temporary file in the same directory, created with
    /// mode 0640, written and fsynced, renamed over `path`, then the directory fsynced. A
    /// crash leaves either the old or the new file, never a mix. If `path` existed, the
    /// new file gets its owner and group (best effort: only root may give a file away)
    /// and mode 0640. If `path` is a symlink, its target is replaced.
    pub fn save(&self, path: &Path) -> Result<(), PasswdError> {
        super::passwd_file::write_atomic(path, self.to_text().as_bytes())
    }

    /// The PHC hash of `user`'s password: a reload keeps a client whose entry is the
    /// same, and ends one whose password was changed.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        match self.lines.get(*self.index.get(user)?)? {
            Line::Entry { hash, .. } => Some(hash),
            Line::Other(_) => None,
        }
    }
}

/// Hashes `password` as a PHC string: argon2id, version 19, m = [`M_COST_KIB`],
/// t = [`T_COST`], p = [`P_COST`], a 16-byte salt from the OS, 32-byte output.
pub fn hash_password(password: &[u8]) -> Result<String, PasswdError> {
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    let mut salt = [0u8; SALT_LEN];
    getrandom::getrandom(&mut salt).map_err(|e| PasswdError::Random {
        source: e
            .raw_os_error()
            .map(io::Error::from_raw_os_error)
            .unwrap_or_else(|| io::Error::other(e.to_string())),
    })?;
    let salt = SaltString::encode_b64(&salt).map_err(PasswdError::Hashing)?;
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| PasswdError::Hashing(e.into()))?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .map_err(PasswdError::Hashing)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`, with the algorithm, version and
/// parameters `phc` names. A hash without `v=` is version 16, as the argon2 reference
/// implementation reads it (RustCrypto would assume 19 and never match).
fn matches(phc: &str, password: &[u8]) -> bool {
    let Ok(mut hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.version.is_none() {
        hash.version = Some(Version::V0x10.into());
    }
    Argon2::default().verify_password(password, &hash).is_ok()
}

/// Checks a user name: not empty, no whitespace, control character or `:`, and not
/// starting with `#`.
pub fn check_user(user: &str) -> Result<(), UserProblem> {
    if user.is_empty() {
        return Err(UserProblem::Empty);
    }
    for c in user.chars() {
        if c == ':' {
            return Err(UserProblem::Colon);
        }
        if c.is_control() {
            return Err(UserProblem::Control);
        }
        if c.is_whitespace() {
            return Err(UserProblem::Whitespace);
        }
    }
    if user.starts_with('#') {
        return Err(UserProblem::LeadingHash);
    }
    Ok(())
}

/// Everything about a stored hash that can be checked without running argon2, so that
/// [`matches`] cannot fail for any other reason than a wrong password.
fn check_hash(phc: &str) -> Result<(), HashProblem> {
    let hash = PasswordHash::new(phc).map_err(|_| HashProblem::NotPhc)?;
    Algorithm::try_from(hash.algorithm).map_err(|_| HashProblem::NotArgon2 {
        algorithm: hash.algorithm.to_string(),
    })?;
    if let Some(version) = hash.version {
        Version::try_from(version).map_err(|_| HashProblem::UnsupportedVersion { version })?;
    }
    let params = Params::try_from(&hash).map_err(|e| HashProblem::BadParams {
        reason: e.to_string(),
    })?;
    if params.m_cost() > MAX_M_COST_KIB || params.t_cost() > MAX_T_COST {
        return Err(HashProblem::TooCostly {
            m_kib: params.m_cost(),
            t: params.t_cost(),
        });
    }
    let salt = hash.salt.ok_or(HashProblem::BadSalt)?;
    let mut buf = [0u8; 64];
    let bytes = salt
        .decode_b64(&mut buf)
        .map_err(|_| HashProblem::BadSalt)?;
    if bytes.len() < MIN_SALT_LEN {
        return Err(HashProblem::BadSalt);
    }
    if hash.hash.is_none() {
        return Err(HashProblem::MissingHash);
    }
    Ok(())
}

#[cfg(test)]
#[path = "passwd_tests.rs"]
mod tests;
