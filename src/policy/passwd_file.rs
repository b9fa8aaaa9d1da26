//! Writing the password file so that a crash or power cut leaves the old file or the new
//! one, never a torn one: a temporary file in the same directory, created with mode 0640,
//! written and fsynced, renamed over the old file (keeping its owner and group when it
//! existed), then the directory fsynced.

use super::passwd::{FILE_MODE, PasswdError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(super) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), PasswdError> {
    let fail = |step: &'static str| {
        move |source: io::Error| PasswdError::Write {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = if is_link {
        fs::canonicalize(path).map_err(fail("resolve symlink"))?
    } else {
        path.to_path_buf()
    };
    let owner = match fs::metadata(&target) {
        Ok(m) => Some((m.uid(), m.gid())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail("stat")(e)),
    };
    let Some(name) = target.file_name() else {
        return Err(fail("name")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        )));
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut open = OpenOptions::new();
    open.write(true).create_new(true).mode(FILE_MODE);
    let file = match open.open(&tmp) {
        // Our pid is unique among live processes: a file with it is left from a crash.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp).map_err(fail("remove stale temporary file"))?;
            open.open(&tmp)
        }
        other => other,
    }
    .map_err(fail("create temporary file"))?;
    let result = fill_and_rename(file, owner, data, &tmp, &target, dir, fail);
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // after a failed rename; NotFound otherwise
    }
    result
}

fn fill_and_rename<F, E>(
    mut file: File,
    owner: Option<(u32, u32)>,
    data: &[u8],
    tmp: &Path,
    target: &Path,
    dir: &Path,
    fail: F,
) -> Result<(), PasswdError>
where
    F: Fn(&'static str) -> E,
    E: FnOnce(io::Error) -> PasswdError,
{
    if let Some((uid, gid)) = owner {
        // Best effort: only root may give the file to another user; failing leaves the
        // file owned by the caller, which the caller can see and fix.
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
    }
    // After chown (which may clear mode bits) and regardless of the umask.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(fail("chmod"))?;
    file.write_all(data).map_err(fail("write"))?;
    file.sync_all().map_err(fail("fsync"))?;
    drop(file);
    fs::rename(tmp, target).map_err(fail("rename"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync directory"))
}
