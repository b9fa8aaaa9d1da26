//! `ferry passwd FILE USER` adds a user to a password file or changes its password;
//! `ferry passwd --delete FILE USER` removes one. The password comes from the terminal
//! (no echo, asked twice) when stdin is one, otherwise from the first line of stdin, so
//! that scripts can run `echo secret | ferry passwd FILE USER`. It is never printed.
//!
//! Exit status: 0 done, 1 failure (no such user, passwords differ, I/O), 2 usage or a
//! FILE with a malformed line (which is then left as it is).

use super::passwd::{self, PasswdError, PasswordFile};
use std::io::{self, BufRead, IsTerminal, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Longest password accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Arguments of `ferry passwd`.
#[derive(Debug)]
pub struct PasswdArgs {
    /// Delete USER instead of adding it or changing its password.
    pub delete: bool,
    /// The password file (one user:argon2-hash per line); created with mode 0640 if it
    /// does not exist.
    pub file: PathBuf,
    /// The user to add, change or delete.
    pub user: String,
}

/// Why `ferry passwd` failed; each maps to an exit status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error("{0}")]
    BadUserName(passwd::UserProblem),
    #[error("{0} (the file was not changed)")]
    InvalidFile(PasswdError),
    #[error("{} does not exist", path.display())]
    NoFile { path: PathBuf },
    #[error("user {user:?} not found in {}", path.display())]
    NoSuchUser { user: String, path: PathBuf },
    #[error("the passwords do not match")]
    Mismatch,
    #[error("empty password refused")]
    EmptyPassword,
    #[error("password longer than {MAX_PASSWORD_LEN} bytes refused")]
    TooLong,
    #[error("cannot read the password: {0}")]
    ReadPassword(io::Error),
    #[error("{0}")]
    Passwd(PasswdError),
}

impl CliError {
    /// 2 for usage errors and invalid files, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadUserName(_) | CliError::InvalidFile(_) => 2,
            _ => 1,
        }
    }
}

/// Runs the command, printing what was done on stdout or the error on stderr.
pub fn run(args: &PasswdArgs) -> ExitCode {
    match execute(args, read_password) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry passwd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Does the work; `password` is asked only when adding or changing, after the file
/// was read and found valid. Returns what was done, for the user.
pub fn execute(
    args: &PasswdArgs,
    password: impl FnOnce() -> Result<Vec<u8>, CliError>,
) -> Result<String, CliError> {
    let (path, user) = (&args.file, args.user.as_str());
    passwd::check_user(user).map_err(CliError::BadUserName)?;
    let existing = match PasswordFile::load(path) {
        Ok(file) => Some(file),
        Err(PasswdError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
        Err(e @ PasswdError::Read { .. }) => return Err(CliError::Passwd(e)),
        Err(e) => return Err(CliError::InvalidFile(e)),
    };
    if args.delete {
        let mut file = existing.ok_or_else(|| CliError::NoFile { path: path.clone() })?;
        if !file.remove(user) {
            return Err(CliError::NoSuchUser {
                user: user.into(),
                path: path.clone(),
            });
        }
        save(&file, path)?;
        return Ok(format!("deleted user {user:?} from {}", path.display()));
    }
    let mut file = existing.unwrap_or_default();
    let changing = file.contains(user);
    let password = password()?;
    if password.is_empty() {
        return Err(CliError::EmptyPassword);
    }
    file.set(user, &password).map_err(CliError::Passwd)?;
    save(&file, path)?;
    Ok(if changing {
        format!("changed the password of {user:?} in {}", path.display())
    } else {
        format!("added user {user:?} to {}", path.display())
    })
}

/// Saves, and warns when the file could not keep its owner (only root can chown).
fn save(file: &PasswordFile, path: &Path) -> Result<(), CliError> {
    let owner = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.uid(), m.gid()));
    let before = owner(path);
    file.save(path).map_err(CliError::Passwd)?;
    let after = owner(path);
    if let (Some((uid, gid)), Some(now)) = (before, after) {
        if (uid, gid) != now {
            eprintln!(
                "ferry passwd: warning: {} was owned by {uid}:{gid} and is now owned by \
                 {}:{} (run as root to keep the owner)",
                path.display(),
                now.0,
                now.1
            );
        }
    }
    Ok(())
}

/// From the terminal when stdin is one, else the first line of stdin.
fn read_password() -> Result<Vec<u8>, CliError> {
    if io::stdin().is_terminal() {
        tty::ask_twice()
    } else {
        read_line(&mut io::stdin().lock())
    }
}

/// One line of `input` without its `\n` or `\r\n`; at most [`MAX_PASSWORD_LEN`] bytes.
pub fn read_line(input: &mut impl BufRead) -> Result<Vec<u8>, CliError> {
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD_LEN as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(CliError::ReadPassword)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_LEN {
        return Err(CliError::TooLong);
    }
    Ok(line)
}

/// Asking on the terminal with echo off. The terminal's settings are restored when the
/// guard drops (every return and panic path) and, through a handler, when SIGINT,
/// SIGTERM, SIGHUP or SIGQUIT kills the command mid-prompt.
mod tty {
    use super::{CliError, read_line};
    use std::fs::OpenOptions;
    use std::io::{self, BufReader, Write};
    use std::os::fd::AsRawFd;
    use std::os::raw::c_int;
    use std::sync::OnceLock;

    /// The terminal and its settings before echo was turned off, for the signal handler
    /// (which may only make async-signal-safe calls: `OnceLock::get` is an atomic load).
    static SAVED: OnceLock<(c_int, libc::termios)> = OnceLock::new();
    const SIGNALS: [c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

    pub(super) fn ask_twice() -> Result<Vec<u8>, CliError> {
        // The controlling terminal, even when stderr is redirected; stdin and stderr if
        // there is none.
        let (fd, input, mut output): (c_int, Box<dyn io::BufRead>, Box<dyn Write>) =
            match OpenOptions::new().read(true).write(true).open("/dev/tty") {
                Ok(file) => {
                    let out = file.try_clone().map_err(CliError::ReadPassword)?;
                    let fd = file.as_raw_fd();
                    (fd, Box::new(BufReader::new(file)), Box::new(out))
                }
                Err(_) => (
                    libc::STDIN_FILENO,
                    Box::new(io::stdin().lock()),
                    Box::new(io::stderr()),
                ),
            };
        let mut input = input;
        let _echo = EchoOff::new(fd).map_err(CliError::ReadPassword)?;
        let mut ask = |prompt: &str| -> Result<Vec<u8>, CliError> {
            output
                .write_all(prompt.as_bytes())
                .and_then(|()| output.flush())
                .map_err(CliError::ReadPassword)?;
            read_line(&mut input)
        };
        let first = ask("Password: ")?;
        if first.is_empty() {
            return Err(CliError::EmptyPassword);
        }
        let second = ask("Reenter password: ")?;
        if first != second {
            return Err(CliError::Mismatch);
        }
        Ok(first)
    }

    /// Echo off on `fd` (the newline still echoes) until dropped.
    struct EchoOff {
        fd: c_int,
        saved: libc::termios,
        handlers: Vec<(c_int, libc::sigaction)>,
    }

    impl EchoOff {
        fn new(fd: c_int) -> io::Result<EchoOff> {
            // SAFETY: termios is plain data; tcgetattr fills it or fails (checked).
            let mut saved: libc::termios = unsafe { std::mem::zeroed() };
            if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let _ = SAVED.set((fd, saved)); // first terminal of the process: the only one
            let mut guard = EchoOff {
                fd,
                saved,
                handlers: Vec::new(),
            };
            for sig in SIGNALS {
                if let Some(old) = install(sig) {
                    guard.handlers.push((sig, old));
                }
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            // SAFETY: fd is open for the guard's life; quiet is a valid termios.
            if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
                return Err(io::Error::last_os_error()); // guard drops: handlers restored
            }
            Ok(guard)
        }
    }

    impl Drop for EchoOff {
        fn drop(&mut self) {
            // SAFETY: restores what tcgetattr / sigaction returned.
            unsafe {
                libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
                for (sig, old) in &self.handlers {
                    libc::sigaction(*sig, old, std::ptr::null_mut());
                }
            }
        }
    }

    /// Installs [`restore_and_die`] for `sig` unless it is ignored (nohup); returns the
    /// previous action to put back.
    fn install(sig: c_int) -> Option<libc::sigaction> {
        // SAFETY: sigaction structs are plain data, filled by the kernel or by us.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction == libc::SIG_IGN
            {
                return None;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = restore_and_die as extern "C" fn(c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut new.sa_mask);
            (libc::sigaction(sig, &new, std::ptr::null_mut()) == 0).then_some(old)
        }
    }

    /// Puts the terminal back and dies of the signal, as without the handler. Only
    /// async-signal-safe calls (tcsetattr, write, signal, raise).
    extern "C" fn restore_and_die(sig: c_int) {
        // SAFETY: async-signal-safe libc calls on a termios saved before install.
        unsafe {
            if let Some((fd, saved)) = SAVED.get() {
                libc::tcsetattr(*fd, libc::TCSANOW, saved);
                libc::write(*fd, c"\n".as_ptr().cast(), 1);
            }
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_strips_one_line_ending() {
        let line = |s: &[u8]| read_line(&mut &s[..]).map_err(|e| e.to_string());
        assert_eq!(line(b"secret\n").unwrap(), b"secret");
        assert_eq!(line(b"secret\r\n").unwrap(), b"secret");
        assert_eq!(line(b"secret").unwrap(), b"secret");
        assert_eq!(line(b"two words \n next line\n").unwrap(), b"two words ");
        assert_eq!(line(b"\n").unwrap(), b"");
        assert_eq!(line(b"").unwrap(), b"");
        let max = vec![b'x'; MAX_PASSWORD_LEN];
        assert_eq!(line(&[&max[..], b"\r\n"].concat()).unwrap(), max);
        assert_eq!(
            line(&[&max[..], b"y\n"].concat()).unwrap_err(),
            "password longer than 4096 bytes refused"
        );
    }

    fn args(delete: bool, file: &Path, user: &str) -> PasswdArgs {
        PasswdArgs {
            delete,
            file: file.to_path_buf(),
            user: user.into(),
        }
    }

    #[test]
    fn add_change_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let pw = |p: &'static [u8]| move || Ok(p.to_vec());
        let done = execute(&args(false, &path, "alice"), pw(b"one")).unwrap();
        assert!(done.starts_with("added user \"alice\""), "{done}");
        let done = execute(&args(false, &path, "alice"), pw(b"two")).unwrap();
        assert!(done.starts_with("changed the password"), "{done}");
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(file.verify("alice", b"two"), passwd::Verified::Ok);
        execute(&args(true, &path, "alice"), || {
            panic!("no password for delete")
        })
        .unwrap();
        let e = execute(&args(true, &path, "alice"), pw(b"x")).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.to_string().starts_with("user \"alice\" not found in"),
            "{e}"
        );
    }

    #[test]
    fn refusals_and_their_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let e = execute(&args(false, &path, "bad name"), || Ok(b"x".to_vec())).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (2, "user name contains whitespace")
        );
        let e = execute(&args(false, &path, "bob"), || Ok(Vec::new())).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (1, "empty password refused")
        );
        assert!(!path.exists(), "nothing written on a refusal");
        let e = execute(&args(true, &path, "bob"), || Ok(b"x".to_vec())).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().ends_with("does not exist"), "{e}");

        std::fs::write(&path, "# users\nbob\n").unwrap();
        let e = execute(&args(false, &path, "bob"), || {
            panic!("asked for a password")
        })
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: missing ':' between user name and hash (the file was not changed)",
                path.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# users\nbob\n");
    }
}
