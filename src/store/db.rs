//! The redb database behind a slot that can be emptied and refilled: after an I/O error
//! (a full disk, a failing SD card) redb refuses every further operation until the
//! database is closed and opened again, which also runs its recovery.

use super::{StoreError, redb_err};
use redb::{Database, StorageBackend};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Makes a fresh storage backend (tests inject faults this way).
pub type BackendFactory = Box<dyn Fn() -> Box<dyn StorageBackend> + Send + Sync>;

/// Where the database lives.
pub enum Location {
    File(PathBuf),
    Backend(BackendFactory),
}

pub struct DbSlot {
    location: Location,
    cache_size: usize,
    cell: RwLock<Option<Arc<Database>>>,
}

impl DbSlot {
    pub fn open(location: Location, cache_size: usize) -> Result<DbSlot, StoreError> {
        let db = open_db(&location, cache_size)?;
        Ok(DbSlot {
            location,
            cache_size,
            cell: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// The open database, or `Unavailable` while it is being reopened.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.cell
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Unavailable)
    }

    /// False while the database is being reopened (or could not be).
    pub fn is_open(&self) -> bool {
        self.cell
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Closes the database (waiting up to 5 s for readers to let go) and opens it again.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let old = self.cell.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut old) = old {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        old = shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return Err(StoreError::Unavailable),
                }
            }
        }
        let db = open_db(&self.location, self.cache_size)?;
        *self.cell.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        Ok(())
    }

    /// Size of the database file in bytes (0 for a custom backend).
    pub fn file_len(&self) -> u64 {
        match &self.location {
            Location::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Location::Backend(_) => 0,
        }
    }
}

fn open_db(location: &Location, cache_size: usize) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_size);
    match location {
        Location::File(path) => builder.create(path).map_err(redb_err),
        Location::Backend(make) => builder.create_with_backend(Boxed(make())).map_err(redb_err),
    }
}

/// Lets a boxed backend be handed to redb, which wants a concrete type.
#[derive(Debug)]
struct Boxed(Box<dyn StorageBackend>);

impl StorageBackend for Boxed {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        self.0.read(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> Result<(), std::io::Error> {
        self.0.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
}
