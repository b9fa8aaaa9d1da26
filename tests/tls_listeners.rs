//! ferry's own TLS listeners with real clients: mosquitto_pub/sub over `tls_listen`
//! (server certificate from a CA made by the test, passwords, client certificates naming
//! the user), a client stalling in the handshake, and NATS `tls = "required"` /
//! `"optional"` with async-nats (upgrade after INFO, and TLS-first).

mod common;

use common::nats_raw::NatsRaw;
use common::pki::{Ca, Issued};
use common::{Ferry, wait_until};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECS: Duration = Duration::from_secs(10);

struct Setup {
    ferry: Ferry,
    ca: Ca,
    tls: SocketAddr,
}

/// ferry with an MQTT TLS listener, `tls_extra` in [tls] and `auth` in [auth].
fn start(dir: &Path, tls_extra: &str, auth: &str, nats_tls: &str) -> Setup {
    let ca = Ca::new(dir, "ferry");
    let server = ca.server();
    let passwd = dir.join("passwd");
    let hash = ferry::policy::passwd::hash_password(b"wonderland").unwrap();
    std::fs::write(&passwd, format!("alice:{hash}\n")).unwrap();
    let config = format!(
        "[mqtt]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\nconnect_timeout = \"500ms\"\n\
         [nats]\nlisten = \"127.0.0.1:0\"\ntls = \"{nats_tls}\"\n\
         [store]\ndir = \"{store}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{tls_extra}\n\
         [auth]\npassword_file = \"{passwd}\"\n{auth}\n\
         [[acl]]\nuser = \"device-*\"\nfilter = \"devices/%u/#\"\naction = \"all\"\nallow = true\n\
         [[acl]]\nuser = \"device-*\"\nfilter = \"#\"\naction = \"all\"\nallow = false\n",
        store = dir.join("store").display(),
        cert = server.cert.display(),
        key = server.key.display(),
        passwd = passwd.display(),
    );
    let ferry = Ferry::start(dir, &config);
    let tls = ferry
        .addr_of("MQTT TLS listener ready")
        .expect("TLS listener address");
    Setup { ferry, ca, tls }
}

/// mosquitto_sub waiting for one message, started before the publish.
fn sub_one(port: u16, args: &[&str]) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "-C",
            "1",
            "-W",
            "10",
            "-v",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)")
}

fn pub_one(port: u16, args: &[&str]) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1"])
        .args(args)
        .output()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)")
}

fn output(child: std::process::Child) -> (bool, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// mosquitto client arguments: trust `ca`, log in as alice with `password`, then `rest`.
fn alice<'a>(ca: &'a str, password: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--cafile", ca, "-u", "alice", "-P", password];
    args.extend_from_slice(rest);
    args
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn mosquitto_clients_over_tls_with_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "", "", "off");
    let ca = path(&s.ca.cert);
    let port = s.tls.port();
    let sub = sub_one(
        port,
        &alice(&ca, "wonderland", &["-t", "tls/#", "-i", "tls-sub"]),
    );
    s.ferry.wait_log(
        &[
            "client_id=tls-sub",
            "transport=\"tls\"",
            "MQTT client connected",
        ],
        SECS,
    );
    let out = pub_one(
        port,
        &alice(
            &ca,
            "wonderland",
            &[
                "-t", "tls/a", "-m", "over tls",
                // Retained: the subscriber gets it even if its SUBSCRIBE lands after this.
                "-r",
            ],
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, stdout, stderr) = output(sub);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "tls/a over tls\n");
    // A wrong password over TLS is refused like over TCP.
    let out = pub_one(port, &alice(&ca, "nope", &["-t", "tls/a", "-m", "x"]));
    assert!(!out.status.success());
    // A client that does not trust ferry's CA fails the handshake.
    let other = Ca::new(dir.path(), "other");
    let out = pub_one(
        port,
        &[
            "--cafile",
            &path(&other.cert),
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-t",
            "tls/a",
            "-m",
            "x",
        ],
    );
    assert!(!out.status.success());
}

#[test]
fn client_certificates_name_the_user_and_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let ca_extra = |dir: &Path| -> (Ca, Issued) {
        let clients = Ca::new(dir, "clients");
        let dev = clients.client("device-1", "device-1.example");
        (clients, dev)
    };
    let (clients, dev) = ca_extra(dir.path());
    let tls_extra = format!(
        "client_ca_file = \"{}\"\nrequire_client_cert = true\nidentity_from_cert = \"cn\"",
        clients.cert.display()
    );
    let s = start(dir.path(), &tls_extra, "", "off");
    let ca = path(&s.ca.cert);
    let port = s.tls.port();
    let cert_args = [
        "--cafile",
        &ca,
        "--cert",
        &path(&dev.cert),
        "--key",
        &path(&dev.key),
    ];
    let mut args = cert_args.to_vec();
    args.extend(["-t", "devices/device-1/#", "-i", "cert-sub"]);
    let sub = sub_one(port, &args);
    s.ferry.wait_log(
        &[
            "client_id=cert-sub",
            "user=device-1",
            "MQTT client connected",
        ],
        SECS,
    );
    // The certificate is the login: its user may publish in devices/device-1/ only.
    let mut args = cert_args.to_vec();
    // Retained: the subscriber gets it even if its SUBSCRIBE lands after this.
    args.extend(["-t", "devices/device-1/t", "-m", "21.5", "-r"]);
    let out = pub_one(port, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, stdout, stderr) = output(sub);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "devices/device-1/t 21.5\n");
    let before = s.ferry.metric("ferry_tls_handshake_failures_total");
    // Without a certificate, or with one from another CA: no connection.
    let out = pub_one(port, &alice(&ca, "wonderland", &["-t", "x", "-m", "x"]));
    assert!(!out.status.success());
    let rogue_ca = Ca::new(dir.path(), "rogue");
    let rogue = rogue_ca.client("device-1", "device-1.example");
    let out = pub_one(
        port,
        &[
            "--cafile",
            &ca,
            "--cert",
            &path(&rogue.cert),
            "--key",
            &path(&rogue.key),
            "-t",
            "x",
            "-m",
            "x",
        ],
    );
    assert!(!out.status.success());
    wait_until(SECS, "handshake failures counted", || {
        s.ferry.metric("ferry_tls_handshake_failures_total") >= before + 2
    });
}

#[test]
fn a_client_stalling_in_the_handshake_is_cut_off_by_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "", "", "off");
    let mut stalled = TcpStream::connect(s.tls).unwrap();
    let started = Instant::now();
    stalled.set_read_timeout(Some(SECS)).unwrap();
    let mut buf = [0u8; 16];
    let n = stalled.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Meanwhile other clients were served: the plain listener answers at once.
    let ok = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &s.ferry.mqtt.port().to_string()])
        .args(["-u", "alice", "-P", "wonderland", "-t", "x", "-m", "y"])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_tls_required_upgrade_and_tls_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "", "", "required");
    let nats = s.ferry.nats.unwrap();
    // A plain client learns TLS is required, and is closed when it goes on in the clear.
    let mut plain = NatsRaw::open(nats);
    assert!(
        plain.info.contains("\"tls_required\":true"),
        "{}",
        plain.info
    );
    plain.send("CONNECT {\"user\":\"alice\",\"pass\":\"wonderland\"}\r\n");
    assert_eq!(
        plain.line(SECS).as_deref(),
        Some("-ERR 'Secure Connection - TLS Required'")
    );
    assert!(plain.closed_within(SECS));
    for tls_first in [false, true] {
        let mut opts =
            async_nats::ConnectOptions::with_user_and_password("alice".into(), "wonderland".into())
                .add_root_certificates(s.ca.cert.clone())
                .require_tls(true);
        if tls_first {
            opts = opts.tls_first();
        }
        let client = opts
            .connect(format!("tls://localhost:{}", nats.port()))
            .await
            .unwrap_or_else(|e| panic!("tls_first={tls_first}: {e}"));
        let mut sub = client.subscribe("secure.x").await.unwrap();
        client.publish("secure.x", "sealed".into()).await.unwrap();
        let m = tokio::time::timeout(SECS, futures_util::StreamExt::next(&mut sub))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&m.payload[..], b"sealed", "tls_first={tls_first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_tls_optional_serves_both() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "", "", "optional");
    let nats = s.ferry.nats.unwrap();
    let (_, lines) = NatsRaw::connect(
        nats,
        r#"{"verbose":false,"user":"alice","pass":"wonderland"}"#,
    );
    assert_eq!(lines, ["PONG"]);
    let c = NatsRaw::open(nats);
    assert!(c.info.contains("\"tls_available\":true"), "{}", c.info);
    let client =
        async_nats::ConnectOptions::with_user_and_password("alice".into(), "wonderland".into())
            .add_root_certificates(s.ca.cert.clone())
            .require_tls(true)
            .connect(format!("tls://localhost:{}", nats.port()))
            .await
            .unwrap();
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_client_certificates_are_required_and_name_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let clients = Ca::new(dir.path(), "nclients");
    let dev = clients.client("device-2", "device-2.example");
    let tls_extra = format!(
        "client_ca_file = \"{}\"\nrequire_client_cert = true\nidentity_from_cert = \"san\"",
        clients.cert.display()
    );
    let s = start(dir.path(), &tls_extra, "", "required");
    let url = format!("tls://localhost:{}", s.ferry.nats.unwrap().port());
    // Without a certificate the handshake fails: no connection.
    let refused = async_nats::ConnectOptions::new()
        .add_root_certificates(s.ca.cert.clone())
        .require_tls(true)
        .connect(&url);
    assert!(tokio::time::timeout(SECS, refused).await.unwrap().is_err());
    // With one, it connects with no password, and its first DNS SAN is the user.
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(s.ca.cert.clone())
        .add_client_certificate(dev.cert.clone(), dev.key.clone())
        .require_tls(true)
        .connect(&url)
        .await
        .unwrap();
    client.flush().await.unwrap();
    s.ferry
        .wait_log(&["user=device-2.example", "NATS client connected"], SECS);
}

/// A certificate renewed in place (another CA's files copied over the ones `[tls]` names,
/// as certbot replaces its files) is taken by `ferry reload` for the handshakes that
/// follow: a client trusting only the old CA is refused, one trusting the new CA gets
/// in, and a subscriber connected before the renewal keeps its connection and gets the
/// message published through the new certificate.
#[test]
fn a_reload_takes_a_certificate_renewed_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "", "", "off");
    let old_ca = path(&s.ca.cert);
    let port = s.tls.port();
    let sub = sub_one(
        port,
        &alice(&old_ca, "wonderland", &["-t", "renew/#", "-i", "before"]),
    );
    s.ferry
        .wait_log(&["client_id=before", "MQTT client connected"], SECS);

    let renewed = Ca::new(dir.path(), "renewed");
    let next = renewed.server();
    let live = s.ca.server();
    std::fs::copy(&next.cert, &live.cert).unwrap();
    std::fs::copy(&next.key, &live.key).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["reload", "--config"])
        .arg(dir.path().join("ferry.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tls.cert_file, tls.key_file"), "{stdout}");

    let refused = pub_one(
        port,
        &alice(&old_ca, "wonderland", &["-t", "renew/old", "-m", "x"]),
    );
    assert!(
        !refused.status.success(),
        "the old CA no longer verifies ferry"
    );
    let new_ca = path(&renewed.cert);
    let sent = pub_one(
        port,
        &alice(
            &new_ca,
            "wonderland",
            &["-t", "renew/a", "-m", "through the new certificate"],
        ),
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let (ok, stdout, stderr) = output(sub);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "renew/a through the new certificate\n");
}
