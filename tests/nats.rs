//! The NATS listener against the real async-nats client, raw sockets for hostile input,
//! and both directions across the MQTT/NATS boundary.

mod common;

use async_nats::{Client, Message, Subscriber};
use bytes::Bytes;
use common::upstream::{Checker, Device, assert_exact_in_order, wait_for};
use common::{Ferry, Mosquitto, base_config, forward_config, free_port};
use futures_util::StreamExt;
use rumqttc::QoS;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

async fn client(ferry: &Ferry) -> Client {
    async_nats::connect(ferry.nats.unwrap().to_string())
        .await
        .unwrap()
}

async fn next(sub: &mut Subscriber) -> Message {
    tokio::time::timeout(LIMIT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
}

/// Waits until every SUB/UNSUB `c` sent so far is live in ferry. async-nats' `flush`
/// only flushes the socket (no PING/PONG), so this probes instead: ferry handles one
/// connection's ops in order, so once a fresh subscription made after them receives a
/// message from `publisher`, the earlier ones are in place too.
async fn ready(c: &Client, publisher: &Client) {
    let inbox = c.new_inbox();
    let mut probe = c.subscribe(inbox.clone()).await.unwrap();
    let end = Instant::now() + LIMIT;
    loop {
        assert!(Instant::now() < end, "subscriptions never became live");
        publisher
            .publish(inbox.clone(), "probe".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if tokio::time::timeout(Duration::from_millis(50), probe.next())
            .await
            .is_ok()
        {
            break;
        }
    }
    probe.unsubscribe().await.unwrap();
}

/// Reads messages until one has `marker` as payload; returns those before it.
async fn until_marker(sub: &mut Subscriber, marker: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let m = next(sub).await;
        let payload = String::from_utf8_lossy(&m.payload).into_owned();
        if payload == marker {
            return got;
        }
        got.push((m.subject.to_string(), payload));
    }
}

/// A bare TCP NATS client, for exact bytes and bad input.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let mut raw = Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        };
        raw.read_until("\r\n").await;
        assert!(raw.text().starts_with("INFO {"), "{}", raw.text());
        raw.buf.clear();
        raw
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until the buffer contains `pattern`.
    async fn read_until(&mut self, pattern: &str) {
        let end = Instant::now() + LIMIT;
        while !self.text().contains(pattern) {
            let mut chunk = [0u8; 65536];
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => panic!("closed before {pattern:?}: {}", self.text()),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("timed out waiting for {pattern:?}; got {:?}", self.text()),
            }
        }
    }

    /// Reads until the server closes the connection; returns everything read.
    async fn until_closed(&mut self) -> String {
        let end = Instant::now() + LIMIT;
        loop {
            let mut chunk = [0u8; 65536];
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return self.text(),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("connection not closed; got {:?}", self.text()),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_wildcard_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &base_config(dir.path()));
    let sub_client = client(&ferry).await;
    let info = sub_client.server_info();
    assert_eq!(info.server_name, "ferry");
    assert!(info.headers);
    assert_eq!(info.max_payload, 1024 * 1024);
    assert_eq!(info.proto, 1);
    assert!(info.client_id > 0);
    assert_eq!(info.port, ferry.nats.unwrap().port());

    let mut star = sub_client.subscribe("sensors.*.1").await.unwrap();
    let mut fwc = sub_client.subscribe("sensors.>").await.unwrap();
    let publisher = client(&ferry).await;
    ready(&sub_client, &publisher).await;
    for s in [
        "sensors.temp.1",
        "sensors.temp.2",
        "sensors.a.b.1",
        "other.1",
        "sensors",
    ] {
        publisher.publish(s, s.into()).await.unwrap();
    }
    publisher
        .publish("sensors.end.1", "end".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let s = |v: &[&str]| {
        v.iter()
            .map(|x| (x.to_string(), x.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(until_marker(&mut star, "end").await, s(&["sensors.temp.1"]));
    assert_eq!(
        until_marker(&mut fwc, "end").await,
        s(&["sensors.temp.1", "sensors.temp.2", "sensors.a.b.1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_spreads_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &base_config(dir.path()));
    let (a, b, all) = (
        client(&ferry).await,
        client(&ferry).await,
        client(&ferry).await,
    );
    let mut qa = a
        .queue_subscribe("jobs.run", "workers".into())
        .await
        .unwrap();
    let mut qb = b
        .queue_subscribe("jobs.run", "workers".into())
        .await
        .unwrap();
    let mut plain = all.subscribe("jobs.run").await.unwrap();
    let publisher = client(&ferry).await;
    for c in [&a, &b, &all] {
        ready(c, &publisher).await;
    }
    for i in 0..100 {
        publisher
            .publish("jobs.run", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for i in 0..100 {
        assert_eq!(next(&mut plain).await.payload, i.to_string());
    }
    let (mut na, mut nb) = (0, 0);
    let end = Instant::now() + LIMIT;
    while na + nb < 100 {
        assert!(Instant::now() < end, "only {na}+{nb} queue deliveries");
        tokio::select! {
            Some(_) = qa.next() => na += 1,
            Some(_) = qb.next() => nb += 1,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    // Nothing beyond the 100: a round trip on both members flushes anything in flight.
    ready(&a, &publisher).await;
    ready(&b, &publisher).await;
    let extra = tokio::time::timeout(Duration::from_millis(200), async {
        tokio::select! { _ = qa.next() => {}, _ = qb.next() => {} }
    })
    .await;
    assert!(extra.is_err(), "a queue member got more than its share");
    assert!(na > 0 && nb > 0, "both members work: {na} / {nb}");
    assert_eq!(na + nb, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_headers_and_no_responders() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &base_config(dir.path()));
    let responder = client(&ferry).await;
    let mut svc = responder.subscribe("svc.upper").await.unwrap();
    ready(&responder, &responder).await;
    let r = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let mut headers = async_nats::HeaderMap::new();
            let seen = m
                .headers
                .as_ref()
                .and_then(|h| h.get("X-Id"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            headers.insert("X-Seen", seen.as_str());
            let up = String::from_utf8_lossy(&m.payload).to_uppercase();
            if let Some(reply) = m.reply {
                r.publish_with_headers(reply, headers, up.into())
                    .await
                    .unwrap();
            }
        }
    });
    let requester = client(&ferry).await;
    let answer = requester
        .request("svc.upper", "hello".into())
        .await
        .unwrap();
    assert_eq!(answer.payload, "HELLO");

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Id", "42");
    let answer = requester
        .request_with_headers("svc.upper", headers, "h".into())
        .await
        .unwrap();
    assert_eq!(answer.payload, "H");
    assert_eq!(
        answer.headers.unwrap().get("X-Seen").unwrap().as_str(),
        "42"
    );

    let err = requester
        .request("svc.nobody", "x".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsub_with_max_delivers_exactly_n() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &base_config(dir.path()));
    let mut raw = Raw::connect(ferry.nats.unwrap()).await;
    raw.send(b"CONNECT {\"verbose\":false}\r\nSUB cnt 1\r\nUNSUB 1 3\r\nSUB mark 2\r\nPING\r\n")
        .await;
    raw.read_until("PONG\r\n").await;
    raw.buf.clear();
    let publisher = client(&ferry).await;
    for i in 0..5 {
        publisher
            .publish("cnt", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.publish("mark", "m".into()).await.unwrap();
    publisher.flush().await.unwrap();
    raw.read_until("MSG mark").await;
    raw.read_until("m\r\n").await;
    assert_eq!(
        raw.text(),
        "MSG cnt 1 1\r\n0\r\nMSG cnt 1 1\r\n1\r\nMSG cnt 1 1\r\n2\r\nMSG mark 2 1\r\nm\r\n"
    );

    // The same through async-nats' own API.
    let c = client(&ferry).await;
    let mut sub = c.subscribe("cnt").await.unwrap();
    sub.unsubscribe_after(2).await.unwrap();
    ready(&c, &publisher).await;
    for i in 0..4 {
        publisher
            .publish("cnt", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "0");
    assert_eq!(next(&mut sub).await.payload, "1");
    assert!(
        tokio::time::timeout(LIMIT, sub.next())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_request_gets_puback_with_increasing_seq() {
    let dir = tempfile::tempdir().unwrap();
    // The upstream need not be up: the PubAck means "stored", not "forwarded".
    let (dead, _held) = common::dead_port();
    let config = base_config(dir.path()) + &forward_config(dead);
    let ferry = Ferry::start(dir.path(), &config);
    let c = client(&ferry).await;
    let mut last = 0u64;
    for i in 0..3 {
        let m = c.request(format!("sensors.{i}"), "v".into()).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["stream"], "ferry", "{v}");
        let seq = v["seq"].as_u64().unwrap();
        assert!(seq > last, "seq {seq} after {last}");
        assert_eq!(
            std::str::from_utf8(&m.payload).unwrap(),
            format!("{{\"stream\":\"ferry\",\"seq\":{seq}}}")
        );
        last = seq;
    }
    // A plain publish to a forwarded subject is fire-and-forget; a request elsewhere
    // with nobody listening still gets no-responders.
    c.publish("sensors.x", "fire".into()).await.unwrap();
    let err = c.request("elsewhere", "x".into()).await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_and_nats_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &base_config(dir.path()));
    let nc = client(&ferry).await;
    let mut exact = nc.subscribe("sensors.temp.1").await.unwrap();
    let mut fwc = nc.subscribe("sensors.>").await.unwrap();
    ready(&nc, &nc).await;

    // MQTT -> NATS, including a '.' inside a level.
    let dev = Device::connect(ferry.mqtt, "cross-dev").await;
    dev.client
        .subscribe("sensors/+/1", QoS::AtMostOnce)
        .await
        .unwrap();
    dev.client
        .publish("sensors/temp/1", QoS::AtLeastOnce, false, "21.5")
        .await
        .unwrap();
    dev.client
        .publish("sensors/a.b/2", QoS::AtLeastOnce, false, "dotted")
        .await
        .unwrap();
    let m = next(&mut exact).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("sensors.temp.1", &b"21.5"[..])
    );
    let m = next(&mut fwc).await;
    assert_eq!(m.subject.as_str(), "sensors.temp.1");
    let m = next(&mut fwc).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("sensors.a//b.2", &b"dotted"[..])
    );

    // NATS -> MQTT: keep publishing until the device's subscription is live.
    let received = dev.received.clone();
    wait_for(LIMIT, "MQTT device receives a NATS publish", || {
        let nc = nc.clone();
        tokio::spawn(async move {
            let _ = nc
                .publish("sensors.temp.1", Bytes::from_static(b"from-nats"))
                .await;
        });
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(t, p, _)| t == "sensors/temp/1" && p.as_ref() == b"from-nats")
    })
    .await;
    dev.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_events_are_forwarded_upstream_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosquitto = Mosquitto::start(dir.path(), port);
    Checker::register(port, "nats-chk", "site-a/#").await;
    let ferry = Ferry::start(
        dir.path(),
        &(base_config(dir.path()) + &forward_config(port)),
    );
    let checker = Checker::connect(port, "nats-chk", "site-a/#").await;
    let c = client(&ferry).await;
    for i in 0..60 {
        c.publish(format!("sensors.{}", i % 3), i.to_string().into())
            .await
            .unwrap();
    }
    c.flush().await.unwrap();
    checker.wait_count(60, Duration::from_secs(20)).await;
    assert_exact_in_order(&checker.received.lock().unwrap(), 60, 3);
    checker.close().await;
}

/// A healthy client does a full round trip through ferry.
async fn still_works(c: &Client, sub: &mut Subscriber, tag: &str) {
    c.publish("health", tag.to_string().into()).await.unwrap();
    assert_eq!(next(sub).await.payload, tag.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &base_config(dir.path()));
    let addr = ferry.nats.unwrap();
    let good = client(&ferry).await;
    let mut health = good.subscribe("health").await.unwrap();
    good.flush().await.unwrap();
    still_works(&good, &mut health, "start").await;

    let mut raw = Raw::connect(addr).await;
    raw.send(b"HELLO WORLD\r\n").await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Unknown Protocol Operation'\r\n"
    );
    still_works(&good, &mut health, "after-garbage").await;

    let mut raw = Raw::connect(addr).await;
    raw.send(b"PUB big 10485760\r\n").await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Maximum Payload Violation'\r\n"
    );
    still_works(&good, &mut health, "after-big").await;

    let mut raw = Raw::connect(addr).await;
    let mut line = b"SUB ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 8192));
    raw.send(&line).await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'maximum control line exceeded'\r\n"
    );
    still_works(&good, &mut health, "after-long-line").await;

    let mut raw = Raw::connect(addr).await;
    raw.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB health 5 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        .await;
    // nats-server closes on a bad header block without an -ERR.
    assert_eq!(raw.until_closed().await, "");
    still_works(&good, &mut health, "after-lying-hpub").await;

    // Errors that keep the connection open.
    let mut raw = Raw::connect(addr).await;
    raw.send(
        b"CONNECT {\"verbose\":true,\"pedantic\":true}\r\nSUB a..b 1\r\nPUB a.* 0\r\n\r\nPING\r\n",
    )
    .await;
    raw.read_until("PONG\r\n").await;
    assert_eq!(
        raw.text(),
        "+OK\r\n-ERR 'Invalid Subject'\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n"
    );
    still_works(&good, &mut health, "end").await;
    assert_eq!(
        good.connection_state(),
        async_nats::connection::State::Connected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_pings_close_a_stale_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()).replace(
        "[nats]\n",
        "[nats]\nping_interval = \"100ms\"\nmax_pings_out = 2\n",
    );
    let ferry = Ferry::start(dir.path(), &config);
    let mut raw = Raw::connect(ferry.nats.unwrap()).await;
    raw.send(b"CONNECT {\"verbose\":false}\r\n").await;
    assert_eq!(
        raw.until_closed().await,
        "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
    );
    // A client that answers stays connected.
    let c = client(&ferry).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    ready(&c, &c).await;
    assert_eq!(
        c.connection_state(),
        async_nats::connection::State::Connected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_off_without_slowing_others() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path()).replace(
        "[nats]\n",
        "[nats]\nmax_payload = \"64KiB\"\nmax_pending = \"256KiB\"\n",
    );
    let ferry = Ferry::start(dir.path(), &config);
    let mut raw = Raw::connect(ferry.nats.unwrap()).await;
    raw.send(b"CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n")
        .await;
    raw.read_until("PONG\r\n").await;
    // From now on `raw` never reads.
    let publisher = client(&ferry).await;
    let payload = Bytes::from(vec![b'x'; 32 * 1024]);
    let start = Instant::now();
    for _ in 0..600 {
        publisher.publish("flood", payload.clone()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    ferry.wait_log(&["slow consumer"], LIMIT);
    assert!(start.elapsed() < LIMIT, "publisher was slowed down");
    let echo = client(&ferry).await;
    let mut sub = echo.subscribe("after").await.unwrap();
    ready(&echo, &publisher).await;
    publisher.publish("after", "ok".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "ok");
}

/// A durable request's PubAck goes to the requester's inbox and nowhere else: with a `#`
/// forward rule it is neither counted as received nor stored (so never forwarded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_reply_is_never_stored_nor_counted_as_received() {
    let dir = tempfile::tempdir().unwrap();
    let (dead, _held) = common::dead_port();
    let config = base_config(dir.path())
        + &forward_config(dead).replace("filter = \"sensors/#\"", "filter = \"#\"")
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let ferry = Ferry::start(dir.path(), &config);
    let c = client(&ferry).await;
    for i in 0..3 {
        let m = c.request(format!("sensors.{i}"), "v".into()).await.unwrap();
        assert!(
            std::str::from_utf8(&m.payload)
                .unwrap()
                .starts_with("{\"stream\":\"ferry\"")
        );
    }
    let ferry = tokio::task::spawn_blocking(move || {
        assert_eq!(ferry.metric("ferry_events_received_total"), 3);
        assert_eq!(ferry.metric("ferry_store_events"), 3, "the requests only");
        ferry
    })
    .await
    .unwrap();
    drop(ferry);
}
