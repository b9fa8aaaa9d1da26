//! `ferry status` against a running ferry (issue 14): through the admin socket, with
//! `/metrics` off, the human summary and `--json` give the connections by protocol and
//! transport, the events in, the store, and each upstream's state and backlog.

mod common;

use common::raw::Raw;
use common::{Ferry, dead_port, forward_config, wait_until};
use rumqttc::QoS;
use std::process::Command;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);
const N: usize = 25;

#[test]
fn status_tells_how_a_running_ferry_is_doing() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _held) = dead_port();
    // No [metrics]: the admin socket is all `ferry status` needs.
    let config = format!(
        "{}[gateway]\nid = \"gw-status\"\n{}",
        common::base_config(dir.path()),
        forward_config(port)
    );
    let f = Ferry::start(dir.path(), &config);
    let file = dir.path().join("ferry.toml");
    let status = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.arg("status").arg("--config").arg(&file);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let (mut device, ack) = Raw::connect(f.mqtt, "dev-status", true, 30);
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    for i in 0..N {
        device.publish(
            "sensors/t",
            QoS::AtLeastOnce,
            (i + 1) as u16,
            false,
            b"21.5",
        );
        assert!(matches!(device.recv(SECS), Ok(rumqttc::Packet::PubAck(_))));
    }
    let mut v = serde_json::Value::Null;
    wait_until(SECS, "the backlog in the status", || {
        v = serde_json::from_str(&status(true)).unwrap();
        v["upstreams"][0]["backlog_events"] == N
    });
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["gateway"], "gw-status");
    assert_eq!(v["connections"]["mqtt"]["tcp"], 1);
    assert_eq!(v["connections"]["mqtt"]["tls"], 0);
    assert_eq!(v["connections"]["nats"]["tcp"], 0);
    assert_eq!(v["events"]["received"], N);
    assert_eq!(v["store"]["usable"], true);
    assert_eq!(v["store"]["events"], N);
    assert_eq!(v["store"]["dead_letters"], 0);
    let up = &v["upstreams"][0];
    assert_eq!(up["name"], "cloud");
    assert_eq!(up["state"], "down");
    assert_eq!(up["forwarded"], 0);
    assert_eq!(up["last_ack_age_seconds"], serde_json::Value::Null);
    assert!(up["backlog_bytes"].as_u64().unwrap() > 0);

    let text = status(false);
    assert!(
        text.starts_with(&format!(
            "ferry {} on gateway gw-status",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(
        text.contains("connections: MQTT 1 (tcp 1, tls 0, ws 0, wss 0), NATS 0"),
        "{text}"
    );
    assert!(
        text.contains(&format!("upstream cloud: down, backlog {N} events")),
        "{text}"
    );
    assert!(
        text.contains("last acknowledged never since start"),
        "{text}"
    );

    // The socket is the service's user's and group's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("store/ferry.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    // Without a ferry on the other end: exit 3 and a message saying so.
    drop(device);
    f.terminate();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["status", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no answer on the admin socket"));
}
