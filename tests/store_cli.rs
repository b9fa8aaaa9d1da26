//! Dead letters with a real upstream that refuses a topic, and the `ferry store`
//! commands on stores made by a real ferry: info, check, dump, dlq list|replay|purge,
//! salvage, with their exit statuses.

mod common;

use common::upstream::{Checker, Device};
use common::{Ferry, Mosquitto, base_config, dead_port, free_port};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Runs `ferry store ARGS`.
fn store_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("store")
        .args(args)
        .output()
        .expect("run ferry store")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What the checker received, as `topic=payload`, in order.
fn arrived(checker: &Checker) -> Vec<String> {
    checker
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(t, p)| format!("{t}={}", String::from_utf8_lossy(p)))
        .collect()
}

fn upstream(port: u16, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"gw-dlq\"\n\
         protocol = \"5\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n{extra}\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\ntopic = \"site-a/{{topic}}\"\nqos = 1\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// Anonymous clients may read everything under site-a/ and write only `allowed`.
fn write_acl(path: &Path, allowed: &[&str]) {
    let mut acl = String::from("topic read site-a/#\n");
    for a in allowed {
        acl.push_str(&format!("topic write {a}\n"));
    }
    std::fs::write(path, acl).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_go_to_the_dead_letters_and_replay_delivers_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let acl = dir.path().join("acl");
    write_acl(&acl, &["site-a/sensors/ok/#"]);
    // max_queued_messages 0 (the harness' default) makes mosquitto 2.0 drop a client
    // right after it refuses its publish; a queue limit makes it answer PUBACK 0x87 only.
    let extra = format!("acl_file {}\nmax_queued_messages 1000\n", acl.display());
    let mut mosq = Mosquitto::start_with(dir.path(), port, &extra);
    Checker::register(port, "checker", "site-a/#").await;
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let config = base_config(dir.path()) + &upstream(port, "max_attempts = 3\n");
    let ferry = Ferry::start(dir.path(), &config);
    ferry.wait_log(&["upstream connected", "cloud"], Duration::from_secs(20));

    // 12 events; every fourth goes to a topic the upstream refuses (PUBACK 0x87).
    let topic = |i: usize| {
        if i % 4 == 1 {
            format!("sensors/secret/{i}")
        } else {
            format!("sensors/ok/{i}")
        }
    };
    let device = Device::connect(ferry.mqtt, "dev-dlq").await;
    device
        .publish_acked(12, topic, Duration::from_secs(20))
        .await;
    checker.wait_count(9, Duration::from_secs(30)).await;
    common::wait_until(Duration::from_secs(20), "3 dead letters", || {
        ferry.metric("ferry_store_dead_letters") == 3
    });
    let got = arrived(&checker);
    let want: Vec<String> = (0..12)
        .filter(|i| i % 4 != 1)
        .map(|i| format!("site-a/sensors/ok/{i}={i}"))
        .collect();
    assert_eq!(got, want, "the rest of the backlog, in order, once");
    assert_eq!(
        ferry.metric("ferry_upstream_dead_letters_total{upstream=\"cloud\",reason=\"0x87\"}"),
        3
    );
    // Each refused event was sent max_attempts = 3 times.
    assert_eq!(
        ferry.metric("ferry_upstream_refused_total{upstream=\"cloud\"}"),
        9
    );
    common::wait_until(
        Duration::from_secs(10),
        "the cursor past everything",
        || ferry.metric("ferry_upstream_backlog_events{upstream=\"cloud\"}") == 0,
    );
    device.abort();
    checker.close().await;
    assert_eq!(ferry.terminate(), Some(0));

    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let list = store_cmd(&["dlq", "list", store, "--upstream", "cloud"]);
    assert!(list.status.success(), "{}", text(&list));
    let letters = json_lines(&list);
    assert_eq!(letters.len(), 3, "{}", text(&list));
    for (letter, i) in letters.iter().zip([1, 5, 9]) {
        assert_eq!(letter["topic"], format!("sensors/secret/{i}"));
        assert_eq!(letter["payload"], i.to_string());
        assert_eq!(letter["upstream"], "cloud");
        assert_eq!(letter["reason"], "0x87");
        assert_eq!(letter["attempts"], 3);
    }
    let info = store_cmd(&["info", store, "--json"]);
    assert!(info.status.success(), "{}", text(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["dead_letters"], 3);
    assert_eq!(info["upstreams"][0]["dead_letters"], 3);
    assert_eq!(info["upstreams"][0]["backlog"], 0);

    // The ACL is fixed; the dead letters go back at the end of the backlog.
    write_acl(&acl, &["site-a/sensors/#"]);
    mosq.stop();
    mosq.restart();
    let replay = store_cmd(&["dlq", "replay", store]);
    assert!(replay.status.success(), "{}", text(&replay));
    assert!(
        text(&replay).contains("3 dead letters put back"),
        "{}",
        text(&replay)
    );
    let listed = store_cmd(&["dlq", "list", store]);
    assert!(json_lines(&listed).is_empty());

    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let ferry = Ferry::start(dir.path(), &config);
    checker.wait_count(3, Duration::from_secs(30)).await;
    // A marker behind them shows nothing else (no duplicate) was on its way.
    let device = Device::connect(ferry.mqtt, "dev-dlq-2").await;
    device
        .publish_acked(1, |_| "sensors/ok/marker".into(), Duration::from_secs(20))
        .await;
    checker.wait_count(4, Duration::from_secs(30)).await;
    let got = arrived(&checker);
    assert_eq!(
        got,
        [
            "site-a/sensors/secret/1=1",
            "site-a/sensors/secret/5=5",
            "site-a/sensors/secret/9=9",
            "site-a/sensors/ok/marker=0"
        ]
    );
    assert_eq!(ferry.metric("ferry_store_dead_letters"), 0);
    device.abort();
    checker.close().await;
}

/// Flips one byte of every copy of `needle` in the file.
fn flip(file: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let mut hits = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + needle.len() - 1] ^= 0x20;
            hits += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(file, bytes).unwrap();
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_commands_inspect_check_dump_and_salvage_a_real_store() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _held) = dead_port();
    let config = base_config(dir.path()) + &upstream(port, "");
    let ferry = Ferry::start(dir.path(), &config);
    let device = Device::connect(ferry.mqtt, "dev-cli").await;
    device
        .publish_acked(20, |i| format!("sensors/cli/{i}"), Duration::from_secs(20))
        .await;
    let store_dir = dir.path().join("store");
    let store = store_dir.to_str().unwrap();

    // While ferry runs, the store is locked: said so, exit 3.
    let busy = store_cmd(&["info", store]);
    assert_eq!(busy.status.code(), Some(3), "{}", text(&busy));
    assert!(text(&busy).contains("stop ferry first"), "{}", text(&busy));
    device.abort();
    assert_eq!(ferry.terminate(), Some(0));

    let info = store_cmd(&["info", store]);
    assert!(info.status.success(), "{}", text(&info));
    let t = text(&info);
    assert!(t.contains("events:       20"), "{t}");
    assert!(
        t.contains("upstream cloud: cursor 0, backlog 20 events"),
        "{t}"
    );

    let check = store_cmd(&["check", store]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(text(&check).contains("20 records"), "{}", text(&check));

    let dump = store_cmd(&[
        "dump",
        store,
        "--upstream",
        "cloud",
        "--from",
        "5",
        "--limit",
        "3",
    ]);
    assert!(dump.status.success(), "{}", text(&dump));
    let lines = json_lines(&dump);
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 6, 7]);
    assert_eq!(lines[0]["topic"], "sensors/cli/4");
    assert_eq!(lines[0]["payload"], "4");
    let unknown = store_cmd(&["dump", store, "--upstream", "nope"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));

    // Damage one record's topic in the file: check finds it (exit 1) and names it.
    let file = store_dir.join("ferry.redb");
    assert!(flip(&file, b"sensors/cli/13") >= 1);
    let check = store_cmd(&["check", store]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        text(&check).contains("damaged: log seq 14: record checksum mismatch"),
        "{}",
        text(&check)
    );

    // Salvage copies the 19 sound records, the cursor and the upstream, reports the one.
    let new_dir = dir.path().join("salvaged");
    let new = new_dir.to_str().unwrap();
    let salvage = store_cmd(&["salvage", store, new]);
    assert_eq!(salvage.status.code(), Some(1), "{}", text(&salvage));
    let t = text(&salvage);
    assert!(t.contains("not copied: log seq 14"), "{t}");
    assert!(t.contains("19 records, 1 upstream cursors"), "{t}");
    let check = store_cmd(&["check", new]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let info = text(&store_cmd(&["info", new]));
    assert!(
        info.contains("upstream cloud: cursor 0, backlog 19 events"),
        "{info}"
    );
    assert!(info.contains("next seq:     21"), "{info}");
    // Salvage never writes over a store.
    let again = store_cmd(&["salvage", store, new]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already there"), "{}", text(&again));

    // The salvaged store runs: ferry opens it, its accounting recomputed.
    std::fs::rename(&store_dir, dir.path().join("damaged")).unwrap();
    std::fs::rename(&new_dir, &store_dir).unwrap();
    let ferry = Ferry::start(dir.path(), &config);
    assert_eq!(ferry.metric("ferry_store_events"), 19);
    assert_eq!(ferry.terminate(), Some(0));

    // No store there: exit 3.
    let missing = store_cmd(&["check", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing));
}

/// An upstream removed from the config keeps its backlog across a restart (its lane is
/// still a slot: the log is not reclaimed past its cursor, though the other upstream
/// acknowledged everything), until `ferry store forget` releases it; then the log is
/// reclaimed. `forget` refuses a lane the store does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_upstream_keeps_its_backlog_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _cloud = Mosquitto::start(&dir.path().join("mosq"), port);
    let (old_port, _held) = dead_port();
    let rules = |old: bool| {
        let mut s = format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\nbackoff_max = \"200ms\"\n\
             [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\nqos = 1\n"
        );
        if old {
            s += &format!(
                "[[upstream]]\nname = \"old\"\nurl = \"mqtt://127.0.0.1:{old_port}\"\nbackoff_max = \"200ms\"\n\
                 [[forward]]\nupstream = \"old\"\nfilter = \"sensors/#\"\nqos = 1\n"
            );
        }
        format!("{}{s}", base_config(dir.path()))
    };
    let events = |f: &Ferry| f.metric("ferry_store_events");
    let f = Ferry::start(dir.path(), &rules(true));
    let device = Device::connect(f.mqtt, "dev-old").await;
    device
        .publish_acked(5, |i| format!("sensors/{i}"), Duration::from_secs(10))
        .await;
    device.abort();
    common::wait_until(Duration::from_secs(10), "cloud acknowledged", || {
        f.metric("ferry_upstream_forwarded_total{upstream=\"cloud\"}") == 5
    });
    assert_eq!(f.terminate(), Some(0));

    // Restarted without "old": its 5 events stay, and it says so.
    let f = Ferry::start(dir.path(), &rules(false));
    f.wait_log(
        &["not in the configuration", "lane=old"],
        Duration::from_secs(10),
    );
    let device = Device::connect(f.mqtt, "dev-old-2").await;
    device
        .publish_acked(3, |i| format!("sensors/n{i}"), Duration::from_secs(10))
        .await;
    device.abort();
    common::wait_until(
        Duration::from_secs(10),
        "cloud acknowledged the rest",
        || f.metric("ferry_upstream_forwarded_total{upstream=\"cloud\"}") == 3,
    );
    // The old lane holds all 8 (it is behind every one of them); nothing is reclaimed.
    common::wait_until(Duration::from_secs(10), "cursors persisted", || {
        events(&f) == 8
    });
    assert_eq!(f.terminate(), Some(0));

    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let info = String::from_utf8_lossy(&store_cmd(&["info", s]).stdout).into_owned();
    assert!(
        info.contains("upstream old: cursor 0, backlog 5 events"),
        "{info}"
    );
    let out = store_cmd(&["forget", s, "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no lane \"nope\" in this store (it has: "),
        "{}",
        text(&out)
    );
    let out = store_cmd(&["forget", s, "old"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out)
            .contains("old: forgotten; its cursor moved from seq 0 to the end of the log, seq 8"),
        "{}",
        text(&out)
    );
    let info = String::from_utf8_lossy(&store_cmd(&["info", s]).stdout).into_owned();
    assert!(
        info.contains("upstream old: cursor 8, backlog 0 events"),
        "{info}"
    );

    // Started again: nothing holds the log, it is reclaimed (at the next commit that
    // moves a cursor: one more event); no warning about "old".
    let f = Ferry::start(dir.path(), &rules(false));
    let device = Device::connect(f.mqtt, "dev-old-3").await;
    device
        .publish_acked(1, |_| "sensors/last".into(), Duration::from_secs(10))
        .await;
    device.abort();
    common::wait_until(Duration::from_secs(10), "the log reclaimed", || {
        events(&f) == 0
    });
    assert!(!f.log_text().contains("not in the configuration"));
}
