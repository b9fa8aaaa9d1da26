//! A damaged store file on a real disk (issue 12). A store file redb cannot open (cut
//! short, zeroed pages), and a missing or empty one where the marker says a store was,
//! stop ferry with exit status 3 and a message naming the file and what to do, never a
//! panic nor exit 1 (which systemd would restart into the same failure every 2 s). Records
//! damaged inside an intact file are skipped, counted and never forwarded, and every
//! other one arrives upstream in order.

mod common;

use common::raw::Raw;
use common::upstream::Checker;
use common::{Ferry, Mosquitto, base_config, dead_port, forward_config, free_port};
use rumqttc::{Packet, QoS};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: usize = 300;
const TOPICS: usize = 4;

/// The payload of event `i`: unique, so its bytes can be found in the store file.
fn payload(i: usize) -> String {
    format!("store-damage-event-{i:05}-abcdefghijklmnop")
}

/// Publishes `EVENTS` QoS 1 events to a ferry whose upstream is down and waits for every
/// PUBACK, then stops ferry gracefully. Returns the store file.
fn store_with_events(dir: &Path, config: &str) -> PathBuf {
    let ferry = Ferry::start(dir, config);
    let (mut dev, _) = Raw::connect(ferry.mqtt, "damage-dev", true, 30);
    for i in 0..EVENTS {
        let topic = format!("sensors/{}", i % TOPICS);
        dev.publish(
            &topic,
            QoS::AtLeastOnce,
            i as u16 + 1,
            false,
            payload(i).as_bytes(),
        );
    }
    let mut acked = 0;
    let end = Instant::now() + Duration::from_secs(30);
    while acked < EVENTS {
        assert!(Instant::now() < end, "only {acked} PUBACKs from ferry");
        if let Ok(Packet::PubAck(_)) = dev.recv(Duration::from_secs(5)) {
            acked += 1;
        }
    }
    dev.kill();
    assert_eq!(ferry.terminate(), Some(0), "graceful stop");
    let file = dir.join("store").join("ferry.redb");
    assert!(
        dir.join("store").join("ferry.redb.marker").exists(),
        "marker written"
    );
    file
}

/// Runs ferry on `config` until it exits (within 20 s); returns its exit code and stderr.
fn run_to_exit(dir: &Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("ferry.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        // A panic that got through would print its backtrace.
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry did not exit within 20 s on a damaged store");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap())
}

/// Ferry refused to start on the damaged store: exit status 3, no panic, and a message
/// naming the file and each of `hints`.
fn assert_stopped(dir: &Path, config: &str, file: &Path, hints: &[&str]) {
    let (code, stderr) = run_to_exit(dir, config);
    assert_eq!(code, Some(3), "exit status 3 on a damaged store:\n{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a panic was printed:\n{stderr}"
    );
    assert!(
        !stderr.contains("thread '"),
        "a panic was printed:\n{stderr}"
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    assert!(
        stderr.contains(&file.display().to_string()),
        "the message names {}:\n{stderr}",
        file.display()
    );
    for hint in hints {
        assert!(
            stderr.contains(hint),
            "the message says {hint:?}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("MQTT listener ready"),
        "nothing was started:\n{stderr}"
    );
}

/// A store with events, then `damage` done to its file; ferry must stop with exit 3.
fn damaged_store_stops_ferry(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let (port, _down) = dead_port();
    let config = base_config(dir.path()) + &forward_config(port);
    let file = store_with_events(dir.path(), &config);
    damage(&file);
    let salvage = format!(
        "ferry store salvage {} NEWDIR",
        dir.path().join("store").display()
    );
    assert_stopped(dir.path(), &config, &file, &["damaged", &salvage]);
    // And again: the same answer every time, nothing was changed by the failed start.
    assert_stopped(dir.path(), &config, &file, &["damaged"]);
}

fn truncate(file: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn zero(file: &Path, offset: usize, len: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    assert!(bytes.len() >= offset + len, "file too short to zero");
    bytes[offset..offset + len].fill(0);
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_store_file_cut_in_half_stops_ferry_with_status_3() {
    damaged_store_stops_ferry(|f| {
        let len = std::fs::metadata(f).unwrap().len();
        truncate(f, len / 2);
    });
}

#[test]
fn a_store_file_cut_to_4_kib_stops_ferry_with_status_3() {
    damaged_store_stops_ferry(|f| truncate(f, 4096));
}

#[test]
fn a_zeroed_header_stops_ferry_with_status_3() {
    damaged_store_stops_ferry(|f| zero(f, 0, 4096));
}

/// The pages right behind the header hold the first region's allocator state.
#[test]
fn zeroed_pages_behind_the_header_stop_ferry_with_status_3() {
    damaged_store_stops_ferry(|f| zero(f, 4096, 4 * 4096));
}

#[test]
fn an_emptied_store_file_with_the_marker_stops_ferry_with_status_3() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _down) = dead_port();
    let config = base_config(dir.path()) + &forward_config(port);
    let file = store_with_events(dir.path(), &config);
    truncate(&file, 0);
    let marker = dir.path().join("store").join("ferry.redb.marker");
    let marker = marker.display().to_string();
    assert_stopped(
        dir.path(),
        &config,
        &file,
        &["empty (0 bytes)", &marker, "remove"],
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "left as it was");
}

#[test]
fn a_deleted_store_file_with_the_marker_stops_ferry_then_starts_empty_once_unmarked() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _down) = dead_port();
    let config = base_config(dir.path()) + &forward_config(port);
    let file = store_with_events(dir.path(), &config);
    std::fs::remove_file(&file).unwrap();
    let marker = dir.path().join("store").join("ferry.redb.marker");
    assert_stopped(
        dir.path(),
        &config,
        &file,
        &["missing", &marker.display().to_string()],
    );
    assert!(!file.exists(), "no empty store was put in its place");
    // What the message says to do to start empty: remove the marker.
    std::fs::remove_file(&marker).unwrap();
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(&["new, empty store created"], Duration::from_secs(10));
    assert_eq!(ferry.terminate(), Some(0));
    assert!(marker.exists(), "the new store is marked");
}

/// A new store directory, and a 0-byte file without a marker (ferry killed during its
/// very first start), both start as a new store.
#[test]
fn a_new_directory_and_an_unmarked_empty_file_start_as_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _down) = dead_port();
    let config = base_config(dir.path()) + &forward_config(port);
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("ferry.redb"), b"").unwrap();
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(&["new, empty store created"], Duration::from_secs(10));
    assert_eq!(ferry.terminate(), Some(0));
    assert!(store.join("ferry.redb.marker").exists());
}

/// Flips one byte in the stored payload of a few events (every copy of it in the file,
/// so the live one surely): each such record fails its CRC-32C.
/// Publishes one QoS 1 event on `sensors/marker` and waits for its PUBACK: whatever the
/// upstream gets after the backlog, it gets after it.
async fn publish_marker(addr: std::net::SocketAddr) {
    tokio::task::spawn_blocking(move || {
        let (mut dev, _) = Raw::connect(addr, "marker-dev", true, 30);
        dev.publish("sensors/marker", QoS::AtLeastOnce, 1, false, b"marker");
        assert!(matches!(
            dev.recv(Duration::from_secs(10)),
            Ok(Packet::PubAck(_))
        ));
    })
    .await
    .unwrap();
}

fn flip_payloads(file: &Path, victims: &[usize]) {
    let mut bytes = std::fs::read(file).unwrap();
    for &i in victims {
        let needle = payload(i).into_bytes();
        let mut found = 0;
        let mut at = 0;
        while let Some(pos) = bytes[at..]
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
        {
            let start = at + pos;
            bytes[start + needle.len() - 3] ^= 0x01;
            found += 1;
            at = start + needle.len();
        }
        assert!(
            found > 0,
            "payload of event {i} not found in the store file"
        );
    }
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_skipped_counted_and_the_rest_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (down, held) = dead_port();
    let store_config = base_config(dir.path()) + &forward_config(down);
    let d = dir.path().to_path_buf();
    let file = tokio::task::spawn_blocking(move || store_with_events(&d, &store_config))
        .await
        .unwrap();
    drop(held);
    let victims = [7, 150, 299];
    flip_payloads(&file, &victims);

    let port = free_port();
    let _mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let config =
        base_config(dir.path()) + &forward_config(port) + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let ferry = Ferry::start(dir.path(), &config);
    let expected: Vec<usize> = (0..EVENTS).filter(|i| !victims.contains(i)).collect();
    checker
        .wait_count(expected.len(), Duration::from_secs(30))
        .await;
    // Anything more (a damaged record after all, a duplicate) would arrive right behind:
    // a marker event sent now arrives after it.
    publish_marker(ferry.mqtt).await;
    checker
        .wait_count(expected.len() + 1, Duration::from_secs(20))
        .await;
    let got = checker.received.lock().unwrap().clone();
    assert_eq!(got.len(), expected.len() + 1, "nothing more arrived");
    for (k, &i) in expected.iter().enumerate() {
        let (topic, body) = &got[k];
        assert_eq!(
            topic,
            &format!("site-a/sensors/{}", i % TOPICS),
            "event {i}"
        );
        assert_eq!(body.as_ref(), payload(i).as_bytes(), "event {i}, in order");
    }
    assert_eq!(got[expected.len()].0, "site-a/sensors/marker");
    let ferry = tokio::task::spawn_blocking(move || {
        assert_eq!(
            ferry.metric("ferry_store_corrupt_total"),
            victims.len() as u64
        );
        // Moved out of the log into the quarantine, with their bytes.
        common::wait_until(Duration::from_secs(10), "the quarantine", || {
            ferry.metric("ferry_store_quarantined") == victims.len() as u64
        });
        ferry
    })
    .await
    .unwrap();
    let log = ferry.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        log.matches("stored record damaged").count(),
        victims.len(),
        "each damaged record logged once:\n{log}"
    );
    assert_eq!(ferry.terminate(), Some(0));
    checker.close().await;
}

/// A page of a log segment zeroed in the middle of an intact file: redb panics when it
/// reads that page. Only the records on it are lost (counted), every other one arrives in
/// order, the link never stalls on it, and once every cursor has passed the segment it is
/// set aside instead of deleted (redb would read the page to delete it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeroed_log_page_loses_only_its_records_and_never_stops_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let (down, held) = dead_port();
    let store_config = base_config(dir.path()) + &forward_config(down);
    let d = dir.path().to_path_buf();
    let file = tokio::task::spawn_blocking(move || store_with_events(&d, &store_config))
        .await
        .unwrap();
    drop(held);
    let bytes = std::fs::read(&file).unwrap();
    let needle = payload(150).into_bytes();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("event 150 in the file");
    zero(&file, at / 4096 * 4096, 4096);

    let port = free_port();
    let _mosq = Mosquitto::start(dir.path(), port);
    Checker::register(port, "checker", "site-a/#").await;
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let config =
        base_config(dir.path()) + &forward_config(port) + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let ferry = Ferry::start(dir.path(), &config);
    // The marker comes after the whole backlog: once it is there, the link went past the page.
    publish_marker(ferry.mqtt).await;
    common::upstream::wait_for(Duration::from_secs(30), "the marker upstream", || {
        let got = checker.received.lock().unwrap();
        got.last()
            .is_some_and(|(t, _)| t == "site-a/sensors/marker")
    })
    .await;
    let got = checker.received.lock().unwrap().clone();
    let arrived: Vec<usize> = got[..got.len() - 1]
        .iter()
        .map(|(_, body)| {
            let text = String::from_utf8_lossy(body);
            text["store-damage-event-".len()..]
                .split('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected payload {text}"))
        })
        .collect();
    assert!(
        arrived.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {arrived:?}"
    );
    assert!(!arrived.contains(&150), "event 150 was on the zeroed page");
    let lost: Vec<usize> = (0..EVENTS).filter(|i| !arrived.contains(i)).collect();
    assert!(
        lost.windows(2).all(|w| w[1] == w[0] + 1) && lost.len() < 100,
        "only one page's run of records is lost: {lost:?}"
    );
    let ferry = tokio::task::spawn_blocking(move || {
        assert_eq!(ferry.metric("ferry_store_corrupt_total"), lost.len() as u64);
        ferry
    })
    .await
    .unwrap();
    ferry.wait_log(&["set aside, not deleted"], Duration::from_secs(20));
    let log = ferry.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("store read failed"), "{log}");
    assert_eq!(ferry.terminate(), Some(0));
    checker.close().await;
}
