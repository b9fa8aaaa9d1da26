//! Local pub/sub without any upstream, hostile input, and config errors.

mod common;

use common::upstream::{Device, wait_for};
use common::{Ferry, base_config, forward_config};
use rumqttc::QoS;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn names(d: &Device) -> Vec<(String, String, u8)> {
    d.received
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| p.as_ref() != b"probe")
        .map(|(t, p, q)| (t.clone(), String::from_utf8_lossy(p).into_owned(), *q as u8))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_pubsub_qos0_and_qos1_without_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &base_config(dir.path()));
    let sub_plus = Device::connect(ferry.mqtt, "sub-plus").await;
    let sub_hash = Device::connect(ferry.mqtt, "sub-hash").await;
    sub_plus
        .client
        .subscribe("home/+/temp", QoS::AtLeastOnce)
        .await
        .unwrap();
    sub_hash
        .client
        .subscribe("home/#", QoS::AtMostOnce)
        .await
        .unwrap();
    // Overlapping filters on one client: one delivery at the higher QoS.
    sub_plus
        .client
        .subscribe("home/kitchen/#", QoS::AtMostOnce)
        .await
        .unwrap();
    let publisher = Device::connect(ferry.mqtt, "pub").await;

    // Wait until both subscriptions are live by probing with a QoS 0 message.
    wait_for(Duration::from_secs(10), "subscriptions active", || {
        let _ = publisher
            .client
            .try_publish("home/probe/temp", QoS::AtMostOnce, false, "probe");
        !sub_plus.received.lock().unwrap().is_empty()
            && !sub_hash.received.lock().unwrap().is_empty()
    })
    .await;
    sub_plus.received.lock().unwrap().clear();
    sub_hash.received.lock().unwrap().clear();

    publisher
        .client
        .publish("home/kitchen/temp", QoS::AtLeastOnce, false, "21.5")
        .await
        .unwrap();
    publisher
        .client
        .publish("home/kitchen/humidity", QoS::AtMostOnce, false, "40")
        .await
        .unwrap();
    publisher
        .client
        .publish("home/a/b/temp", QoS::AtLeastOnce, false, "deep")
        .await
        .unwrap();
    publisher
        .client
        .publish("office/x/temp", QoS::AtLeastOnce, false, "elsewhere")
        .await
        .unwrap();
    publisher
        .client
        .publish("home/hall/temp", QoS::AtMostOnce, false, "19")
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "deliveries", || {
        sub_hash.received.lock().unwrap().len() >= 4 && sub_plus.received.lock().unwrap().len() >= 3
    })
    .await;
    // A last marker through both proves nothing else is still on its way.
    publisher
        .client
        .publish("home/kitchen/end", QoS::AtLeastOnce, false, "end")
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "marker", || {
        names(&sub_plus).iter().any(|m| m.1 == "end")
            && names(&sub_hash).iter().any(|m| m.1 == "end")
    })
    .await;
    assert_eq!(
        names(&sub_plus),
        vec![
            ("home/kitchen/temp".into(), "21.5".into(), 1),
            ("home/kitchen/humidity".into(), "40".into(), 0),
            ("home/hall/temp".into(), "19".into(), 0),
            ("home/kitchen/end".into(), "end".into(), 0),
        ]
    );
    assert_eq!(
        names(&sub_hash),
        vec![
            ("home/kitchen/temp".into(), "21.5".into(), 0),
            ("home/kitchen/humidity".into(), "40".into(), 0),
            ("home/a/b/temp".into(), "deep".into(), 0),
            ("home/hall/temp".into(), "19".into(), 0),
            ("home/kitchen/end".into(), "end".into(), 0),
        ]
    );
    // Unsubscribe stops deliveries: after it, a message on the old filters and then a
    // marker on a new one; the marker arriving alone proves the first was not delivered
    // (deliveries from one publisher keep their order).
    sub_hash.client.unsubscribe("home/#").await.unwrap();
    sub_plus.client.unsubscribe("home/kitchen/#").await.unwrap();
    sub_plus.client.unsubscribe("home/+/temp").await.unwrap();
    sub_hash
        .client
        .subscribe("marker", QoS::AtLeastOnce)
        .await
        .unwrap();
    sub_plus
        .client
        .subscribe("marker", QoS::AtLeastOnce)
        .await
        .unwrap();
    // The marker subscriptions were sent after the unsubscribes on the same connections:
    // once markers arrive, the unsubscribes are in effect.
    wait_for(
        Duration::from_secs(10),
        "marker subscriptions active",
        || {
            let _ = publisher
                .client
                .try_publish("marker", QoS::AtMostOnce, false, "m");
            names(&sub_plus).iter().any(|m| m.0 == "marker")
                && names(&sub_hash).iter().any(|m| m.0 == "marker")
        },
    )
    .await;
    // Let any marker still in flight arrive, then start clean.
    publisher
        .client
        .publish("marker", QoS::AtLeastOnce, false, "sync")
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "sync marker", || {
        names(&sub_plus).iter().any(|m| m.1 == "sync")
            && names(&sub_hash).iter().any(|m| m.1 == "sync")
    })
    .await;
    sub_plus.received.lock().unwrap().clear();
    sub_hash.received.lock().unwrap().clear();
    publisher
        .client
        .publish("home/kitchen/temp", QoS::AtMostOnce, false, "gone")
        .await
        .unwrap();
    publisher
        .client
        .publish("marker", QoS::AtMostOnce, false, "last")
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "last marker", || {
        names(&sub_plus).iter().any(|m| m.1 == "last")
            && names(&sub_hash).iter().any(|m| m.1 == "last")
    })
    .await;
    for d in [&sub_plus, &sub_hash] {
        assert_eq!(
            names(d),
            vec![("marker".to_string(), "last".to_string(), 0)]
        );
    }
}

/// Sends `bytes` on a fresh connection and returns true if ferry closed it.
fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            // A signal to this test process (a child of another test ending) interrupts
            // a read that has a timeout, SA_RESTART or not.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("not closed by ferry: {e} ({:?})", e.kind());
                return false;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        base_config(dir.path()).replace("[mqtt]\n", "[mqtt]\nmax_packet_size = \"1KiB\"\n");
    let ferry = Ferry::start(dir.path(), &config);
    let bystander = Device::connect(ferry.mqtt, "bystander").await;
    bystander
        .client
        .subscribe("ok/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    let addr = ferry.mqtt;
    let garbage = tokio::task::spawn_blocking(move || {
        closed_after(addr, b"\xde\xad\xbe\xef garbage\r\n\x00\x01\x02")
    });
    assert!(garbage.await.unwrap(), "garbage closes the connection");
    ferry.wait_log(
        &["closed before CONNECT", "protocol error"],
        Duration::from_secs(10),
    );

    // PUBLISH (QoS 0, topic "a", payload "x") before CONNECT.
    let early = tokio::task::spawn_blocking(move || {
        closed_after(addr, &[0x30, 0x04, 0x00, 0x01, b'a', b'x'])
    });
    assert!(early.await.unwrap());
    ferry.wait_log(&["first packet"], Duration::from_secs(10));

    // A valid CONNECT, then a PUBLISH whose remaining length says 4 KiB: over the 1 KiB limit.
    let oversize = tokio::task::spawn_blocking(move || {
        let mut bytes = vec![
            0x10, 0x0f, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 3, b'b', b'i', b'g',
        ];
        bytes.extend_from_slice(&[0x30, 0x80, 0x20, 0x00, 0x01, b'a']);
        closed_after(addr, &bytes)
    });
    assert!(oversize.await.unwrap());
    ferry.wait_log(
        &["client_id=big", "exceeds the maximum packet size"],
        Duration::from_secs(10),
    );

    // The bystander is still served.
    let publisher = Device::connect(ferry.mqtt, "after").await;
    publisher
        .publish_acked(1, |_| "ok/still".into(), Duration::from_secs(10))
        .await;
    wait_for(Duration::from_secs(10), "bystander delivery", || {
        !bystander.received.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(bystander.received.lock().unwrap()[0].0, "ok/still");
}

#[test]
fn invalid_config_is_reported_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[mqtt]\nlisten = \"0.0.0.0:99999\"\n\n[[forward]]\nupstream = \"nowhere\"\nfilter = \"a/#/b\"\n",
    )
    .unwrap();
    for args in [vec!["check".to_string()], vec!["--config".to_string()]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(&args)
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let file = path.display().to_string();
        assert!(err.contains(&format!("{file}:2:10: ")), "{args:?}: {err}");
        assert!(err.contains(&format!("{file}:5:12: ")), "{args:?}: {err}");
        assert!(err.contains(&format!("{file}:6:10: ")), "{args:?}: {err}");
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[store]\ndir = \"/tmp/x\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("check")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"0.0.0.0:1883\""));
}

/// The address the metrics endpoint reported in the log.
fn metrics_addr(ferry: &Ferry) -> std::net::SocketAddr {
    ferry.wait_log(&["metrics endpoint ready"], Duration::from_secs(10));
    let line = ferry
        .log_text()
        .lines()
        .find(|l| l.contains("metrics endpoint ready"))
        .unwrap()
        .to_string();
    line[line.find("addr=").unwrap() + 5..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the first series of `name` in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<i64> {
    page.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// With the upstream down, the backlog gauges show what it is owed: events, and bytes
/// as events x the mean stored record size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_gauges_while_the_upstream_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (dead, _held) = common::dead_port();
    let config =
        base_config(dir.path()) + &forward_config(dead) + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let ferry = Ferry::start(dir.path(), &config);
    let addr = metrics_addr(&ferry);
    let publisher = Device::connect(ferry.mqtt, "backlog-pub").await;
    publisher
        .publish_acked(7, |i| format!("sensors/{i}"), Duration::from_secs(10))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
            .await
            .unwrap();
        if metric(&page, "ferry_upstream_backlog_events{upstream=\"cloud\"}") == Some(7) {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backlog of 7 in:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stored = metric(&page, "ferry_store_bytes").unwrap();
    assert_eq!(metric(&page, "ferry_store_events"), Some(7));
    assert!(stored > 7 * 8, "{page}");
    assert_eq!(
        metric(&page, "ferry_upstream_backlog_bytes{upstream=\"cloud\"}"),
        Some(stored / 7 * 7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()) + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let ferry = Ferry::start(dir.path(), &config);
    let addr = metrics_addr(&ferry);
    let publisher = Device::connect(ferry.mqtt, "metrics-pub").await;
    publisher
        .publish_acked(3, |_| "m/x".into(), Duration::from_secs(10))
        .await;
    let get = move |path: &'static str| http_get(addr, path);
    let health = tokio::task::spawn_blocking(move || get("/health"))
        .await
        .unwrap();
    assert!(
        health.starts_with("HTTP/1.1 200 OK")
            && health.contains("Content-Type: application/json")
            && health.ends_with("{\"status\":\"ok\",\"store\":\"ok\",\"upstreams\":[]}\n"),
        "{health}"
    );
    let metrics = tokio::task::spawn_blocking(move || get("/metrics"))
        .await
        .unwrap();
    for line in [
        "ferry_events_received_total 3",
        "ferry_connections{protocol=\"mqtt\"} 1",
        "ferry_memory_budget_bytes{part=\"total\"} 33554432",
        "ferry_store_commit_seconds_count",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()).replace("[mqtt]\n", "[mqtt]\nmax_connections = 1\n");
    let ferry = Ferry::start(dir.path(), &config);
    let first = Device::connect(ferry.mqtt, "only-one").await;
    let addr = ferry.mqtt;
    let refused = tokio::task::spawn_blocking(move || {
        closed_after(
            addr,
            &[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 0],
        )
    });
    assert!(refused.await.unwrap(), "the second connection is closed");
    ferry.wait_log(
        &["MQTT connection refused: max_connections reached"],
        Duration::from_secs(10),
    );
    first
        .client
        .subscribe("cap/x", QoS::AtLeastOnce)
        .await
        .unwrap();
    first
        .publish_acked(1, |_| "cap/y".into(), Duration::from_secs(10))
        .await;
}

/// An HTTP request on the MQTT port is closed and logged as what it is; the board
/// profile in use is named in the start line.
#[test]
fn an_http_request_on_the_mqtt_port_is_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("board = \"rpi-4\"\n{}", base_config(dir.path()));
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(
        &["ferry starting", "board=\"rpi-4\""],
        Duration::from_secs(5),
    );
    assert!(closed_after(
        ferry.mqtt,
        b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n"
    ));
    ferry.wait_log(
        &["an HTTP request on the MQTT port"],
        Duration::from_secs(5),
    );
}

/// A flood of connections that never send CONNECT (here 400 malformed first packets)
/// costs the log at most one line a second, each saying how many it stood for; every one
/// is still counted.
#[test]
fn a_flood_of_bad_connections_stays_quiet_in_the_log() {
    const N: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n",
        base_config(dir.path())
    );
    let ferry = Ferry::start(dir.path(), &config);
    let started = std::time::Instant::now();
    for _ in 0..N {
        // PUBLISH before CONNECT: a protocol error.
        assert!(closed_after(ferry.mqtt, b"\x30\x05\x00\x01a\x00\x00"));
    }
    common::wait_until(Duration::from_secs(10), "every one counted", || {
        ferry.metric("ferry_protocol_errors_total") == N as u64
    });
    let seconds = started.elapsed().as_secs() + 1;
    let log = ferry.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("closed before CONNECT"))
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines.len() as u64 <= seconds + 1,
        "{} lines in {seconds} s",
        lines.len()
    );
    let told: u64 = lines
        .iter()
        .map(|l| {
            l.split("suppressed=")
                .nth(1)
                .and_then(|v| v.split(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1
        })
        .sum();
    assert!(told <= N as u64, "{told} told of {N}");
}

/// A bounded flood of clients that each make ferry write a line (they connect and send a
/// bad packet, publish where the ACL says no, or give a wrong password), over MQTT and
/// NATS: each kind of line is logged at most its burst per 10 s window, the rest counted
/// in one summary line, so the log stays under the bound docs/operations.md states
/// (`ferry::logging::MAX_LINES_PER_MINUTE`), while /metrics counts every client.
#[test]
fn a_flood_of_bad_clients_keeps_the_log_under_its_bound() {
    const N: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let passwd = common::password_file(dir.path(), &[("alice", "wonderland")]);
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\npassword_file = \"{}\"\nallow_anonymous = true\n\
         [[acl]]\nfilter = \"secret/#\"\nallow = false\n",
        base_config(dir.path()),
        passwd.display()
    );
    let ferry = Ferry::start(dir.path(), &config);
    let before = ferry.log_text().len();
    let started = std::time::Instant::now();
    let connect = |id: &str, login: &[u8]| {
        // MQTT 3.1.1 CONNECT, clean, keep-alive 60, with an optional user/password tail.
        let flags = if login.is_empty() { 0x02 } else { 0xc2 };
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(login);
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    };
    let wrong: &[u8] = b"\x00\x05alice\x00\x05guess";
    for i in 0..N {
        // Connects, then sends a reserved packet type: connected + disconnected lines.
        let mut bytes = connect(&format!("bad-{i}"), b"");
        bytes.extend_from_slice(b"\xf0\x00");
        assert!(closed_after(ferry.mqtt, &bytes));
        // Publishes where the ACL says no (QoS 0: ferry drops it, and logs), then garbage.
        let mut bytes = connect(&format!("denied-{i}"), b"");
        bytes.extend_from_slice(b"\x30\x0a\x00\x08secret/x");
        bytes.extend_from_slice(b"\xf0\x00");
        assert!(closed_after(ferry.mqtt, &bytes));
        // NATS: connects, then an unknown verb.
        assert!(closed_after(
            ferry.nats.unwrap(),
            b"CONNECT {}\r\nBOGUS\r\n"
        ));
    }
    eprintln!(
        "connections done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for i in 0..8 {
        // A wrong password (throttled after a few: refused all the same).
        assert!(closed_after(
            ferry.mqtt,
            &connect(&format!("guess-{i}"), wrong)
        ));
    }
    common::wait_until(Duration::from_secs(20), "every bad client counted", || {
        ferry.metric("ferry_protocol_errors_total") == 3 * N as u64
            && ferry.metric("ferry_acl_denied_total{action=\"publish\"}") == N as u64
    });
    let seconds = started.elapsed().as_secs_f64();
    let log = ferry.log_text();
    let flood = &log[before..];
    // Every window the flood touched (and the one the summary lands in).
    let windows = (seconds / ferry::logging::WINDOW_SECS as f64).ceil() as usize + 2;
    for (what, burst) in [
        ("MQTT client connected", 20),
        ("MQTT client disconnected", 20),
        ("NATS client connected", 20),
        ("PUBLISH refused by acl", 5),
        ("MQTT CONNECT refused", 5),
    ] {
        let lines = flood.lines().filter(|l| l.contains(what)).count();
        assert!(lines >= 1, "{what}: logged at all");
        // MQTT and NATS connections share one budget; each kind at most its burst.
        assert!(
            lines <= burst * windows,
            "{what}: {lines} lines in {seconds:.1} s"
        );
    }
    let bytes = flood.len();
    let lines = flood.lines().count();
    let allowed = ferry::logging::MAX_LINES_PER_MINUTE as usize * windows.div_ceil(6);
    assert!(
        lines <= allowed + 4 * windows,
        "{lines} lines, {bytes} bytes in {seconds:.1} s"
    );
    eprintln!(
        "{} bad clients in {seconds:.1} s: {lines} log lines, {bytes} bytes ({} before the limits)",
        3 * N + 8,
        (3 * N + 8) * 2
    );
}
