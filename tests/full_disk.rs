//! A real full disk (a small tmpfs): ingest is refused while the disk is full, the
//! broker keeps serving, and everything recovers by itself once space returns; every
//! event acknowledged as stored then reaches the upstream.

mod common;

use common::raw5::Raw5;
use common::upstream::Checker;
use common::{Ferry, Mosquitto, base_config, forward_config, free_port};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_refuses_ingest_then_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("disk");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mount)
        .status();
    assert!(
        matches!(mounted, Ok(s) if s.success()),
        "this test mounts a small tmpfs to fill a real disk: run it as root (CI does)"
    );
    let _guard = Tmpfs(mount.clone());
    // Most of the disk is taken by something else.
    std::fs::write(mount.join("filler"), vec![0u8; 5 << 20]).unwrap();

    let port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    mosq.stop();
    let config = base_config(dir.path()).replace(
        &dir.path().join("store").display().to_string(),
        &mount.join("store").display().to_string(),
    ) + &forward_config(port);
    let ferry = Ferry::start(dir.path(), &config);
    let addr = ferry.mqtt;

    let (acked, refused) = tokio::task::spawn_blocking(move || {
        let mut dev = Raw5::simple(addr, "filler-dev");
        let payload = vec![7u8; 8 * 1024];
        let mut acked = Vec::new();
        let mut refused = 0;
        for i in 0..2000u16 {
            dev.publish(
                &format!("sensors/{}", i % 4),
                QoS::AtLeastOnce,
                i + 1,
                &payload,
                None,
            );
            match dev.recv(Duration::from_secs(5)) {
                Some(Packet::PubAck(a)) if a.reason == PubAckReason::Success => acked.push(i),
                Some(Packet::PubAck(_)) => {
                    refused += 1;
                    if refused >= 3 {
                        break;
                    }
                }
                // A stall (the store waits for the disk) also stops ingest.
                _ => break,
            }
        }
        (acked, refused)
    })
    .await
    .unwrap();
    eprintln!(
        "full disk: {} acknowledged before the disk filled, {refused} refused",
        acked.len()
    );
    assert!(acked.len() < 2000, "the disk never filled up");
    ferry.wait_log(&["store commit failed"], Duration::from_secs(10));

    // Everyone else is still served while the disk is full.
    let addr = ferry.mqtt;
    tokio::task::spawn_blocking(move || {
        let mut sub = Raw5::simple(addr, "bystander-sub");
        sub.subscribe(1, "local/#", QoS::AtMostOnce);
        let mut publ = Raw5::simple(addr, "bystander-pub");
        publ.publish("local/x", QoS::AtMostOnce, 0, b"still routing", None);
        assert_eq!(
            &sub.next_publish(Duration::from_secs(10)).payload[..],
            b"still routing"
        );
    })
    .await
    .unwrap();

    // Space returns: ingest works again without any restart.
    std::fs::remove_file(mount.join("filler")).unwrap();
    let addr = ferry.mqtt;
    let more = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut dev = loop {
            // The previous device may have been cut off by a failed commit.
            if let Ok(d) = std::panic::catch_unwind(|| Raw5::simple(addr, "after")) {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "ferry did not accept connections again"
            );
        };
        let mut ok = Vec::new();
        for i in 0..50u16 {
            loop {
                dev.publish(
                    &format!("sensors/{}", i % 4),
                    QoS::AtLeastOnce,
                    i + 1,
                    format!("after-{i}").as_bytes(),
                    None,
                );
                match dev.recv(Duration::from_secs(10)) {
                    Some(Packet::PubAck(a)) if a.reason == PubAckReason::Success => {
                        ok.push(i);
                        break;
                    }
                    other => assert!(
                        Instant::now() < deadline,
                        "still refused after space returned: {other:?}"
                    ),
                }
            }
        }
        ok
    })
    .await
    .unwrap();
    assert_eq!(more.len(), 50);

    // Nothing acknowledged was lost: the backlog drains to the upstream.
    mosq.restart();
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let expected = acked.len() + 50;
    checker.wait_count(expected, Duration::from_secs(60)).await;
    let got = checker.received.lock().unwrap().clone();
    assert_eq!(got.len(), expected, "refused: {refused}");
    let tail: Vec<String> = got[acked.len()..]
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(
        tail,
        (0..50).map(|i| format!("after-{i}")).collect::<Vec<_>>()
    );
    let metrics_err = ferry.log_text().matches("store commit failed").count();
    assert!(metrics_err > 0);
}
