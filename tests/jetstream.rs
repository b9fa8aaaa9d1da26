//! NATS and JetStream upstreams, against real nats-server processes (Debian's) on
//! loopback: a 3-node JetStream cluster with an R3 stream, and a core NATS server.

mod common;

use async_nats::jetstream;
use common::nats_server::{NatsCluster, NatsServer};
use common::proxy::Proxy;
use common::upstream::{Device, wait_for};
use common::{Ferry, base_config};
use std::collections::HashMap;
use std::time::Duration;

const TOPICS: usize = 4;

fn topic(i: usize) -> String {
    format!("sensors/{}", i % TOPICS)
}

/// Creates the R3 stream `EVENTS` on `site-a.>` with a 10-minute duplicate window, through
/// the JetStream API (retried while the cluster elects its meta leader).
async fn create_stream(url: &str) -> jetstream::Context {
    create_stream_with(url, 3).await
}

/// [`create_stream`] with `replicas` (1 on a single server).
async fn create_stream_with(url: &str, replicas: usize) -> jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .expect("connect to the cluster");
    let js = jetstream::new(client);
    let config = jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["site-a.>".into()],
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(_) => return js,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("stream not created yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cannot create the R3 stream: {e}"),
        }
    }
}

/// Messages in `EVENTS` now (retried: a node may have just died).
async fn stream_messages(js: &jetstream::Context) -> u64 {
    for _ in 0..20 {
        if let Ok(mut s) = js.get_stream("EVENTS").await {
            if let Ok(info) = s.info().await {
                return info.state.messages;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream info unavailable");
}

/// Every message of the stream in stream order: (subject, payload, Nats-Msg-Id).
async fn read_all(js: &jetstream::Context, n: usize) -> Vec<(String, String, String)> {
    use futures_util::StreamExt;
    // Retried: after a node kill the cluster may still be electing leaders.
    let mut attempts = 0;
    let mut messages = loop {
        attempts += 1;
        let made = async {
            let stream = js.get_stream("EVENTS").await.map_err(|e| e.to_string())?;
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        };
        match made.await {
            Ok(m) => break m,
            Err(e) if attempts < 20 => eprintln!("consumer not created yet: {e}"),
            Err(e) => panic!("cannot read the stream: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("stream read stalled")
            .expect("stream ended");
        // The ordered consumer reports a missed heartbeat on a loaded machine as an error
        // and then recreates itself from the last message delivered: nothing is skipped
        // or repeated, and the counts below stay exact.
        let m = match next {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ordered consumer: {e}");
                continue;
            }
        };
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((
            m.subject.to_string(),
            String::from_utf8_lossy(&m.payload).into_owned(),
            id,
        ));
    }
    out
}

/// The store-and-forward promise into a real cluster: 100,000 events stored while the
/// cluster is down, drained into an R3 stream once it is up, the node ferry is connected to
/// killed mid-drain. The stream ends with exactly 100,000 messages, each once, in order per
/// subject, each with its `Nats-Msg-Id`; every acknowledgement ferry counted is either a new
/// message or a resend the duplicate window dropped, and the resends are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_into_an_r3_stream_exactly_once_across_a_node_kill() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start_later(dir.path(), 3);
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[gateway]\nid = \"gw-1\"\n\
         [[upstream]]\nname = \"js\"\nurls = {}\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
         ack_timeout = \"3s\"\n\
         [[forward]]\nupstream = \"js\"\nfilter = \"sensors/#\"\ntopic = \"site-a/{{topic}}\"\nqos = 1\n",
        base_config(dir.path()),
        cluster.toml_urls()
    );
    let ferry = Ferry::start(dir.path(), &config);

    // The outage: every event is stored while no node is up.
    let device = Device::connect(ferry.mqtt, "dev-js").await;
    device
        .publish_acked(N, topic, Duration::from_secs(120))
        .await;
    assert_eq!(
        ferry.metric("ferry_upstream_forwarded_total{upstream=\"js\"}"),
        0
    );

    cluster.start_all();
    create_stream(&cluster.url(0)).await;
    ferry.wait_log(&["upstream connected", "js"], Duration::from_secs(30));

    // Mid-drain, kill the node ferry is connected to.
    wait_for(Duration::from_secs(120), "a tenth of the drain", || {
        ferry.metric("ferry_upstream_forwarded_total{upstream=\"js\"}") >= (N / 10) as u64
    })
    .await;
    let log = ferry.log_text();
    let connected = log
        .lines()
        .rfind(|l| l.contains("upstream connected"))
        .expect("connected line");
    let victim = (0..3)
        .find(|i| connected.contains(&format!(":{}", cluster.ports[*i])))
        .unwrap_or_else(|| panic!("which node? {connected}"));
    cluster.kill(victim);
    let survivor = (victim + 1) % 3;
    let js = create_stream(&cluster.url(survivor)).await;

    wait_for(
        Duration::from_secs(300),
        "the whole backlog acknowledged",
        || {
            ferry.metric("ferry_upstream_backlog_events{upstream=\"js\"}") == 0
                && ferry.metric("ferry_upstream_forwarded_total{upstream=\"js\"}") >= N as u64
        },
    )
    .await;
    assert_eq!(
        stream_messages(&js).await,
        N as u64,
        "exactly N in the stream"
    );
    // ferry did not restart, so each event was acknowledged to it exactly once: by a new
    // message, or by the duplicate window for a resend of one whose acknowledgement the
    // kill lost (how many depends on the instant of the kill; the test below forces them).
    let acked = ferry.metric("ferry_upstream_forwarded_total{upstream=\"js\"}");
    let duplicates = ferry.metric("ferry_upstream_duplicates_total{upstream=\"js\"}");
    eprintln!("acknowledged {acked}: {duplicates} of them resends the duplicate window dropped");
    assert_eq!(acked, N as u64);

    // Each event once, with its idempotency key, in order per subject.
    let all = read_all(&js, N).await;
    let mut seen = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    for (subject, payload, id) in &all {
        assert!(seen.insert(payload.clone()), "payload {payload} twice");
        let i: usize = payload.parse().unwrap();
        assert_eq!(subject, &format!("site-a.sensors.{}", i % TOPICS));
        assert!(id.starts_with("gw-1-"), "Nats-Msg-Id {id:?}");
        assert!(ids.insert(id.clone()), "Nats-Msg-Id {id} twice");
        if let Some(prev) = last.insert(subject.clone(), i) {
            assert!(prev < i, "{subject}: {i} after {prev}");
        }
    }
    assert_eq!(seen.len(), N);
    device.abort();
}

/// Many gateways, one cluster: ten ferry processes with distinct gateway ids, each holding
/// a backlog stored while the cluster was down, drain into one R3 stream at once. Every
/// gateway's events arrive exactly once (by `Nats-Msg-Id`), in order per subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_gateways_drain_into_one_stream_exactly_once() {
    const GATEWAYS: usize = 10;
    const N: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start_later(dir.path(), 3);
    let mut ferries = Vec::new();
    for g in 0..GATEWAYS {
        let gdir = dir.path().join(format!("gw-{g}"));
        std::fs::create_dir_all(&gdir).unwrap();
        let config = format!(
            "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[gateway]\nid = \"gw-{g}\"\n\
             [[upstream]]\nname = \"js\"\nurls = {}\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
             [[forward]]\nupstream = \"js\"\nfilter = \"sensors/#\"\ntopic = \"site-a/gw-{g}/{{topic}}\"\nqos = 1\n",
            base_config(&gdir),
            cluster.toml_urls()
        );
        let ferry = Ferry::start(&gdir, &config);
        let device = Device::connect(ferry.mqtt, &format!("dev-{g}")).await;
        device
            .publish_acked(N, topic, Duration::from_secs(60))
            .await;
        device.abort();
        ferries.push(ferry);
    }
    cluster.start_all();
    let js = create_stream(&cluster.url(0)).await;
    wait_for(Duration::from_secs(120), "every gateway drained", || {
        ferries
            .iter()
            .all(|f| f.metric("ferry_upstream_forwarded_total{upstream=\"js\"}") == N as u64)
    })
    .await;
    assert_eq!(stream_messages(&js).await, (GATEWAYS * N) as u64);
    let all = read_all(&js, GATEWAYS * N).await;
    let mut ids = std::collections::HashSet::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    for (subject, payload, id) in &all {
        assert!(ids.insert(id.clone()), "Nats-Msg-Id {id} twice");
        let i: usize = payload.parse().unwrap();
        let gateway = subject.split('.').nth(1).unwrap();
        assert!(id.starts_with(&format!("{gateway}-")), "{id} on {subject}");
        assert_eq!(subject, &format!("site-a.{gateway}.sensors.{}", i % TOPICS));
        if let Some(prev) = last.insert(subject.clone(), i) {
            assert!(prev < i, "{subject}: {i} after {prev}");
        }
    }
    assert_eq!(ids.len(), GATEWAYS * N);
}

/// Lost acknowledgements: the stream stores what ferry sends while every PubAck is lost on
/// the way back (a proxy mutes the replies). After `ack_timeout` ferry reconnects and sends
/// the unacknowledged events again; the stream's duplicate window drops each of them, so it
/// ends with exactly N messages and ferry counts the dropped resends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acknowledgements_are_resent_and_dropped_as_duplicates() {
    const N: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), "js", "jetstream { store_dir: \"$DIR/js\" }");
    let js = create_stream_with(&server.url(), 1).await;
    let proxy = Proxy::start(server.port, Duration::ZERO).await;
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[gateway]\nid = \"gw-1\"\n\
         [[upstream]]\nname = \"js\"\nurl = \"nats://127.0.0.1:{}\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
         ack_timeout = \"1s\"\nmax_rate = 1000\n\
         [[forward]]\nupstream = \"js\"\nfilter = \"sensors/#\"\ntopic = \"site-a/{{topic}}\"\nqos = 1\n",
        base_config(dir.path()),
        proxy.port
    );
    let ferry = Ferry::start(dir.path(), &config);
    let device = Device::connect(ferry.mqtt, "dev-lost").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    wait_for(Duration::from_secs(30), "part of the drain", || {
        ferry.metric("ferry_upstream_forwarded_total{upstream=\"js\"}") >= (N / 5) as u64
    })
    .await;
    proxy.mute_replies();
    ferry.wait_log(
        &["upstream down", "no JetStream acknowledgement"],
        Duration::from_secs(20),
    );
    wait_for(Duration::from_secs(60), "the rest acknowledged", || {
        ferry.metric("ferry_upstream_forwarded_total{upstream=\"js\"}") == N as u64
    })
    .await;
    assert_eq!(stream_messages(&js).await, N as u64);
    let duplicates = ferry.metric("ferry_upstream_duplicates_total{upstream=\"js\"}");
    assert!(duplicates > 0, "no resend was dropped as a duplicate");
    let all = read_all(&js, N).await;
    let payloads: Vec<usize> = all.iter().map(|(_, p, _)| p.parse().unwrap()).collect();
    assert_eq!(payloads, (0..N).collect::<Vec<_>>(), "each once, in order");
    device.abort();
}
