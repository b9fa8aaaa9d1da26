//! A simulated disk for the crash tests, in the style of redb's own: writes land in a
//! volatile image, `sync_data` makes them persistent, a "crash" at the Nth sync fails it
//! and freezes the disk, and what is left is the persistent image plus an arbitrary half
//! of the writes never synced (a power cut), or the whole volatile image (a kill of the
//! process: the kernel keeps what was written). It counts the syncs.

use redb::StorageBackend;
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub(super) struct Disk {
    pub volatile: Vec<u8>,
    pub persistent: Vec<u8>,
    /// Writes since the last successful sync, in order.
    pub unsynced: Vec<(u64, Vec<u8>)>,
    /// Syncs left before the crash; None: never crash.
    pub syncs_left: Option<u64>,
    pub crashed: bool,
    /// Fail every Nth write with an I/O error (0: never).
    pub fail_every: u64,
    pub writes: u64,
    /// `sync_data` calls that succeeded: each one an fsync on Linux, whatever
    /// `eventual` says (redb 2.6's file backend).
    pub syncs: u64,
}

#[derive(Debug, Clone)]
pub(super) struct SimDisk(pub Arc<Mutex<Disk>>);

impl SimDisk {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.0.lock().unwrap()
    }

    /// The image a crash leaves: what was synced, plus every other unsynced write (a
    /// deterministic "arbitrary" subset, as a disk may reorder writes).
    pub fn after_crash(&self, seed: u64) -> SimDisk {
        let d = self.lock();
        let mut image = d.persistent.clone();
        let mut rng = seed | 1;
        for (offset, data) in &d.unsynced {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng % 2 == 0 {
                let end = *offset as usize + data.len();
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[*offset as usize..end].copy_from_slice(data);
            }
        }
        SimDisk(Arc::new(Mutex::new(Disk {
            volatile: image.clone(),
            persistent: image,
            ..Disk::default()
        })))
    }
}

impl SimDisk {
    /// The image a kill of the process leaves: everything it wrote is in the kernel's
    /// page cache, whether synced or not; what it only held in memory is gone.
    pub fn after_kill(&self) -> SimDisk {
        let image = self.lock().volatile.clone();
        SimDisk(Arc::new(Mutex::new(Disk {
            volatile: image.clone(),
            persistent: image,
            ..Disk::default()
        })))
    }
}

impl StorageBackend for SimDisk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.lock().volatile.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let d = self.lock();
        let start = offset as usize;
        d.volatile
            .get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"))
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut d = self.lock();
        if d.crashed {
            return Err(io::Error::other("crashed"));
        }
        d.volatile.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self, eventual: bool) -> Result<(), io::Error> {
        let mut d = self.lock();
        if d.crashed {
            return Err(io::Error::other("crashed"));
        }
        d.syncs += 1;
        if eventual {
            // A commit without `Durability::Immediate` promises nothing about a power
            // cut: model it as not reaching the disk (stricter than redb 2.6 on Linux,
            // which syncs anyway).
            return Ok(());
        }
        if let Some(left) = d.syncs_left {
            if left == 0 {
                // The process dies during this sync: it never returns success.
                d.crashed = true;
                return Err(io::Error::other("crash at this sync"));
            }
            d.syncs_left = Some(left - 1);
        }
        d.persistent = d.volatile.clone();
        d.unsynced.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut d = self.lock();
        if d.crashed {
            return Err(io::Error::other("crashed"));
        }
        d.writes += 1;
        if d.fail_every > 0 && d.writes % d.fail_every == 0 {
            return Err(io::Error::other("injected write error"));
        }
        let end = offset as usize + data.len();
        if d.volatile.len() < end {
            d.volatile.resize(end, 0);
        }
        d.volatile[offset as usize..end].copy_from_slice(data);
        d.unsynced.push((offset, data.to_vec()));
        Ok(())
    }
}
