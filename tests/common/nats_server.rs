//! Real nats-servers on loopback (Debian's nats-server): one server with a config of the
//! test's choosing, or a JetStream cluster of `n` nodes with cluster routes to each other
//! and a store directory each.

use super::{free_port, wait_until};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct NatsCluster {
    nodes: Vec<Option<Child>>,
    pub ports: Vec<u16>,
    confs: Vec<PathBuf>,
}

fn nats_server_bin() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

impl NatsCluster {
    /// Starts `n` JetStream nodes in one cluster; returns once every client port listens
    /// (JetStream's meta leader may still be being elected: create streams with retries).
    pub fn start(dir: &Path, n: usize) -> NatsCluster {
        let mut c = NatsCluster::start_later(dir, n);
        c.start_all();
        c
    }

    /// Configures `n` nodes without starting them ([`NatsCluster::start_all`]).
    pub fn start_later(dir: &Path, n: usize) -> NatsCluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut confs = Vec::new();
        for i in 0..n {
            let node = dir.join(format!("nats-{i}"));
            std::fs::create_dir_all(&node).unwrap();
            let others: Vec<String> = (0..n)
                .filter(|j| *j != i)
                .map(|j| format!("nats-route://127.0.0.1:{}", routes[j]))
                .collect();
            let conf = node.join("nats.conf");
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: ferrytest, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    ports[i],
                    node.join("js").display(),
                    routes[i],
                    others.join(", ")
                ),
            )
            .unwrap();
            confs.push(conf);
        }
        NatsCluster {
            nodes: (0..n).map(|_| None).collect(),
            ports,
            confs,
        }
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
    }

    pub fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} already running");
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&self.confs[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (apt-get install nats-server)");
        self.nodes[i] = Some(child);
        let port = self.ports[i];
        wait_until(Duration::from_secs(10), "nats-server to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGKILL node `i` (no goodbye to the cluster or its clients).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.ports[i])
    }

    /// Every node's url, as a TOML array.
    pub fn toml_urls(&self) -> String {
        let list: Vec<String> = (0..self.ports.len())
            .map(|i| format!("\"{}\"", self.url(i)))
            .collect();
        format!("[{}]", list.join(", "))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// One nats-server, killed when dropped.
pub struct NatsServer {
    child: Child,
    pub port: u16,
}

impl NatsServer {
    /// Starts a nats-server listening on a free loopback port, with `extra` config lines
    /// (authorization, tls, jetstream...); `dir` holds its config and store.
    pub fn start(dir: &Path, name: &str, extra: &str) -> NatsServer {
        let port = free_port();
        let node = dir.join(format!("nats-{name}"));
        std::fs::create_dir_all(&node).unwrap();
        let conf = node.join("nats.conf");
        let extra = extra.replace("$DIR", &node.display().to_string());
        std::fs::write(&conf, format!("listen: 127.0.0.1:{port}\n{extra}\n")).unwrap();
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (apt-get install nats-server)");
        wait_until(Duration::from_secs(10), "nats-server to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        NatsServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
