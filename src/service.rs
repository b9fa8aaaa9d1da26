//! Running under systemd (`Type=notify`): readiness, watchdog pings and "stopping" are
//! sent as datagrams to `$NOTIFY_SOCKET`, the protocol `sd_notify(3)` documents.
//!
//! Written by hand rather than with a crate: it is one datagram per state change, and the
//! protocol is frozen. Without `$NOTIFY_SOCKET` (not started by systemd) every call is a
//! no-op, so `main` calls it unconditionally.
//!
//! READY=1 is sent only after every listener is bound and the store is open, so units
//! ordered `After=ferry.service` start against a broker that accepts connections.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("NOTIFY_SOCKET {0:?}: expected an absolute path or an abstract name starting with '@'")]
    Address(String),
    #[error("NOTIFY_SOCKET {addr:?}: {source}")]
    Io { addr: String, source: io::Error },
}

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    /// A socket file (e.g. `/run/systemd/notify`).
    Path(std::path::PathBuf),
    /// A Linux abstract-namespace name, given as `@name`; stored without the `@`.
    Abstract(Vec<u8>),
}

impl NotifyAddr {
    /// Parses the variable's value; anything but `/...` or `@...` is rejected (systemd
    /// never sets a relative path, and sending to one would depend on the cwd).
    pub fn parse(value: &OsStr) -> Result<NotifyAddr, ServiceError> {
        let bytes = value.as_bytes();
        match bytes.first() {
            Some(b'/') => Ok(NotifyAddr::Path(value.into())),
            Some(b'@') if bytes.len() > 1 => Ok(NotifyAddr::Abstract(
                bytes.get(1..).unwrap_or_default().to_vec(),
            )),
            _ => Err(ServiceError::Address(value.to_string_lossy().into_owned())),
        }
    }
}

/// A connected notification socket. Sends never block: a full socket buffer drops that
/// one notification (systemd's queue is deep; the next watchdog ping follows anyway).
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: String,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, or `None` when ferry was not started by a
    /// service manager that wants notifications.
    pub fn from_env() -> Result<Option<Notifier>, ServiceError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Notifier::connect(&NotifyAddr::parse(&v)?).map(Some),
        }
    }

    pub fn connect(addr: &NotifyAddr) -> Result<Notifier, ServiceError> {
        let shown = match addr {
            NotifyAddr::Path(p) => p.display().to_string(),
            NotifyAddr::Abstract(name) => format!("@{}", String::from_utf8_lossy(name)),
        };
        let io_err = |source| ServiceError::Io {
            addr: shown.clone(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(io_err)?;
        match addr {
            NotifyAddr::Path(p) => socket.connect(p).map_err(io_err)?,
            NotifyAddr::Abstract(name) => connect_abstract(&socket, name).map_err(io_err)?,
        }
        socket.set_nonblocking(true).map_err(io_err)?;
        Ok(Notifier {
            socket,
            addr: shown,
        })
    }

    /// Sends one state message such as `READY=1` (several may be joined with '\n').
    pub fn notify(&self, state: &str) -> Result<(), ServiceError> {
        self.socket
            .send(state.as_bytes())
            .map(drop)
            .map_err(|source| ServiceError::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    /// The service is up: listeners bound, store open.
    pub fn ready(&self) -> Result<(), ServiceError> {
        self.notify(&format!("READY=1\nMAINPID={}", std::process::id()))
    }

    /// A reload has begun (READY=1 follows when it is over), with the monotonic clock
    /// systemd's `Type=notify-reload` wants beside it.
    pub fn reloading(&self) -> Result<(), ServiceError> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only into the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// Still alive; must come more often than `WatchdogSec`.
    pub fn watchdog(&self) -> Result<(), ServiceError> {
        self.notify("WATCHDOG=1")
    }

    /// Shutdown has begun; systemd then waits up to `TimeoutStopSec` for the exit.
    pub fn stopping(&self) -> Result<(), ServiceError> {
        self.notify("STOPPING=1")
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn connect_abstract(socket: &UnixDatagram, name: &[u8]) -> io::Result<()> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.connect_addr(&addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn connect_abstract(_: &UnixDatagram, _: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// How often to send `WATCHDOG=1`, from the environment systemd sets when the unit has
/// `WatchdogSec=`; `None` when no watchdog is armed for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Half the watchdog timeout, as sd_watchdog_enabled(3) advises, so one late ping is not
/// fatal. `WATCHDOG_PID`, when set, must name us: the variables may have been inherited
/// from a parent that is the one being watched.
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_abstract_names() {
        assert_eq!(
            NotifyAddr::parse(OsStr::new("/run/systemd/notify")).unwrap(),
            NotifyAddr::Path("/run/systemd/notify".into())
        );
        assert_eq!(
            NotifyAddr::parse(OsStr::new("@ferry/notify")).unwrap(),
            NotifyAddr::Abstract(b"ferry/notify".to_vec())
        );
        for bad in ["", "@", "relative/sock", "notify"] {
            assert!(NotifyAddr::parse(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_our_pid_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval_from(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("-5"), None, 7), None);
        assert_eq!(
            watchdog_interval_from(Some("1"), None, 7),
            Some(Duration::from_millis(1))
        );
    }

    fn round_trip(addr: &NotifyAddr, server: &UnixDatagram) {
        let n = Notifier::connect(addr).unwrap();
        n.ready().unwrap();
        n.watchdog().unwrap();
        n.stopping().unwrap();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8(buf[..len].to_vec()).unwrap());
        }
        assert_eq!(
            got,
            [
                format!("READY=1\nMAINPID={}", std::process::id()),
                "WATCHDOG=1".to_string(),
                "STOPPING=1".to_string()
            ]
        );
    }

    #[test]
    fn sends_to_a_socket_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        round_trip(&NotifyAddr::Path(path), &server);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ferry-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let parsed = NotifyAddr::parse(OsStr::new(&format!("@{name}"))).unwrap();
        round_trip(&parsed, &server);
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        let err = Notifier::connect(&NotifyAddr::Path("/nonexistent/ferry.sock".into()));
        assert!(err.is_err());
    }
}
