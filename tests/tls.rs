//! Forwarding over `mqtts://` to a real mosquitto with a TLS listener, its certificate
//! signed by a private CA made at test time (openssl CLI); ferry trusts it via `ca_file`.

mod common;

use common::upstream::{Checker, Device, assert_exact_in_order};
use common::{Ferry, base_config, free_port, wait_until};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOPICS: usize = 4;

fn topic(i: usize) -> String {
    format!("sensors/{}", i % TOPICS)
}

/// A CA (`<name>-ca.pem`) and a server certificate it signed for localhost/127.0.0.1.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca = common::pki::Ca::new(dir, name);
    let server = ca.server();
    Pki {
        ca: ca.cert,
        cert: server.cert,
        key: server.key,
    }
}

/// mosquitto with a plain listener (for the test's checker) and a TLS one (for ferry).
struct TlsMosquitto {
    child: Child,
    plain: u16,
    tls: u16,
}

impl TlsMosquitto {
    fn start(dir: &Path, pki: &Pki) -> TlsMosquitto {
        TlsMosquitto::start_with(dir, pki, "")
    }

    /// With `tls_extra` lines after the TLS listener's (e.g. `require_certificate true`).
    fn start_with(dir: &Path, pki: &Pki, tls_extra: &str) -> TlsMosquitto {
        let (plain, tls) = (free_port(), free_port());
        let conf = dir.join("mosquitto-tls.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous true\nuser root\n\
                 persistence true\npersistence_location {dir}/\nmax_queued_messages 0\n\
                 listener {plain} 127.0.0.1\n\
                 listener {tls} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n{tls_extra}",
                dir = dir.display(),
                ca = pki.ca.display(),
                cert = pki.cert.display(),
                key = pki.key.display(),
            ),
        )
        .unwrap();
        let bin = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        for port in [plain, tls] {
            wait_until(Duration::from_secs(10), "mosquitto to listen", || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        TlsMosquitto { child, plain, tls }
    }
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mqtts_config(dir: &Path, url: &str, ca: &Path) -> String {
    base_config(dir)
        + &format!(
            "[[upstream]]\nname = \"cloud\"\nurl = \"{url}\"\nclient_id = \"gw-tls\"\n\
             ca_file = \"{}\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
             [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\n\
             topic = \"site-a/{{topic}}\"\nqos = 1\n",
            ca.display()
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_forwarding_with_ca_file_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "good");
    let mosq = TlsMosquitto::start(dir.path(), &pki);
    Checker::register(mosq.plain, "checker", "site-a/#").await;
    let checker = Checker::connect(mosq.plain, "checker", "site-a/#").await;
    // By name, so the certificate's DNS name is what is verified.
    let url = format!("mqtts://localhost:{}", mosq.tls);
    let ferry = Ferry::start(dir.path(), &mqtts_config(dir.path(), &url, &pki.ca));
    ferry.wait_log(&["upstream connected", "mqtts://"], Duration::from_secs(20));

    let device = Device::connect(ferry.mqtt, "dev-tls").await;
    device
        .publish_acked(5_000, topic, Duration::from_secs(120))
        .await;
    checker.wait_count(5_000, Duration::from_secs(120)).await;
    let marker = Device::connect(ferry.mqtt, "dev-marker").await;
    marker
        .publish_acked(1, |_| "sensors/marker".into(), Duration::from_secs(20))
        .await;
    checker.wait_count(5_001, Duration::from_secs(20)).await;
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got[..5_000], 5_000, TOPICS);
    assert_eq!(got.len(), 5_001, "no duplicates");
    assert_eq!(ferry.terminate(), Some(0), "graceful exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = make_pki(dir.path(), "server");
    let other = make_pki(dir.path(), "other");
    let mosq = TlsMosquitto::start(dir.path(), &server);
    Checker::register(mosq.plain, "checker", "site-a/#").await;
    let checker = Checker::connect(mosq.plain, "checker", "site-a/#").await;
    let url = format!("mqtts://127.0.0.1:{}", mosq.tls);
    // Trusts a different CA than the one that signed the server's certificate.
    let ferry = Ferry::start(dir.path(), &mqtts_config(dir.path(), &url, &other.ca));
    ferry.wait_log(&["upstream down", "cloud"], Duration::from_secs(20));
    assert!(
        ferry.log_text().to_lowercase().contains("certificate"),
        "the reason names the certificate:\n{}",
        ferry.log_text()
    );
    let device = Device::connect(ferry.mqtt, "dev-untrusted").await;
    device
        .publish_acked(10, topic, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(checker.count(), 0, "nothing crosses an untrusted link");
    assert!(!ferry.log_text().contains("upstream connected"));
}

/// A CA named `name` and a mosquitto whose TLS listener has a server certificate it
/// signed and requires client certificates it signed (`require_certificate true`).
fn mtls_upstream(dir: &Path, name: &str) -> (common::pki::Ca, TlsMosquitto) {
    let ca = common::pki::Ca::new(dir, name);
    let server = ca.server();
    let pki = Pki {
        ca: ca.cert.clone(),
        cert: server.cert,
        key: server.key,
    };
    let mosq = TlsMosquitto::start_with(dir, &pki, "require_certificate true\n");
    (ca, mosq)
}

fn mtls_config(dir: &Path, url: &str, ca: &Path, client: &common::pki::Issued) -> String {
    mqtts_config(dir, url, ca).replace(
        "backoff_min",
        &format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\nalpn = [\"x-amzn-mqtt-ca\", \"mqtt\"]\nbackoff_min",
            client.cert.display(),
            client.key.display()
        ),
    )
}

/// An upstream that requires a client certificate (mosquitto `require_certificate true`),
/// as AWS IoT Core does: ferry presents `cert_file`/`key_file` (and offers ALPN, which
/// mosquitto ignores) and forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_upstream_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, mosq) = mtls_upstream(dir.path(), "mtls");
    Checker::register(mosq.plain, "checker", "site-a/#").await;
    let checker = Checker::connect(mosq.plain, "checker", "site-a/#").await;
    let client = ca.client("gateway-7", "gateway-7.example");
    let url = format!("mqtts://localhost:{}", mosq.tls);
    let ferry = Ferry::start(
        dir.path(),
        &mtls_config(dir.path(), &url, &ca.cert, &client),
    );
    ferry.wait_log(&["upstream connected", "mqtts://"], Duration::from_secs(20));
    let device = Device::connect(ferry.mqtt, "dev-mtls").await;
    device
        .publish_acked(500, topic, Duration::from_secs(60))
        .await;
    checker.wait_count(500, Duration::from_secs(60)).await;
    let got = checker.received.lock().unwrap().clone();
    assert_exact_in_order(&got, 500, TOPICS);
    assert_eq!(ferry.terminate(), Some(0));
}

/// A client certificate the upstream does not trust keeps the link down and every event
/// stored (shown by `ferry store info` once ferry is stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_the_upstream_does_not_trust_keeps_events_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, mosq) = mtls_upstream(dir.path(), "trusted");
    Checker::register(mosq.plain, "checker", "site-a/#").await;
    let checker = Checker::connect(mosq.plain, "checker", "site-a/#").await;
    let rogue = common::pki::Ca::new(dir.path(), "rogue").client("gateway-7", "gateway-7.example");
    let url = format!("mqtts://localhost:{}", mosq.tls);
    let ferry = Ferry::start(dir.path(), &mtls_config(dir.path(), &url, &ca.cert, &rogue));
    ferry.wait_log(&["upstream down", "cloud"], Duration::from_secs(20));
    let device = Device::connect(ferry.mqtt, "dev-rogue").await;
    device
        .publish_acked(10, topic, Duration::from_secs(20))
        .await;
    device.abort();
    assert!(
        !ferry.log_text().contains("upstream connected"),
        "{}",
        ferry.log_text()
    );
    assert_eq!(ferry.terminate(), Some(0));
    assert_eq!(
        checker.count(),
        0,
        "nothing crosses without a trusted certificate"
    );
    let info = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["store", "info", "--json"])
        .arg(dir.path().join("store"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["upstreams"][0]["backlog"], 10, "{info}");
}
