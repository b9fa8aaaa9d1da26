//! The brokers under test as child processes on loopback: ferry (the release binary Cargo
//! built for this bench), mosquitto and nats-server. Each is killed when its handle drops,
//! so a failed scenario never leaves a broker behind; every wait has a deadline.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines of ferry's log kept in memory; the rest is counted but dropped, so that a chatty
/// log cannot grow the bench process without bound.
const LOG_KEEP: usize = 2000;

/// Polls `cond` every 10 ms until it is true; fails with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= end {
            bail!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A loopback port that was free a moment ago (for peers that cannot report theirs).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Memory figures of a process, in KiB, from /proc/<pid>/status.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Private memory: heap, stacks, what the process wrote.
    pub anon_kib: u64,
    /// File pages mapped: the binary's and shared libraries' code and data touched
    /// (clean, shared with the page cache, and reclaimable).
    pub file_kib: u64,
}

pub fn mem_of(pid: u32) -> Result<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Mem {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
    })
}

/// `write_bytes` of /proc/<pid>/io: bytes this process caused to be sent to the block
/// layer (counted when a clean page is dirtied, so a page rewritten before writeback counts
/// once, a page rewritten after an fsync counts again). The filesystem journal is not in it.
pub fn write_bytes_of(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .with_context(|| format!("read /proc/{pid}/io"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no write_bytes in /proc/<pid>/io")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A running ferry with its log captured.
pub struct Ferry {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    pub mqtt: SocketAddr,
    pub nats: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// The part of every bench config that is always the same: loopback ephemeral ports and
/// the store in `dir`. `[store]` comes last so that a caller can append store keys.
pub fn ferry_base_config(dir: &Path) -> String {
    format!(
        "[mqtt]\nlisten = \"127.0.0.1:0\"\n[nats]\nlisten = \"127.0.0.1:0\"\n\
         [log]\nlevel = \"warn,ferry::broker=info\"\n[store]\ndir = \"{}\"\n",
        dir.join("store").display()
    )
}

/// An upstream on `port` and a rule storing and forwarding `sensors/#` to it at QoS 1.
pub fn ferry_forward_config(port: u16) -> String {
    format!(
        "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"ferry-bench\"\n\
         backoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\ntopic = \"site-a/{{topic}}\"\nqos = 1\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n"
    )
}

impl Ferry {
    /// Writes `config` to `dir/ferry.toml`, starts ferry and returns once its listeners
    /// (and the metrics endpoint, if configured) reported their addresses.
    pub fn start(dir: &Path, config: &str) -> Result<Ferry> {
        Ferry::start_wrapped(dir, config, &[])
    }

    /// [`Ferry::start`] with ferry run by `wrapper` (`valgrind --tool=callgrind ...`).
    pub fn start_wrapped(dir: &Path, config: &str, wrapper: &[String]) -> Result<Ferry> {
        Ferry::start_binary(dir, config, wrapper, Path::new(env!("CARGO_BIN_EXE_ferry")))
    }

    /// [`Ferry::start_wrapped`] with the ferry binary at `bin` instead of the one Cargo
    /// built for this bench (a cross-compiled one run by `qemu-arm`, say).
    pub fn start_binary(dir: &Path, config: &str, wrapper: &[String], bin: &Path) -> Result<Ferry> {
        let path = dir.join("ferry.toml");
        std::fs::write(&path, config)?;
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .arg("--config")
            .arg(&path)
            // RUST_LOG would override [log] level; the ready lines must stay visible.
            .env("RUST_LOG", "warn,ferry::broker=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start ferry")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().context("ferry stderr")?;
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("FERRY_BENCH_LOG").is_some() {
                    eprintln!("[ferry] {line}");
                }
                if let Ok(mut l) = sink.lock() {
                    if l.len() < LOG_KEEP {
                        l.push(line);
                    }
                }
            }
        });
        let unset: SocketAddr = "0.0.0.0:0".parse()?;
        let mut f = Ferry {
            child,
            log,
            mqtt: unset,
            nats: unset,
            metrics: None,
        };
        let wants_metrics = config.contains("[metrics]");
        let mut early_exit = None;
        // Under valgrind (or qemu-user) the start takes far longer.
        let patience = Duration::from_secs(if wrapper.is_empty() { 20 } else { 120 });
        let ready = wait_until(patience, "ferry listeners", || {
            if let Ok(Some(status)) = f.child.try_wait() {
                early_exit = Some(status);
                return true;
            }
            let (Some(m), Some(n)) = (
                f.addr_of("MQTT listener ready"),
                f.addr_of("NATS listener ready"),
            ) else {
                return false;
            };
            f.mqtt = m;
            f.nats = n;
            f.metrics = f.addr_of("metrics endpoint ready");
            !wants_metrics || f.metrics.is_some()
        });
        if let Some(status) = early_exit {
            bail!("ferry exited early ({status}):\n{}", f.log_text());
        }
        ready.with_context(|| f.log_text())?;
        Ok(f)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn addr_of(&self, marker: &str) -> Option<SocketAddr> {
        let log = self.log.lock().ok()?;
        let line = log.iter().find(|l| l.contains(marker))?;
        let at = line.find("addr=")? + 5;
        line.get(at..)?.split_whitespace().next()?.parse().ok()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The value of metric `name` (its first series) from the metrics endpoint.
    ///
    /// Note: ferry updates `ferry_upstream_backlog_events` only while its link is in a
    /// connection attempt, so during an outage it is stale; use it only once the upstream
    /// is up, together with `ferry_upstream_forwarded_total`.
    pub fn metric(&self, name: &str) -> Result<u64> {
        let addr = self.metrics.context("metrics endpoint not configured")?;
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        body.lines()
            .find(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .with_context(|| format!("no {name} in /metrics"))
    }

    /// True once the upstream acknowledged `n` events and the persisted backlog is empty.
    pub fn drained(&self, n: u64) -> bool {
        self.metric("ferry_upstream_forwarded_total").unwrap_or(0) >= n
            && self.metric("ferry_upstream_backlog_events").ok() == Some(0)
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// mosquitto on a loopback port. With `persistence`, its database lives in `dir` and
/// survives a stop/restart (so a subscriber's persistent session does).
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    persistence: bool,
    limits: String,
    /// A command mosquitto runs under (`valgrind --tool=callgrind ...`); empty: none.
    wrapper: Vec<String>,
}

/// The limits that make mosquitto a fair peer in throughput runs: no message limit per
/// queue (ferry's limits are far above what a bench queues), 100 QoS 1 messages in flight
/// per client.
const MOSQUITTO_THROUGHPUT: &str = "max_queued_messages 0\nmax_inflight_messages 100\n";

impl Mosquitto {
    pub fn start(dir: &Path, port: u16, persistence: bool) -> Result<Mosquitto> {
        Mosquitto::start_configured(dir, port, persistence, MOSQUITTO_THROUGHPUT, &[])
    }

    /// Without persistence, with `limits` (config lines) instead of the throughput
    /// settings.
    pub fn start_with(dir: &Path, port: u16, limits: &str) -> Result<Mosquitto> {
        Mosquitto::start_configured(dir, port, false, limits, &[])
    }

    /// [`Mosquitto::start`] (no persistence) run by `wrapper`.
    pub fn start_wrapped(dir: &Path, port: u16, wrapper: &[String]) -> Result<Mosquitto> {
        Mosquitto::start_configured(dir, port, false, MOSQUITTO_THROUGHPUT, wrapper)
    }

    fn start_configured(
        dir: &Path,
        port: u16,
        persistence: bool,
        limits: &str,
        wrapper: &[String],
    ) -> Result<Mosquitto> {
        let dir = dir.join(format!("mosquitto-{port}"));
        std::fs::create_dir_all(&dir)?;
        let mut m = Mosquitto {
            child: None,
            port,
            dir,
            persistence,
            limits: limits.to_string(),
            wrapper: wrapper.to_vec(),
        };
        m.restart()?;
        Ok(m)
    }

    /// Starts (again) on the same port and database, with Nagle off like ferry and the
    /// limits it was started with.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("mosquitto already running");
        }
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence {}\npersistence_location {}/\n\
                 {}set_tcp_nodelay true\nuser root\nlog_dest none\n",
                self.port,
                self.persistence,
                self.dir.display(),
                self.limits
            ),
        )?;
        let mut command = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("mosquitto"));
                c
            }
            None => Command::new(bin("mosquitto")),
        };
        let child = command
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start mosquitto (apt-get install mosquitto)")?;
        self.child = Some(child);
        let port = self.port;
        let patience = Duration::from_secs(if self.wrapper.is_empty() { 10 } else { 60 });
        wait_until(patience, "mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// False once the process has exited (or was stopped).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(|c| c.id())
            .context("mosquitto not running")
    }

    /// SIGTERM (mosquitto saves its database), then waits for the exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status()?;
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

/// nats-server on a loopback port; with `jetstream_dir`, JetStream on with its file store
/// there.
pub struct NatsServer {
    child: Child,
    pub port: u16,
}

impl NatsServer {
    pub fn start(port: u16, jetstream_dir: Option<&Path>) -> Result<NatsServer> {
        let mut cmd = Command::new(bin("nats-server"));
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(dir) = jetstream_dir {
            cmd.arg("-js").arg("-sd").arg(dir);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start nats-server (apt-get install nats-server)")?;
        let s = NatsServer { child, port };
        wait_until(Duration::from_secs(10), "nats-server to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn bin(name: &str) -> String {
    let sbin = format!("/usr/sbin/{name}");
    if Path::new(&sbin).exists() {
        sbin
    } else {
        name.to_string()
    }
}

/// A JetStream cluster of `n` nats-server nodes on loopback (cluster routes to each other,
/// a store directory each), as a fleet's cloud side would run it.
pub struct NatsCluster {
    /// Killed when the cluster is dropped.
    _nodes: Vec<NatsNode>,
    pub ports: Vec<u16>,
}

struct NatsNode(Child);

impl Drop for NatsNode {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

impl NatsCluster {
    pub fn start(dir: &Path, n: usize) -> Result<NatsCluster> {
        let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
        let routes = (0..n).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let node = dir.join(format!("nats-{i}"));
            std::fs::create_dir_all(&node)?;
            let others: Vec<String> = (0..n)
                .filter(|j| *j != i)
                .map(|j| format!("nats-route://127.0.0.1:{}", routes[j]))
                .collect();
            let conf = node.join("nats.conf");
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: bench, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    ports[i],
                    node.join("js").display(),
                    routes[i],
                    others.join(", ")
                ),
            )?;
            let child = Command::new(bin("nats-server"))
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start nats-server (apt-get install nats-server)")?;
            nodes.push(NatsNode(child));
            let port = ports[i];
            wait_until(Duration::from_secs(10), "nats-server to listen", || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            })?;
        }
        Ok(NatsCluster {
            _nodes: nodes,
            ports,
        })
    }

    /// Every node's url, as a TOML array.
    pub fn toml_urls(&self) -> String {
        let list: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("\"nats://127.0.0.1:{p}\""))
            .collect();
        format!("[{}]", list.join(", "))
    }
}
