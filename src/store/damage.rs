//! Telling a damaged store from other failures to open it. redb answers a file it cannot
//! make sense of either with an error (a bad header: `Corrupted`, or an I/O error of kind
//! `InvalidData` / `UnexpectedEof`) or, for some damage (a truncated file, zeroed
//! allocator pages), by panicking in one of its assertions. Both become
//! [`StoreError::Damaged`], which ferry answers by stopping with exit status 3 instead of
//! exiting 1 and being restarted into the same panic forever.

use super::StoreError;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a guarded open: its panics are caught and reported as
    /// damage, so the panic hook stays quiet about them.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic on this thread happened (file:line in redb).
    static WHERE: Cell<Option<String>> = const { Cell::new(None) };
}

static HOOK: Once = Once::new();

/// Wraps the panic hook once, for the whole process: a panic on a thread inside
/// [`guarded`] is not printed (the operator gets ferry's message, not a backtrace out of
/// redb), every other panic goes to the hook that was there before. A hook swapped in
/// and out around each open would also silence other threads' panics meanwhile (the
/// writer reopens the store while connections are being served).
fn install_quiet_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                WHERE.with(|w| w.set(info.location().map(|l| short(&l.to_string()))));
            } else {
                previous(info);
            }
        }));
    });
}

/// `file:line` from the crate's name on (`redb-2.6.4/src/...`), without the registry path.
fn short(location: &str) -> String {
    match location.find("/redb-") {
        Some(at) => location[at + 1..].to_string(),
        None => location.to_string(),
    }
}

/// Runs `open` (an open of the redb file at `path`, or a first read of it), turning a
/// panic inside it and the errors that mean damage into [`StoreError::Damaged`]; other
/// errors (the file is locked by another ferry, permissions) are returned as they are.
pub(super) fn guarded<T>(
    path: &str,
    open: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match caught(open) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(path, e)),
        Err(panic) => Err(StoreError::Damaged {
            path: path.to_string(),
            reason: format!("redb gave up on it in an internal check at {panic}"),
        }),
    }
}

/// Runs `f`, catching a panic in it without printing it (this thread only); the panic is
/// returned as "file:line: message", for the caller to report. `ferry store` walks
/// damaged tables with it.
pub(super) fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    let was_quiet = QUIET.with(|q| q.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was_quiet));
    outcome.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        let at = WHERE
            .with(Cell::take)
            .unwrap_or_else(|| "unknown place".into());
        format!("{at}: {}", message.lines().collect::<Vec<_>>().join(" "))
    })
}

/// `e` as [`StoreError::Damaged`] when it says the file's contents make no sense.
fn classify(path: &str, e: StoreError) -> StoreError {
    let StoreError::Redb(inner) = &e else {
        return e;
    };
    let damage = match inner.as_ref() {
        redb::Error::Corrupted(_) => true,
        redb::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    };
    if damage {
        StoreError::Damaged {
            path: path.to_string(),
            reason: format!("redb: {inner}"),
        }
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_damage_and_other_errors_stay() {
        let r: Result<(), _> = guarded("x/ferry.redb", || panic!("assertion failed: bit < len"));
        match r {
            Err(StoreError::Damaged { path, reason }) => {
                assert_eq!(path, "x/ferry.redb");
                assert!(reason.contains("bit < len"), "{reason}");
                assert!(reason.contains("damage.rs"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let r: Result<(), _> = guarded("p", || {
            Err(super::super::redb_err(redb::Error::Corrupted("bad".into())))
        });
        assert!(matches!(r, Err(StoreError::Damaged { .. })));
        let r: Result<(), _> = guarded("p", || {
            Err(super::super::redb_err(redb::Error::DatabaseAlreadyOpen))
        });
        assert!(matches!(r, Err(StoreError::Redb(_))));
        assert!(!QUIET.with(Cell::get), "the thread is loud again");
    }
}
