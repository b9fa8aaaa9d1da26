//! TEMPORARY stub: replaced by the real password file module (branch passwd).
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    Ok,
    UnknownUser,
    BadPassword,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswdError(String);

#[derive(Debug, Default)]
pub struct PasswordFile {
    users: Vec<(String, String)>,
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, PasswdError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PasswdError(format!("{}: {e}", path.display())))?;
        let mut users = Vec::new();
        for line in text.lines() {
            if let Some((u, h)) = line.split_once(':') {
                users.push((u.to_string(), h.to_string()));
            }
        }
        Ok(PasswordFile { users })
    }
    pub fn verify(&self, user: &str, password: &[u8]) -> Verified {
        match self.users.iter().find(|(u, _)| u == user) {
            Some((_, h)) if h.as_bytes() == password => Verified::Ok,
            Some(_) => Verified::BadPassword,
            None => Verified::UnknownUser,
        }
    }
    pub fn len(&self) -> usize {
        self.users.len()
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
pub fn hash_password(password: &[u8]) -> Result<String, PasswdError> {
    Ok(String::from_utf8_lossy(password).into_owned())
}
