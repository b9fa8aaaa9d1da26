//! `drain = "live_first"` with a real mosquitto upstream: events published once the link
//! is back go out at once, ahead of a backlog that drains behind them at `max_rate`;
//! every event arrives once, the backlog in its order and the live events in theirs; and
//! a ferry killed mid-drain resumes both where they stood, without sending the live
//! events again as backlog.

mod common;

use common::upstream::{Checker, Device, wait_for};
use common::{Ferry, Mosquitto, base_config, free_port};
use std::time::Duration;

const BACKLOG: usize = 1_500;
const LIVE: usize = 20;

fn config(dir: &std::path::Path, port: u16) -> String {
    format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         backoff_min = \"50ms\"\nbackoff_max = \"500ms\"\ndrain = \"live_first\"\nmax_rate = 500\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\n",
        base_config(dir),
    )
}

/// (topic, index) of each arrival, in order.
fn arrivals(checker: &Checker) -> Vec<(String, usize)> {
    checker
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(t, p)| (t.clone(), std::str::from_utf8(p).unwrap().parse().unwrap()))
        .collect()
}

/// The indices that arrived on `topic`, in arrival order.
fn on(got: &[(String, usize)], topic: &str) -> Vec<usize> {
    got.iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, i)| *i)
        .collect()
}

/// A backlog of `BACKLOG` events stored while mosquitto is down, then mosquitto back and
/// `LIVE` events published once ferry's link is up (so after its split).
async fn backlog_then_live(
    dir: &std::path::Path,
    conf: &str,
    port: u16,
    device_id: &str,
) -> (Ferry, Mosquitto, Device, Checker) {
    let mut mosq = Mosquitto::start(dir, port);
    Checker::register(port, "checker", "sensors/#").await;
    mosq.stop();
    let ferry = Ferry::start(dir, conf);
    let device = Device::connect(ferry.mqtt, device_id).await;
    device
        .publish_acked(
            BACKLOG,
            |_| "sensors/backlog".into(),
            Duration::from_secs(60),
        )
        .await;
    mosq.restart();
    let checker = Checker::connect(port, "checker", "sensors/#").await;
    wait_for(Duration::from_secs(30), "the link up", || {
        ferry.metric("ferry_upstream_connected{upstream=\"cloud\"}") == 1
    })
    .await;
    device
        .publish_acked(LIVE, |_| "sensors/live".into(), Duration::from_secs(10))
        .await;
    (ferry, mosq, device, checker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_overtake_the_backlog_and_each_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = config(dir.path(), port);
    let (ferry, _mosq, device, checker) =
        backlog_then_live(dir.path(), &conf, port, "dev-live").await;
    checker
        .wait_count(BACKLOG + LIVE, Duration::from_secs(60))
        .await;
    let got = arrivals(&checker);
    assert_eq!(got.len(), BACKLOG + LIVE, "each event once");
    assert_eq!(
        on(&got, "sensors/backlog"),
        (0..BACKLOG).collect::<Vec<_>>()
    );
    assert_eq!(on(&got, "sensors/live"), (0..LIVE).collect::<Vec<_>>());
    // At 500 events/s the backlog takes 3 s; the live events were published at its
    // start and went out ahead of most of it.
    let last_live = got.iter().rposition(|(t, _)| t == "sensors/live").unwrap();
    assert!(
        last_live < BACKLOG / 2,
        "the last live event arrived after {last_live} of {BACKLOG} backlog events"
    );
    wait_for(Duration::from_secs(10), "no backlog left", || {
        ferry.metric("ferry_upstream_backlog_events{upstream=\"cloud\"}") == 0
    })
    .await;
    checker.close().await;
    device.abort();
}

/// Killed with the backlog half drained and the live events acknowledged: after the
/// restart the backlog goes on from its cursor and no live event is sent again (at most
/// the window in flight at the kill is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_backlog_without_resending_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = config(dir.path(), port);
    let (ferry, _mosq, device, checker) =
        backlog_then_live(dir.path(), &conf, port, "dev-live2").await;
    // Every live event and a part of the backlog are acknowledged; the cursors are
    // handed to the store every 50 ms.
    wait_for(
        Duration::from_secs(30),
        "a third of the backlog forwarded",
        || {
            ferry.metric("ferry_upstream_forwarded_total{upstream=\"cloud\"}")
                >= (LIVE + BACKLOG / 3) as u64
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    device.abort();
    ferry.kill9();
    let before = checker.count();
    let ferry = Ferry::start(dir.path(), &conf);
    checker
        .wait_count(BACKLOG + LIVE, Duration::from_secs(60))
        .await;
    wait_for(Duration::from_secs(10), "no backlog left", || {
        ferry.metric("ferry_upstream_backlog_events{upstream=\"cloud\"}") == 0
    })
    .await;
    let got = arrivals(&checker);
    let live = on(&got, "sensors/live");
    assert_eq!(
        live,
        (0..LIVE).collect::<Vec<_>>(),
        "no live event sent twice"
    );
    let backlog = on(&got, "sensors/backlog");
    let mut unique = backlog.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique,
        (0..BACKLOG).collect::<Vec<_>>(),
        "every backlog event"
    );
    // A resend after a kill is at most what was in flight or acknowledged but not yet
    // handed to the store: two windows of the default inflight (256).
    assert!(
        got.len() - (BACKLOG + LIVE) <= 512,
        "{} arrivals, {before} before the kill",
        got.len()
    );
    checker.close().await;
}
