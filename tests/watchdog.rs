//! The progress watchdog against a real stall: a TCP proxy between ferry and a real
//! mosquitto keeps its connections open but stops passing bytes (a black hole), so the
//! link looks connected and moves nothing. With `stall_timeout = "2s"` ferry must drop
//! and re-establish the link, resend from its cursor, and every event must arrive.
//! Also `/health`: its JSON shape and `last_ack_age_seconds`.

mod common;

use common::proxy::Proxy;
use common::upstream::{Checker, Device, wait_for};
use common::{Ferry, Mosquitto, base_config, forward_config, free_port};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::block_in_place;

const STALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the link asks its watchdog (a quarter of the timeout).
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// `backoff_max` of `forward_config`.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const EVENTS: usize = 200;

async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

async fn health(addr: SocketAddr) -> serde_json::Value {
    let (head, body) = http_get(addr, "/health").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}\n{body}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The one upstream's entry, checking the shape of the whole answer on the way.
fn cloud(h: &serde_json::Value) -> &serde_json::Value {
    let keys: Vec<&str> = h.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "{h}");
    for k in ["status", "store", "upstreams"] {
        assert!(keys.contains(&k), "{k} in {h}");
    }
    let ups = h["upstreams"].as_array().expect("upstreams array");
    assert_eq!(ups.len(), 1, "{h}");
    let u = &ups[0];
    assert_eq!(u.as_object().unwrap().len(), 6, "{h}");
    assert_eq!(u["name"], "cloud");
    assert!(u["state"] == "connected" || u["state"] == "down", "{h}");
    assert!(u["backlog"].is_u64(), "{h}");
    assert!(u["oldest_age_seconds"].is_number(), "{h}");
    assert!(
        u["last_ack_age_seconds"].is_number() || u["last_ack_age_seconds"].is_null(),
        "{h}"
    );
    assert!(u["stalls"].is_u64(), "{h}");
    u
}

fn upstream_connected_lines(ferry: &Ferry) -> usize {
    ferry
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("upstream connected"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_link_is_dropped_and_reestablished_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosq = block_in_place(|| Mosquitto::start(dir.path(), port));
    Checker::register(port, "checker", "site-a/#").await;
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let proxy = Proxy::start(port, Duration::ZERO).await;
    let config = base_config(dir.path())
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n"
        + &forward_config(proxy.port).replace(
            "backoff_max = \"500ms\"\n",
            "backoff_max = \"500ms\"\nstall_timeout = \"2s\"\n",
        );
    let ferry = block_in_place(|| {
        let f = Ferry::start(dir.path(), &config);
        f.wait_log(&["upstream connected", "cloud"], Duration::from_secs(20));
        f.wait_log(&["metrics endpoint ready"], Duration::from_secs(10));
        f
    });
    let http = ferry.addr_of("metrics endpoint ready").unwrap();
    let h = health(http).await;
    assert_eq!(
        cloud(&h)["last_ack_age_seconds"],
        serde_json::Value::Null,
        "nothing acknowledged yet: {h}"
    );

    // One event through the healthy link, then idle for longer than stall_timeout: an
    // idle link with nothing owed never trips the watchdog.
    let device = Device::connect(ferry.mqtt, "dev-stall").await;
    device
        .publish_acked(1, |_| "sensors/warmup".into(), Duration::from_secs(10))
        .await;
    checker.wait_count(1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(http).await;
        let age = cloud(&h)["last_ack_age_seconds"].as_f64();
        if age.is_some_and(|a| a >= STALL_TIMEOUT.as_secs_f64() + 0.5) {
            assert_eq!(h["status"], "ok", "{h}");
            assert_eq!(cloud(&h)["state"], "connected", "{h}");
            assert_eq!(cloud(&h)["stalls"], 0, "an idle link tripped: {h}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "last_ack_age_seconds never passed the stall timeout: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.connections(), 1);

    // The black hole: the link stays connected and nothing is acknowledged.
    proxy.black_hole();
    let frozen = Instant::now();
    device
        .publish_acked(
            EVENTS,
            |i| format!("sensors/{}", i % 4),
            Duration::from_secs(20),
        )
        .await;
    block_in_place(|| {
        ferry.wait_log(
            &[
                "upstream stalled",
                "upstream=cloud",
                "cursor=",
                "without_progress=",
            ],
            STALL_TIMEOUT + CHECK_EVERY + Duration::from_secs(10),
        )
    });
    wait_for(
        STALL_TIMEOUT + CHECK_EVERY + BACKOFF_MAX + Duration::from_secs(10),
        "the link connected again",
        || upstream_connected_lines(&ferry) >= 2,
    )
    .await;
    let reconnected = frozen.elapsed();
    assert!(
        reconnected >= STALL_TIMEOUT,
        "re-established after {reconnected:?}, before stall_timeout"
    );
    let bound = STALL_TIMEOUT + CHECK_EVERY + BACKOFF_MAX + Duration::from_secs(3);
    assert!(
        reconnected <= bound,
        "re-established after {reconnected:?}, more than {bound:?}"
    );
    assert_eq!(proxy.connections(), 2, "one new connection");

    // Every event arrives (at least once), in order once duplicates are removed.
    checker
        .wait_count(1 + EVENTS, Duration::from_secs(20))
        .await;
    let got = checker.received.lock().unwrap().clone();
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<(String, String)> = got[1..]
        .iter()
        .map(|(t, p)| (t.clone(), String::from_utf8_lossy(p).into_owned()))
        .filter(|e| seen.insert(e.clone()))
        .collect();
    let expected: Vec<(String, String)> = (0..EVENTS)
        .map(|i| (format!("site-a/sensors/{}", i % 4), i.to_string()))
        .collect();
    assert_eq!(unique, expected, "every event, in order");

    let metrics = http_get(http, "/metrics").await.1;
    let stalls: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("ferry_upstream_stalls_total{upstream=\"cloud\"} ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no ferry_upstream_stalls_total in:\n{metrics}"));
    assert!(stalls >= 1, "{metrics}");

    let h = health(http).await;
    let u = cloud(&h);
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["store"], "ok", "{h}");
    assert_eq!(u["state"], "connected", "{h}");
    assert_eq!(u["stalls"].as_u64(), Some(stalls), "{h}");
    let age = u["last_ack_age_seconds"].as_f64().expect("a number");
    assert!((0.0..10.0).contains(&age), "acknowledged just now: {h}");
}

/// The watchdog leaves a link that is still connecting to `connect_timeout`; and the
/// link's own timers must not restart a handshake in progress either. Over a slow
/// network (each way 150 ms, a CONNACK 300 ms after CONNECT) the link connects with its
/// first TCP connection and forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handshake_is_not_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosq = block_in_place(|| Mosquitto::start(dir.path(), port));
    Checker::register(port, "checker", "site-a/#").await;
    let checker = Checker::connect(port, "checker", "site-a/#").await;
    let proxy = Proxy::start(port, Duration::from_millis(150)).await;
    let config = base_config(dir.path()) + &forward_config(proxy.port);
    let ferry = block_in_place(|| {
        let f = Ferry::start(dir.path(), &config);
        f.wait_log(&["upstream connected", "cloud"], Duration::from_secs(10));
        f
    });
    assert_eq!(proxy.connections(), 1, "{}", ferry.log_text());
    let device = Device::connect(ferry.mqtt, "dev-slow").await;
    device
        .publish_acked(20, |i| format!("sensors/{i}"), Duration::from_secs(10))
        .await;
    checker.wait_count(20, Duration::from_secs(20)).await;
    assert_eq!(proxy.connections(), 1, "{}", ferry.log_text());
    assert_eq!(upstream_connected_lines(&ferry), 1);
}
