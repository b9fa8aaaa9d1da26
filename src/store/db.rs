//! The redb database behind a slot that can be emptied and refilled: after an I/O error
//! (a full disk, a failing SD card) redb refuses every further operation until the
//! database is closed and opened again, which also runs its recovery.

use super::{StoreError, damage, redb_err};
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

impl Location {
    /// The file, for messages (a custom backend has none).
    pub fn describe(&self) -> String {
        match self {
            Location::File(p) => p.display().to_string(),
            Location::Backend(_) => "(storage backend)".into(),
        }
    }
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
    /// A file that turned out damaged (redb panicking included) is a failed reopen
    /// ([`StoreError::Damaged`]), never a panic of the writer thread.
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

/// Opens (creating it when missing or empty) the database; damage, a panic inside redb
/// included, is [`StoreError::Damaged`].
fn open_db(location: &Location, cache_size: usize) -> Result<Database, StoreError> {
    damage::guarded(&location.describe(), || {
        let mut builder = Database::builder();
        builder.set_cache_size(cache_size);
        match location {
            Location::File(path) => builder.create(path).map_err(redb_err),
            Location::Backend(make) => builder.create_with_backend(Boxed(make())).map_err(redb_err),
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableDefinition;
    use std::sync::atomic::{AtomicBool, Ordering};

    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

    /// The writer reopens the store after an I/O error; a file damaged meanwhile must
    /// fail that reopen (the writer retries), not panic the writer thread.
    #[test]
    fn reopening_a_file_damaged_meanwhile_fails_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let damage = Arc::new(AtomicBool::new(false));
        let (p, d) = (path.clone(), damage.clone());
        // The file is cut in half between closing and opening it again, as a failing
        // card could leave it; the backend is the plain file one.
        let factory: BackendFactory = Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .unwrap();
            if d.load(Ordering::SeqCst) {
                let len = file.metadata().unwrap().len();
                file.set_len(len / 2).unwrap();
            }
            Box::new(redb::backends::FileBackend::new(file).unwrap())
        });
        let slot = DbSlot::open(Location::Backend(factory), 1 << 20).unwrap();
        let db = slot.get().unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for i in 0..2_000u64 {
                t.insert(i, [7u8; 500].as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        damage.store(true, Ordering::SeqCst);
        match slot.reopen() {
            Err(StoreError::Damaged { reason, .. }) => {
                assert!(reason.contains("redb"), "{reason}");
            }
            Err(other) => panic!("not reported as damage: {other}"),
            Ok(()) => panic!("a file cut in half reopened"),
        }
        assert!(matches!(slot.get(), Err(StoreError::Unavailable)));
    }
}
