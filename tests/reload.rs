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
