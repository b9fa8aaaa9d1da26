//! Test harness: the real `ferry` binary and a real `mosquitto`, on loopback, each killed
//! when its handle drops. Every wait has a deadline; nothing sleeps and hopes.
#![allow(dead_code)]

pub mod nats_raw;
pub mod nats_server;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod raw5;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it is true; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback port that was free a moment ago (for peers that cannot report theirs).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A loopback port where no upstream runs, for tests that need one down: bound (not
/// listening) for as long as the returned socket lives, so connecting is refused and no
/// listener of a test running beside (a ferry on port 0, a mosquitto) can take it, as
/// it could take a port `free_port` only found free a moment ago.
pub fn dead_port() -> (u16, socket2::Socket) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind a loopback port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("bound port");
    (port, socket)
}

/// Writes `dir/passwd` with `users` (name, password), each hashed as `ferry passwd` does.
pub fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("passwd");
    let text: String = users
        .iter()
        .map(|(u, p)| {
            format!(
                "{u}:{}\n",
                ferry::policy::passwd::hash_password(p.as_bytes()).unwrap()
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// A running ferry process with its log captured.
pub struct Ferry {
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub mqtt: SocketAddr,
    pub nats: Option<SocketAddr>,
    pub dir: PathBuf,
}

/// The config every test starts from: ephemeral loopback ports, store in `dir`.
pub fn base_config(dir: &Path) -> String {
    format!(
        "[mqtt]\nlisten = \"127.0.0.1:0\"\n[nats]\nlisten = \"127.0.0.1:0\"\n[store]\ndir = \"{}\"\n",
        dir.join("store").display()
    )
}

/// An `[[upstream]]` plus a `[[forward]]` rule sending `sensors/#` to it as `site-a/{topic}`.
pub fn forward_config(port: u16) -> String {
    format!(
        "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"gw-test\"\n\
         backoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\ntopic = \"site-a/{{topic}}\"\nqos = 1\n"
    )
}

impl Ferry {
    /// Writes `config` to `dir/ferry.toml` and starts ferry on it; returns once both
    /// listeners reported their addresses.
    pub fn start(dir: &Path, config: &str) -> Ferry {
        let path = dir.join("ferry.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferry");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("FERRY_TEST_LOG").is_some() {
                    eprintln!("[ferry] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut f = Ferry {
            child,
            log,
            mqtt: "0.0.0.0:0".parse().unwrap(),
            nats: None,
            dir: dir.to_path_buf(),
        };
        let wants_nats = !config.contains("[nats]\nenabled = false");
        wait_until(Duration::from_secs(20), "ferry listeners", || {
            if let Ok(Some(status)) = f.child.try_wait() {
                panic!("ferry exited early ({status}):\n{}", f.log_text());
            }
            f.mqtt = match f.addr_of("MQTT listener ready") {
                Some(a) => a,
                None => return false,
            };
            f.nats = f.addr_of("NATS listener ready");
            !wants_nats || f.nats.is_some()
        });
        f
    }

    /// The address logged with `marker` (e.g. "MQTT TLS listener ready").
    pub fn addr_of(&self, marker: &str) -> Option<SocketAddr> {
        let log = self.log.lock().unwrap();
        let line = log.iter().find(|l| l.contains(marker))?;
        let at = line.find("addr=")? + 5;
        line[at..].split_whitespace().next()?.parse().ok()
    }

    /// The ferry process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The /metrics text (needs `[metrics] listen`).
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        // The endpoint may report ready just after the listeners did.
        let mut addr = None;
        wait_until(
            Duration::from_secs(10),
            "metrics endpoint in the config",
            || {
                addr = self.addr_of("metrics endpoint ready");
                addr.is_some()
            },
        );
        let addr = addr.expect("metrics endpoint");
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The value of one metric line (`name{labels}` exactly as rendered).
    pub fn metric(&self, series: &str) -> u64 {
        let text = self.metrics();
        metric_in(&text, series).unwrap_or_else(|| panic!("{series} not in /metrics:\n{text}"))
    }

    /// Waits for a log line containing every one of `parts`.
    pub fn wait_log(&self, parts: &[&str], limit: Duration) {
        wait_until(limit, &format!("log line with {parts:?}"), || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| parts.iter().all(|p| l.contains(p)))
        });
    }

    /// The peak resident set size of the ferry process so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The resident set size of the ferry process now.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<ferry>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<ferry>/status"))
            * 1024
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(Instant::now() < end, "ferry did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mosquitto broker on a loopback port, with persistence in its own directory so that a
/// stopped-and-started broker keeps its subscribers' sessions.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    /// Lines added to the generated mosquitto.conf (e.g. an `acl_file`).
    extra: String,
}

impl Mosquitto {
    pub fn start(dir: &Path, port: u16) -> Mosquitto {
        Mosquitto::start_with(dir, port, "")
    }

    /// Like [`Mosquitto::start`], with `extra` lines in its config.
    pub fn start_with(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        let dir = dir.join(format!("mosquitto-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Mosquitto {
            child: None,
            port,
            dir,
            extra: extra.to_string(),
        };
        m.restart();
        m
    }

    /// Starts (again) on the same port and persistence file.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 0\nmax_inflight_messages 100\nuser root\nlog_dest stderr\n{}",
                self.port,
                self.dir.display(),
                self.extra
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(10), "mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Graceful stop (SIGTERM: mosquitto saves its sessions), waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// The value of one metric line (`name{labels}` exactly as rendered) in a /metrics text;
/// None when it is not there.
pub fn metric_in(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
