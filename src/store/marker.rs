//! The marker beside the store file (`ferry.redb.marker`): it says that `ferry.redb` in
//! this directory once held a store. redb creates a new, empty database where it finds no
//! file or a 0-byte one, so without the marker a store file lost to a bad restore, a
//! wrong `rm` or a file system repair would be replaced by an empty store without a word,
//! and every event it held forgotten. With it, ferry refuses to start and says so
//! ([`StoreError::Lost`]).
//!
//! The marker is written once the store has been created (its tables committed) and is
//! fsynced with its directory, which also makes the store file's own directory entry
//! durable. A 0-byte store file with no marker is taken as new: ferry killed during its
//! very first start leaves exactly that, and nothing was ever acknowledged from it.

use super::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The marker's name, beside `ferry.redb`.
pub const MARKER_FILE: &str = "ferry.redb.marker";

const CONTENT: &str = "\
This directory holds a ferry store (ferry.redb). While this file exists, ferry refuses to
start when ferry.redb is missing or empty (exit status 3) instead of starting a new,
empty store in its place. Restore ferry.redb, or remove this file to start empty.
";

pub struct Marker {
    path: PathBuf,
}

/// What was found at open.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A store file with contents: open it (marked or not: stores of older ferry
    /// versions have no marker yet).
    Store,
    /// No store file, or a 0-byte one, and no marker: a new store.
    New,
}

impl Marker {
    pub fn new(dir: &Path) -> Marker {
        Marker {
            path: dir.join(MARKER_FILE),
        }
    }

    /// Checks `file` against the marker: [`StoreError::Lost`] when the marker is there
    /// but the file is missing or empty.
    pub fn check(&self, file: &Path) -> Result<Found, StoreError> {
        let len = match fs::metadata(file) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            // Unreadable metadata: let the open report it.
            Err(_) => return Ok(Found::Store),
        };
        if len.is_some_and(|l| l > 0) {
            return Ok(Found::Store);
        }
        if self.path.exists() {
            return Err(StoreError::Lost {
                path: file.display().to_string(),
                marker: self.path.display().to_string(),
                empty: len.is_some(),
            });
        }
        Ok(Found::New)
    }

    /// Writes the marker if it is not there yet: the file, then its directory, fsynced.
    pub fn write(&self) -> std::io::Result<bool> {
        if self.path.exists() {
            return Ok(false);
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)?;
        f.write_all(CONTENT.as_bytes())?;
        f.sync_all()?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_new_until_marked_then_lost() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ferry.redb");
        let marker = Marker::new(dir.path());
        assert_eq!(marker.check(&file).unwrap(), Found::New);
        fs::write(&file, b"").unwrap();
        assert_eq!(marker.check(&file).unwrap(), Found::New);
        fs::write(&file, b"x").unwrap();
        assert_eq!(marker.check(&file).unwrap(), Found::Store);
        assert!(marker.write().unwrap());
        assert!(!marker.write().unwrap(), "written once");
        assert_eq!(marker.check(&file).unwrap(), Found::Store);
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            marker.check(&file),
            Err(StoreError::Lost { empty: true, .. })
        ));
        fs::remove_file(&file).unwrap();
        assert!(matches!(
            marker.check(&file),
            Err(StoreError::Lost { empty: false, .. })
        ));
    }
}
