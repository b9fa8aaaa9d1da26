//! Reloading a running ferry (issue 14): `ferry reload` and SIGHUP with real clients
//! connected. Users, passwords and ACL rules change under them: only the clients whose
//! credentials or rights were removed are disconnected (MQTT 5 DISCONNECT 0x87, NATS
//! `-ERR 'Authorization Violation'`), everyone else keeps their connection and gets
//! exactly what the new rules allow. An invalid file changes nothing and is reported as
//! file:line:column; keys that need a restart are named.

mod common;

use common::nats_raw::NatsRaw;
use common::raw::Raw;
use common::raw5::Raw5;
use common::{Ferry, wait_until};
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);

fn config(dir: &Path, extra: &str) -> String {
    format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\npassword_file = \"{}\"\n{extra}",
        common::base_config(dir),
        dir.join("passwd").display()
    )
}

fn ferry_cmd(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The next PUBLISH's topic and payload on a 3.1.1 connection.
fn next_topic(raw: &mut Raw) -> (String, Vec<u8>) {
    let p = raw.next_publish(SECS);
    (p.topic.clone(), p.payload.to_vec())
}

#[test]
fn users_and_acls_change_under_connected_clients() {
    let dir = tempfile::tempdir().unwrap();
    let users = [
        ("alice", "wonderland"),
        ("bob", "builder"),
        ("dave", "diver"),
    ];
    common::password_file(dir.path(), &users);
    let f = Ferry::start(dir.path(), &config(dir.path(), ""));
    let file = dir.path().join("ferry.toml");

    // alice (MQTT 3.1.1) and bob (NATS) read sensors/#; dave (MQTT 5) only publishes.
    let login = |u, p| Some((u, p));
    let (mut alice, ack) =
        Raw::connect_login(f.mqtt, "alice-sub", true, login("alice", "wonderland"));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::Success);
    alice.subscribe(1, "sensors/#", QoS::AtMostOnce);
    let nats = f.nats.unwrap();
    let (mut bob, lines) =
        NatsRaw::connect(nats, r#"{"user":"bob","pass":"builder","verbose":false}"#);
    assert_eq!(lines, ["PONG"]);
    bob.send("SUB sensors.> 1\r\nPING\r\n");
    assert_eq!(bob.until_pong(SECS), ["PONG"]);
    let (mut dave, ack) = Raw5::connect_login(f.mqtt, "dave-pub", true, login("dave", "diver"));
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    let (mut publisher, ack) =
        Raw::connect_login(f.mqtt, "alice-pub", true, login("alice", "wonderland"));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::Success);

    publisher.publish("sensors/a", QoS::AtMostOnce, 0, false, b"1");
    assert_eq!(next_topic(&mut alice), ("sensors/a".into(), b"1".to_vec()));
    assert_eq!(bob.line(SECS).unwrap(), "MSG sensors.a 1 1");
    assert_eq!(bob.payload(1), b"1");

    // The new file: dave is gone, bob may no longer read sensors/#, alice may no longer
    // read sensors/secret (the rest of sensors/# still).
    // As `ferry passwd -D` does: dave's line goes, the others stay as they were (a
    // password hashed again would be a changed password).
    let pw = dir.path().join("passwd");
    let kept: String = std::fs::read_to_string(&pw)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("dave:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&pw, kept).unwrap();
    let acl = "[[acl]]\nuser = \"bob\"\nfilter = \"sensors/#\"\naction = \"subscribe\"\nallow = false\n\
               [[acl]]\nuser = \"alice\"\nfilter = \"sensors/secret\"\naction = \"subscribe\"\nallow = false\n";
    std::fs::write(&file, config(dir.path(), acl)).unwrap();
    let out = ferry_cmd(&["reload"], &file);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("reloaded: applied acl[0].user, acl[0].filter"),
        "{stdout}"
    );
    assert!(stdout.contains("auth.password_file"), "{stdout}");
    assert!(stdout.contains("1 subscribers disconnected"), "{stdout}");
    assert!(!stdout.contains("restart"), "{stdout}");

    // bob lost every right on his subscription: told, and closed.
    assert_eq!(bob.line(SECS).unwrap(), "-ERR 'Authorization Violation'");
    assert!(bob.closed_within(SECS));
    // dave's user is gone: closed at his next packet with 0x87 (Not authorized).
    dave.send(Packet5::PingReq(rumqttc::v5::mqttbytes::v5::PingReq));
    match dave.recv(SECS) {
        Some(Packet5::Disconnect(d)) => assert_eq!(
            d.reason_code,
            rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::NotAuthorized
        ),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
    assert!(dave.recv(SECS).is_none(), "closed after the DISCONNECT");
    // alice keeps her connection and gets exactly what she may read now.
    publisher.publish("sensors/secret", QoS::AtMostOnce, 0, false, b"2");
    publisher.publish("sensors/b", QoS::AtMostOnce, 0, false, b"3");
    assert_eq!(next_topic(&mut alice), ("sensors/b".into(), b"3".to_vec()));
    // A new login of the removed user is refused; bob may log in and is refused the subscription.
    let (_, ack) = Raw::connect_login(f.mqtt, "dave-2", true, login("dave", "diver"));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::NotAuthorized);
    let (mut bob2, _) =
        NatsRaw::connect(nats, r#"{"user":"bob","pass":"builder","verbose":false}"#);
    bob2.send("SUB sensors.> 1\r\nPING\r\n");
    assert_eq!(
        bob2.until_pong(SECS),
        [
            "-ERR 'Permissions Violation for Subscription to \"sensors.>\"'",
            "PONG"
        ]
    );
    assert_eq!(f.metric("ferry_config_reloads_total{result=\"ok\"}"), 1);

    // An invalid file: every problem with its line and column, nothing changes.
    std::fs::write(
        &file,
        format!(
            "{}[mqtt]\nmax_inflight = 0\n[log]\nlevle = \"debug\"\n",
            config(dir.path(), acl)
        )
        .replacen("[mqtt]\nlisten = \"127.0.0.1:0\"\n", "", 1),
    )
    .unwrap();
    let out = ferry_cmd(&["reload"], &file);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let name = file.display().to_string();
    assert!(
        stderr.contains(&format!("{name}:")) && stderr.contains("max_inflight"),
        "{stderr}"
    );
    assert!(stderr.contains("levle"), "{stderr}");
    assert!(stderr.contains("reload refused"), "{stderr}");
    assert_eq!(f.metric("ferry_config_reloads_total{result=\"error\"}"), 1);
    f.wait_log(&["config reload refused", "levle"], SECS);
    publisher.publish("sensors/c", QoS::AtMostOnce, 0, false, b"4");
    assert_eq!(next_topic(&mut alice), ("sensors/c".into(), b"4".to_vec()));

    // SIGHUP, with a listener address changed: applied as far as it can be, the address
    // named as waiting for a restart, the listener unchanged.
    std::fs::write(
        &file,
        config(dir.path(), acl).replace(
            "[nats]\nlisten = \"127.0.0.1:0\"",
            "[nats]\nlisten = \"127.0.0.1:1\"",
        ),
    )
    .unwrap();
    let pid = f.pid();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    f.wait_log(&["take effect only at a restart", "nats.listen"], SECS);
    wait_until(SECS, "the second reload counted", || {
        f.metric("ferry_config_reloads_total{result=\"ok\"}") == 2
    });
    let (mut bob3, lines) =
        NatsRaw::connect(nats, r#"{"user":"bob","pass":"builder","verbose":false}"#);
    assert_eq!(lines, ["PONG"]);
    bob3.send("PING\r\n");
    assert_eq!(bob3.until_pong(SECS), ["PONG"]);
    publisher.publish("sensors/d", QoS::AtMostOnce, 0, false, b"5");
    assert_eq!(next_topic(&mut alice), ("sensors/d".into(), b"5".to_vec()));
    assert!(!f.log_text().contains("wonderland"));
}

/// Forwarding changed by a reload while events flow (issue 14): a changed forward rule
/// takes effect for what is forwarded after it, the changed upstream's link starts again
/// from its cursor (every event arrives, in order per topic), a removed upstream's
/// backlog stays in the store and is delivered once the upstream is named again, and an
/// upstream the store has no lane for waits for a restart. No client is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_changes_while_events_flow() {
    use common::upstream::{Checker, Device, wait_for};
    use common::{Mosquitto, free_port};
    const N: usize = 2_000;
    const TOPICS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let _cloud = Mosquitto::start(&dir.path().join("a"), pa);
    let mut backup = Mosquitto::start(&dir.path().join("b"), pb);
    let upstream = |name: &str, port: u16| {
        format!(
            "[[upstream]]\nname = \"{name}\"\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"gw-{name}\"\n\
             backoff_min = \"50ms\"\nbackoff_max = \"200ms\"\nmax_rate = 500\n"
        )
    };
    let rule = |name: &str, filter: &str, template: &str| {
        format!(
            "[[forward]]\nupstream = \"{name}\"\nfilter = \"{filter}\"\ntopic = \"{template}\"\nqos = 1\n"
        )
    };
    let v1 = format!(
        "{}{}{}{}",
        upstream("cloud", pa),
        upstream("backup", pb),
        rule("cloud", "sensors/#", "site-a/{topic}"),
        rule("backup", "alarms/#", "{topic}")
    );
    let config = |dir: &Path, extra: &str| {
        format!(
            "{}[metrics]\nlisten = \"127.0.0.1:0\"\n{extra}",
            common::base_config(dir)
        )
    };
    let f = Ferry::start(dir.path(), &config(dir.path(), &v1));
    let file = dir.path().join("ferry.toml");
    let checker = Checker::connect(pa, "check-a", "#").await;
    let alarms = Checker::connect(pb, "check-b", "alarms/#").await;
    f.wait_log(&["upstream connected", "upstream=backup"], SECS);
    // The backup goes down with 10 alarms owed to it.
    backup.stop();
    let device = Device::connect(f.mqtt, "dev-reload").await;
    device
        .publish_acked(10, |i| format!("alarms/{i}"), SECS)
        .await;

    // Events flow while the file changes: the cloud's rule gets another template, the
    // backup upstream goes away.
    let publisher = tokio::spawn(async move {
        device
            .publish_acked(
                N,
                |i| format!("sensors/{}", i % TOPICS),
                Duration::from_secs(60),
            )
            .await;
        device
    });
    wait_for(
        Duration::from_secs(30),
        "part of the events forwarded",
        || checker.count() >= N / 4,
    )
    .await;
    let v2 = format!(
        "{}{}",
        upstream("cloud", pa),
        rule("cloud", "sensors/#", "site-b/{topic}")
    );
    std::fs::write(&file, config(dir.path(), &v2)).unwrap();
    let out = ferry_cmd(&["reload"], &file);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("upstream links restarted from their cursors: cloud"),
        "{stdout}"
    );
    assert!(
        stdout.contains("upstream links stopped (their backlog is kept): backup"),
        "{stdout}"
    );
    assert!(stdout.contains("forward[0].topic"), "{stdout}");
    assert!(!stdout.contains("needs a restart"), "{stdout}");
    let device = publisher.await.unwrap();

    // Every event arrives, in order per topic: under the old template up to where the
    // link was when it stopped, under the new one from there (an event in flight then
    // may arrive under both).
    wait_for(Duration::from_secs(60), "every event upstream", || {
        let got = checker.received.lock().unwrap();
        let distinct: std::collections::HashSet<&[u8]> =
            got.iter().map(|(_, p)| p.as_ref()).collect();
        distinct.len() >= N
    })
    .await;
    let got = checker.received.lock().unwrap().clone();
    let mut last = std::collections::HashMap::new();
    let (mut old, mut new) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for (topic, payload) in &got {
        let i: usize = std::str::from_utf8(payload).unwrap().parse().unwrap();
        let (site, local) = topic.split_once('/').unwrap();
        assert_eq!(local, format!("sensors/{}", i % TOPICS));
        match site {
            "site-a" => old.insert(i),
            "site-b" => new.insert(i),
            other => panic!("{other}"),
        };
        if let Some(prev) = last.insert(topic.clone(), i) {
            assert!(prev < i || new.contains(&i), "{topic}: {i} after {prev}");
        }
    }
    let k = old.len();
    eprintln!(
        "{} received: {k} under the old template, {} under the new",
        got.len(),
        new.len()
    );
    assert!((N / 4..N).contains(&k), "{k} under the old template");
    assert_eq!(old, (0..k).collect(), "the old template, a prefix");
    assert!(
        (k..N).all(|i| new.contains(&i)),
        "the new template, the rest"
    );
    assert!(
        new.iter().all(|i| *i + 400 >= k),
        "resent: only what was in flight"
    );
    assert_eq!(alarms.count(), 0);

    // An upstream the store has no lane for waits for a restart; the rest applies.
    let v3 = format!(
        "{}{}{}{}{}",
        upstream("cloud", pa),
        upstream("extra", pa),
        rule("cloud", "sensors/#", "site-b/{topic}"),
        rule("extra", "extra/#", "{topic}"),
        "[log]\nlevel = \"info\"\n"
    );
    std::fs::write(&file, config(dir.path(), &v3)).unwrap();
    let (stdout, _) = text(&ferry_cmd(&["reload"], &file));
    assert!(
        stdout.contains(
            "not applied: [[upstream]] and [[forward]]: the store has no lane for extra yet"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("needs a restart to take effect: upstream[1]"),
        "{stdout}"
    );

    // The backup named again (and up again): its 10 alarms, kept, arrive in order.
    backup.restart();
    alarms.close().await;
    let alarms = Checker::connect(pb, "check-b2", "alarms/#").await;
    // Subscribed once its own probe comes back.
    for _ in 0..50 {
        let _ = alarms
            .client
            .try_publish("alarms/probe", rumqttc::QoS::AtLeastOnce, false, "p");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if alarms.count() > 0 {
            break;
        }
    }
    assert!(alarms.count() > 0, "the checker subscribed");
    alarms.received.lock().unwrap().clear();
    std::fs::write(&file, config(dir.path(), &v1.replace("site-a", "site-b"))).unwrap();
    let (stdout, stderr) = text(&ferry_cmd(&["reload"], &file));
    assert!(
        stdout.contains("upstream links started: backup"),
        "{stdout}{stderr}"
    );
    alarms.wait_count(10, Duration::from_secs(30)).await;
    let got: Vec<String> = alarms
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(
        got,
        (0..10).map(|i| format!("alarms/{i}")).collect::<Vec<_>>()
    );
    // Nobody was disconnected: the device publishes on the same connection.
    device.publish_acked(1, |_| "sensors/0".into(), SECS).await;
    assert!(!f.log_text().contains("MQTT client disconnected"));
    device.abort();
}

/// Limits changed by a reload (issue 14): the connections already up keep the limits
/// they were accepted with and stay connected; the ones accepted after the reload get the
/// new ones; a connection cap lowered below the connections open closes none of them and
/// refuses new ones until enough have ended.
#[test]
fn limits_change_for_the_connections_after_the_reload() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n",
        common::base_config(dir.path())
    );
    let with = |mqtt: &str, nats: &str| {
        base.replace(
            "[mqtt]\nlisten = \"127.0.0.1:0\"\n",
            &format!("[mqtt]\nlisten = \"127.0.0.1:0\"\n{mqtt}"),
        )
        .replace(
            "[nats]\nlisten = \"127.0.0.1:0\"\n",
            &format!("[nats]\nlisten = \"127.0.0.1:0\"\n{nats}"),
        )
    };
    let f = Ferry::start(dir.path(), &with("max_inflight = 100\n", ""));
    let file = dir.path().join("ferry.toml");
    let nats = f.nats.unwrap();

    let (mut sub, ack) = Raw::connect(f.mqtt, "sub", true, 30);
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    sub.subscribe(1, "t/#", QoS::AtMostOnce);
    let (mut publisher, ack) = Raw5::connect(
        f.mqtt,
        "pub",
        true,
        rumqttc::v5::mqttbytes::v5::ConnectProperties::new(),
        None,
    );
    assert_eq!(ack.properties.unwrap().receive_max, Some(100));
    let (mut old_nats, lines) = NatsRaw::connect(nats, r#"{"verbose":false}"#);
    assert_eq!(lines, ["PONG"]);
    assert!(
        old_nats.info.contains("\"max_payload\":1048576"),
        "{}",
        old_nats.info
    );

    std::fs::write(
        &file,
        with(
            "max_connections = 1\nmax_inflight = 7\n",
            "max_payload = \"100B\"\nmax_pending = \"100B\"\n",
        ),
    )
    .unwrap();
    let out = ferry_cmd(&["reload"], &file);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for key in [
        "mqtt.max_connections",
        "mqtt.max_inflight",
        "nats.max_payload",
        "nats.max_pending",
    ] {
        assert!(stdout.contains(key), "{key} applied: {stdout}");
    }
    assert!(!stdout.contains("restart"), "{stdout}");

    // Both MQTT connections stay, over the new cap of one, and keep working.
    publisher.publish(
        "t/1",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        0,
        b"kept",
        None,
    );
    assert_eq!(next_topic(&mut sub), ("t/1".into(), b"kept".to_vec()));
    // No third one while two are open; none after one of them ends either (one left).
    let (_, refused) = Raw::connect_login(f.mqtt, "third", true, None);
    assert!(refused.is_err(), "refused at the cap: {refused:?}");
    drop(publisher);
    let (_, refused) = Raw::connect_login(f.mqtt, "fourth", true, None);
    assert!(refused.is_err(), "one still open, cap 1: {refused:?}");
    assert!(f.metric("ferry_connections_refused_total") >= 2);
    drop(sub);
    // Once none is open: admitted, with the new receive maximum.
    let mut admitted = None;
    wait_until(SECS, "a connection admitted under the new cap", || {
        let mut raw = Raw5::open(f.mqtt);
        raw.send(Packet5::Connect(
            rumqttc::v5::mqttbytes::v5::Connect {
                keep_alive: 30,
                client_id: "fifth".into(),
                clean_start: true,
                properties: Some(rumqttc::v5::mqttbytes::v5::ConnectProperties::new()),
            },
            None,
            None,
        ));
        match raw.recv(Duration::from_secs(2)) {
            Some(Packet5::ConnAck(a)) => {
                admitted = Some(a);
                true
            }
            _ => false,
        }
    });
    let ack = admitted.unwrap();
    assert_eq!(ack.properties.unwrap().receive_max, Some(7));

    // NATS: the connection from before keeps its 1 MiB max_payload; a new one is told
    // 100 B in INFO and held to it.
    let big = "x".repeat(200);
    old_nats.send(&format!("PUB t.big 200\r\n{big}\r\nPING\r\n"));
    assert_eq!(old_nats.until_pong(SECS), ["PONG"]);
    let (mut new_nats, lines) = NatsRaw::connect(nats, r#"{"verbose":false}"#);
    assert_eq!(lines, ["PONG"]);
    assert!(
        new_nats.info.contains("\"max_payload\":100,"),
        "{}",
        new_nats.info
    );
    new_nats.send(&format!("PUB t.big 200\r\n{big}\r\n"));
    assert_eq!(
        new_nats.line(SECS).as_deref(),
        Some("-ERR 'Maximum Payload Violation'")
    );
    assert!(new_nats.closed_within(SECS));
    assert_eq!(f.metric("ferry_config_reloads_total{result=\"ok\"}"), 1);
}
