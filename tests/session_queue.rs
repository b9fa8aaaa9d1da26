//! Durable queues for persistent MQTT sessions: the QoS 1/2 messages a persistent session
//! (3.1.1 `clean_session = 0`, MQTT 5 Session Expiry > 0) has not acknowledged are rows in
//! the store, not memory. A QoS 1 publish is PUBACKed once its queued row is durable, so
//! every acknowledged publish survives a graceful restart and a SIGKILL and arrives, in
//! publish order, with its exact payload and properties; only deliveries the subscriber
//! had not acknowledged come again. One session's queue is bounded by
//! `mqtt.max_queued_bytes` (the rest dropped and counted), and a clean start discards it.

mod common;

use bytes::Bytes;
use common::raw::{End, Raw};
use common::raw5::{Raw5, filter_of};
use common::{Ferry, base_config, wait_until};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, ConnectReturnCode as Code5, Disconnect, DisconnectReasonCode,
    Packet as Packet5, PubAckReason, PubComp as PubComp5, PubRecReason, PubRel as PubRel5,
    Publish as Publish5, PublishProperties, SubscribeReasonCode as SubCode5,
};
use rumqttc::{ConnectReturnCode, Packet, PubAck, Publish, QoS, SubscribeReasonCode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const QUEUED: &str = "ferry_store_events{table=\"session_queue\"}";
const QUEUED_BYTES: &str = "ferry_store_bytes{table=\"session_queue\"}";
const OFFLINE_MEMORY: &str = "ferry_memory_used_bytes{part=\"offline_sessions\"}";
const OVERFLOW: &str = "ferry_events_dropped_total{reason=\"offline_overflow\"}";
/// Publishes a publisher keeps unacknowledged at once.
const WINDOW: usize = 100;
/// A topic every test subscriber's filter matches, published after the queued messages:
/// once it arrives, everything queued before it has been delivered.
const MARKER: &str = "q/marker";

/// The base config with `mqtt` keys and a metrics endpoint.
fn config(dir: &Path, mqtt: &str) -> String {
    base_config(dir).replace("[mqtt]\n", &format!("[mqtt]\n{mqtt}"))
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n"
}

/// Starts ferry and waits for its metrics endpoint (ready after the listeners).
fn start(dir: &Path, cfg: &str) -> Ferry {
    let f = Ferry::start(dir, cfg);
    f.wait_log(&["metrics endpoint ready"], T);
    f
}

/// One series of /metrics, None when ferry does not render it.
fn metric(f: &Ferry, series: &str) -> Option<u64> {
    f.metrics().lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn metric_now(f: &Ferry, series: &str) -> u64 {
    metric(f, series).unwrap_or_else(|| panic!("{series} is not in /metrics"))
}

/// Waits until `series` is exactly `want`.
fn wait_metric(f: &Ferry, series: &str, want: u64) {
    let end = Instant::now() + T;
    loop {
        let got = metric(f, series);
        if got == Some(want) {
            return;
        }
        assert!(got.is_some(), "{series} is not in /metrics");
        assert!(
            Instant::now() < end,
            "{series} is {got:?} after {T:?}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The payload of message `i`: its index as decimal text.
fn payload(i: usize) -> Vec<u8> {
    i.to_string().into_bytes()
}

fn pkid_of(i: usize) -> u16 {
    (i % 65_535) as u16 + 1
}

/// A 3.1.1 persistent session that subscribes to `filter` (granted `qos`) and leaves;
/// returns once ferry closed the connection, which it does after parking the session.
fn park_subscriber(addr: SocketAddr, id: &str, filter: &str, qos: QoS) {
    let (mut c, ack) = Raw::connect(addr, id, false, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present, "{id}: a new session");
    assert_eq!(
        c.subscribe(1, filter, qos),
        vec![SubscribeReasonCode::Success(qos)]
    );
    c.send(Packet::Disconnect);
    c.expect_closed(T);
}

/// Publishes `payloads` at QoS 1 to `topic` from a clean 3.1.1 client, at most
/// [`WINDOW`] unacknowledged at a time; returns once every one was PUBACKed.
fn publish_acked(addr: SocketAddr, topic: &str, payloads: &[Vec<u8>]) {
    let (mut p, ack) = Raw::connect(addr, "publisher", true, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let mut outstanding = VecDeque::new();
    let mut next = 0;
    while next < payloads.len() || !outstanding.is_empty() {
        while next < payloads.len() && outstanding.len() < WINDOW {
            p.publish(
                topic,
                QoS::AtLeastOnce,
                pkid_of(next),
                false,
                &payloads[next],
            );
            outstanding.push_back(pkid_of(next));
            next += 1;
        }
        match p.recv(T) {
            Ok(Packet::PubAck(a)) => {
                let at = outstanding
                    .iter()
                    .position(|k| *k == a.pkid)
                    .unwrap_or_else(|| panic!("PUBACK for {} not outstanding", a.pkid));
                outstanding.remove(at);
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    p.send(Packet::Disconnect);
    p.expect_closed(T);
}

/// Messages `0..n` at QoS 1 to `topic`, every one PUBACKed.
fn publish_numbered(addr: SocketAddr, topic: &str, n: usize) {
    let payloads: Vec<Vec<u8>> = (0..n).map(payload).collect();
    publish_acked(addr, topic, &payloads);
}

fn publish_marker(addr: SocketAddr) {
    publish_acked(addr, MARKER, &[b"marker".to_vec()]);
}

/// The next PUBLISH on `c`, PUBACKed if it is QoS 1.
fn next_acked(c: &mut Raw) -> Publish {
    let p = c.next_publish(T);
    assert_ne!(p.qos, QoS::ExactlyOnce, "only QoS 0/1 is published here");
    if p.qos == QoS::AtLeastOnce {
        c.send(Packet::PubAck(PubAck::new(p.pkid)));
    }
    p
}

/// The next `n` PUBLISHes on `c`, each PUBACKed.
fn receive_n(c: &mut Raw, n: usize) -> Vec<Publish> {
    (0..n)
        .map(|i| match c.recv(T) {
            Ok(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    c.send(Packet::PubAck(PubAck::new(p.pkid)));
                }
                p
            }
            other => panic!("message {i} of {n}: expected PUBLISH, got {other:?}"),
        })
        .collect()
}

/// Every PUBLISH up to and including the [`MARKER`] (each PUBACKed); returns those
/// before it.
fn drain_to_marker(c: &mut Raw) -> Vec<Publish> {
    let mut got = Vec::new();
    loop {
        let p = next_acked(c);
        if p.topic == MARKER {
            assert_eq!(&p.payload[..], b"marker");
            return got;
        }
        got.push(p);
    }
}

/// The index in a numbered payload, checking the payload is exactly its decimal text.
fn index_of(p: &Publish) -> usize {
    let text = std::str::from_utf8(&p.payload).expect("a decimal payload");
    let i: usize = text.parse().unwrap_or_else(|_| panic!("payload {text:?}"));
    assert_eq!(p.payload[..], payload(i)[..], "payload of {i}");
    i
}

/// Asserts `got` is exactly the messages `want` on `topic`, in order, at `qos`.
fn assert_sequence(got: &[Publish], topic: &str, qos: QoS, want: std::ops::Range<usize>) {
    let indices: Vec<usize> = got.iter().map(index_of).collect();
    let expected: Vec<usize> = want.clone().collect();
    if indices != expected {
        let first_diff = indices
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(indices.len().min(expected.len()));
        panic!(
            "got {} messages, want {} ({want:?}); first difference at position {first_diff}: \
             got {:?}, want {:?}",
            indices.len(),
            expected.len(),
            indices.get(first_diff),
            expected.get(first_diff)
        );
    }
    for p in got {
        assert_eq!((p.topic.as_str(), p.qos), (topic, qos), "message {:?}", p);
    }
}

/// Reconnects `id` persistently and asserts ferry kept the session.
fn resume(addr: SocketAddr, id: &str) -> Raw {
    let (c, ack) = Raw::connect(addr, id, false, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(ack.session_present, "{id}: session_present = 1");
    c
}

/// Resumes `id`, publishes the marker and asserts it is the first thing delivered: the
/// session has nothing queued. Leaves again.
fn assert_nothing_queued(addr: SocketAddr, id: &str) {
    let mut c = resume(addr, id);
    publish_marker(addr);
    let got = drain_to_marker(&mut c);
    assert!(
        got.is_empty(),
        "{} message(s) delivered again, the first {:?}",
        got.len(),
        got.first()
    );
    c.send(Packet::Disconnect);
    c.expect_closed(T);
}

/// Messages published while a 3.1.1 persistent session is offline are rows in the
/// store, not memory; they survive a graceful restart and arrive after it in publish
/// order; acknowledged, they are gone, through a reconnect and another restart.
#[test]
fn an_offline_queue_survives_a_graceful_restart_in_publish_order() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let f = start(dir.path(), &cfg);
    park_subscriber(f.mqtt, "sub", "q/#", QoS::AtLeastOnce);
    publish_numbered(f.mqtt, "q/data", N);
    wait_metric(&f, QUEUED, N as u64);
    let bytes = metric_now(&f, QUEUED_BYTES);
    assert!(bytes >= N as u64, "{N} queued rows take {bytes} bytes");
    assert_eq!(
        metric_now(&f, OFFLINE_MEMORY),
        0,
        "an offline session's queue is not held in memory"
    );

    assert_eq!(f.terminate(), Some(0));
    let f = start(dir.path(), &cfg);
    assert_eq!(metric_now(&f, QUEUED), N as u64, "rows after the restart");
    assert_eq!(
        metric_now(&f, QUEUED_BYTES),
        bytes,
        "bytes after the restart"
    );
    assert_eq!(metric_now(&f, OFFLINE_MEMORY), 0);

    take_all(&f, N);

    assert_nothing_queued(f.mqtt, "sub");
    assert_eq!(f.terminate(), Some(0));
    let f = start(dir.path(), &cfg);
    assert_eq!(metric_now(&f, QUEUED), 0);
    assert_nothing_queued(f.mqtt, "sub");
}

/// Resumes "sub", takes `n` numbered messages on `q/data` in order and acknowledges
/// them, waits for their rows to go, and leaves.
fn take_all(f: &Ferry, n: usize) {
    let mut c = resume(f.mqtt, "sub");
    let got = receive_n(&mut c, n);
    assert_sequence(&got, "q/data", QoS::AtLeastOnce, 0..n);
    wait_metric(f, QUEUED, 0);
    wait_metric(f, QUEUED_BYTES, 0);
    c.send(Packet::Disconnect);
    c.expect_closed(T);
}

/// Every PUBACKed publish to an offline session survives a SIGKILL of ferry, at the QoS
/// of the publish (below the granted 2); once acknowledged, nothing comes back after
/// another SIGKILL.
#[test]
fn an_offline_queue_survives_sigkill() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let f = start(dir.path(), &cfg);
    park_subscriber(f.mqtt, "sub", "q/#", QoS::ExactlyOnce);
    publish_numbered(f.mqtt, "q/data", N);
    // No waiting for anything after the last PUBACK: that alone says the rows are durable.
    f.kill9();

    let f = start(dir.path(), &cfg);
    assert_eq!(metric_now(&f, QUEUED), N as u64, "rows after SIGKILL");
    assert_eq!(metric_now(&f, OFFLINE_MEMORY), 0);
    take_all(&f, N);

    f.kill9();
    let f = start(dir.path(), &cfg);
    assert_eq!(metric_now(&f, QUEUED), 0, "acknowledged rows came back");
    assert_nothing_queued(f.mqtt, "sub");
}

/// SIGKILL while a publisher streams to an offline session: every publish that was
/// PUBACKed before the kill arrives after the restart, in order, exactly once; what
/// arrives besides were publishes committed but not yet acknowledged, still in order.
#[test]
fn every_acknowledged_publish_survives_a_sigkill_mid_stream() {
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let f = start(dir.path(), &cfg);
    park_subscriber(f.mqtt, "sub", "q/#", QoS::AtLeastOnce);

    let acked = Arc::new(Mutex::new(Vec::new()));
    let publisher = {
        let (addr, acked) = (f.mqtt, acked.clone());
        std::thread::spawn(move || {
            let (mut p, _) = Raw::connect(addr, "publisher", true, 30);
            let mut outstanding = 0;
            let mut next = 0;
            while next < N || outstanding > 0 {
                while next < N && outstanding < WINDOW {
                    p.publish(
                        "q/data",
                        QoS::AtLeastOnce,
                        pkid_of(next),
                        false,
                        &payload(next),
                    );
                    outstanding += 1;
                    next += 1;
                }
                match p.recv(T) {
                    // N < 65535: pkid - 1 is the index.
                    Ok(Packet::PubAck(a)) => {
                        acked.lock().unwrap().push(usize::from(a.pkid) - 1);
                        outstanding -= 1;
                    }
                    Err(End::Closed) => return,
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            }
        })
    };
    wait_until(T, "a quarter of the publishes acknowledged", || {
        acked.lock().unwrap().len() >= N / 4
    });
    f.kill9();
    publisher.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} of {N} publishes acknowledged before SIGKILL",
        acked.len()
    );

    let f = start(dir.path(), &cfg);
    let rows = metric_now(&f, QUEUED);
    let mut c = resume(f.mqtt, "sub");
    publish_marker(f.mqtt);
    let got = drain_to_marker(&mut c);
    let indices: Vec<usize> = got.iter().map(index_of).collect();
    assert!(
        indices.windows(2).all(|w| w[0] < w[1]),
        "not in publish order, or repeated: {indices:?}"
    );
    let lost: Vec<usize> = acked
        .iter()
        .copied()
        .filter(|i| indices.binary_search(i).is_err())
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged publishes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(
        rows,
        indices.len() as u64,
        "{QUEUED} after the restart vs messages delivered"
    );
    for p in &got {
        assert_eq!((p.topic.as_str(), p.qos), ("q/data", QoS::AtLeastOnce));
    }
    wait_metric(&f, QUEUED, 0);
}

/// An online persistent subscriber that received more than it acknowledged (and has
/// more queued beyond its in-flight window): after a SIGKILL, exactly the messages it
/// did not acknowledge arrive, in order, none it did.
#[test]
fn unacknowledged_deliveries_to_an_online_session_come_again_after_sigkill() {
    const N: usize = 300;
    const ACKED: usize = 100;
    const UNACKED: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let f = start(dir.path(), &cfg);
    let (mut sub, ack) = Raw::connect(f.mqtt, "sub", false, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(
        sub.subscribe(1, "q/#", QoS::AtLeastOnce),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // The subscriber reads nothing while all N are published and acknowledged: all but
    // its in-flight window wait in the store.
    publish_numbered(f.mqtt, "q/data", N);
    wait_metric(&f, QUEUED, N as u64);
    let got = receive_n(&mut sub, ACKED);
    assert_sequence(&got, "q/data", QoS::AtLeastOnce, 0..ACKED);
    let unacked: Vec<Publish> = (0..UNACKED).map(|_| sub.next_publish(T)).collect();
    assert_sequence(&unacked, "q/data", QoS::AtLeastOnce, ACKED..ACKED + UNACKED);
    // The acknowledged rows are gone, the received but unacknowledged ones kept.
    wait_metric(&f, QUEUED, (N - ACKED) as u64);
    f.kill9();
    drop(sub);

    let f = start(dir.path(), &cfg);
    assert_eq!(metric_now(&f, QUEUED), (N - ACKED) as u64);
    let mut c = resume(f.mqtt, "sub");
    publish_marker(f.mqtt);
    let again = drain_to_marker(&mut c);
    assert_sequence(&again, "q/data", QoS::AtLeastOnce, ACKED..N);
    wait_metric(&f, QUEUED, 0);
}

/// One session's queue is bounded by `mqtt.max_queued_bytes`: the first k messages are
/// kept, the rest dropped and counted, and the publisher is still acknowledged (0).
#[test]
fn an_offline_queue_is_bounded_by_max_queued_bytes() {
    const N: usize = 300;
    const LIMIT: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "max_queued_bytes = \"64KiB\"\n");
    let f = start(dir.path(), &cfg);
    park_subscriber(f.mqtt, "sub", "q/#", QoS::AtLeastOnce);
    // ~500 bytes each: N of them are more than twice the limit.
    let big = |i: usize| format!("{i}:{}", "x".repeat(500)).into_bytes();

    let mut p = Raw5::simple(f.mqtt, "publisher5");
    let mut next = 0;
    while next < N {
        let batch = next..(next + WINDOW).min(N);
        for i in batch.clone() {
            p.publish("q/data", QoS5::AtLeastOnce, pkid_of(i), &big(i), None);
        }
        let mut left: Vec<u16> = batch.clone().map(pkid_of).collect();
        while !left.is_empty() {
            match p.recv(T) {
                Some(Packet5::PubAck(a)) => {
                    assert_eq!(a.reason, PubAckReason::Success, "PUBACK of {}", a.pkid);
                    let at = left
                        .iter()
                        .position(|k| *k == a.pkid)
                        .unwrap_or_else(|| panic!("PUBACK for {} not outstanding", a.pkid));
                    left.remove(at);
                }
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        next = batch.end;
    }

    let kept = metric_now(&f, QUEUED);
    let dropped = metric_now(&f, OVERFLOW);
    eprintln!("{kept} of {N} queued, {dropped} dropped");
    assert!(
        kept > 0 && kept < N as u64,
        "{kept} of {N} queued under {LIMIT} bytes"
    );
    assert_eq!(dropped, N as u64 - kept, "{OVERFLOW}");
    let bytes = metric_now(&f, QUEUED_BYTES);
    assert!(
        bytes > 0 && bytes <= LIMIT,
        "{QUEUED_BYTES} = {bytes}, over max_queued_bytes"
    );
    assert_eq!(metric_now(&f, OFFLINE_MEMORY), 0);

    let mut c = resume(f.mqtt, "sub");
    publish_marker(f.mqtt);
    let got = drain_to_marker(&mut c);
    assert_eq!(got.len() as u64, kept, "messages delivered vs {QUEUED}");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(
            m.payload[..],
            big(i)[..],
            "message {i}: the first k, in order"
        );
        assert_eq!((m.topic.as_str(), m.qos), ("q/data", QoS::AtLeastOnce));
    }
    assert_eq!(metric_now(&f, OVERFLOW), dropped, "nothing more dropped");
    wait_metric(&f, QUEUED, 0);
    wait_metric(&f, QUEUED_BYTES, 0);
}

fn expiry() -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval: Some(3600),
        ..ConnectProperties::new()
    }
}

/// Waits for ferry to close `c`'s connection.
fn closed5(c: &mut Raw5) {
    let start = Instant::now();
    assert!(c.recv(T).is_none(), "a packet instead of the close");
    assert!(start.elapsed() < T, "connection still open after {T:?}");
}

/// The properties of MQTT 5 message `i`.
fn props5(i: usize) -> PublishProperties {
    PublishProperties {
        user_properties: vec![
            ("i".into(), i.to_string()),
            ("site".into(), "edge-1".into()),
        ],
        content_type: Some("text/plain".into()),
        response_topic: Some(format!("reply/{i}")),
        correlation_data: Some(Bytes::from(format!("corr-{i}"))),
        ..PublishProperties::default()
    }
}

/// QoS 2 messages with user properties, a content type, a response topic and
/// correlation data, queued for an offline MQTT 5 session, survive a SIGKILL and
/// arrive with those properties and the subscription identifier; after PUBCOMP a
/// reconnect gets nothing.
#[test]
fn mqtt5_qos2_messages_keep_their_properties_through_a_restart() {
    const N: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let f = start(dir.path(), &cfg);
    let (mut s, ack) = Raw5::connect(f.mqtt, "sub5", true, expiry(), None);
    assert_eq!(ack.code, Code5::Success);
    assert_eq!(
        s.subscribe_with(1, vec![filter_of("q/#", QoS5::ExactlyOnce)], Some(7)),
        vec![SubCode5::Success(QoS5::ExactlyOnce)]
    );
    s.send(Packet5::Disconnect(Disconnect::new(
        DisconnectReasonCode::NormalDisconnection,
    )));
    closed5(&mut s);

    let mut p = Raw5::simple(f.mqtt, "publisher5");
    for i in 0..N {
        let pkid = pkid_of(i);
        p.publish(
            "q/v5",
            QoS5::ExactlyOnce,
            pkid,
            &payload(i),
            Some(props5(i)),
        );
        match p.recv(T) {
            Some(Packet5::PubRec(r)) => {
                assert_eq!((r.pkid, r.reason), (pkid, PubRecReason::Success))
            }
            other => panic!("expected PUBREC, got {other:?}"),
        }
        p.send(Packet5::PubRel(PubRel5::new(pkid, None)));
        match p.recv(T) {
            Some(Packet5::PubComp(c)) => assert_eq!(c.pkid, pkid),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }
    wait_metric(&f, QUEUED, N as u64);
    assert_eq!(metric_now(&f, OFFLINE_MEMORY), 0);
    f.kill9();

    let f = start(dir.path(), &cfg);
    assert_eq!(metric_now(&f, QUEUED), N as u64);
    let (mut s, ack) = Raw5::connect(f.mqtt, "sub5", false, expiry(), None);
    assert_eq!(ack.code, Code5::Success);
    assert!(ack.session_present, "session_present = 1");
    // Each PUBLISH answered with PUBREC, each PUBREL with PUBCOMP, in whatever order
    // ferry interleaves them.
    let mut got: Vec<Publish5> = Vec::new();
    let mut completed = Vec::new();
    while completed.len() < N {
        match s.recv(T) {
            Some(Packet5::Publish(m)) => {
                s.send(Packet5::PubRec(rumqttc::v5::mqttbytes::v5::PubRec::new(
                    m.pkid, None,
                )));
                got.push(m);
            }
            Some(Packet5::PubRel(r)) => {
                assert!(
                    got.iter().any(|m| m.pkid == r.pkid),
                    "PUBREL {} for no PUBLISH",
                    r.pkid
                );
                s.send(Packet5::PubComp(PubComp5::new(r.pkid, None)));
                completed.push(r.pkid);
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
    assert_eq!(got.len(), N, "{got:?}");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(&m.topic[..], b"q/v5");
        assert_eq!(
            m.payload[..],
            payload(i)[..],
            "message {i} in publish order"
        );
        assert_eq!(m.qos, QoS5::ExactlyOnce);
        let mut want = props5(i);
        want.subscription_identifiers = vec![7];
        assert_eq!(
            m.properties.as_ref(),
            Some(&want),
            "properties of message {i}"
        );
    }
    wait_metric(&f, QUEUED, 0);
    s.send(Packet5::Disconnect(Disconnect::new(
        DisconnectReasonCode::NormalDisconnection,
    )));
    closed5(&mut s);

    let (mut s, ack) = Raw5::connect(f.mqtt, "sub5", false, expiry(), None);
    assert!(ack.session_present);
    let mut p = Raw5::simple(f.mqtt, "publisher5");
    p.publish("q/marker", QoS5::AtLeastOnce, 100, b"marker", None);
    match p.recv(T) {
        Some(Packet5::PubAck(a)) => assert_eq!((a.pkid, a.reason), (100, PubAckReason::Success)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let m = s.next_publish(T);
    assert_eq!(
        (&m.topic[..], &m.payload[..]),
        (&b"q/marker"[..], &b"marker"[..]),
        "nothing before the marker after PUBCOMP"
    );
}

/// A clean-start reconnect discards the session and its queue: the rows go, a restart
/// does not bring them back, and the next persistent session starts empty.
#[test]
fn a_clean_start_discards_the_queue() {
    const N: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let f = start(dir.path(), &cfg);
    park_subscriber(f.mqtt, "sub", "q/#", QoS::AtLeastOnce);
    publish_numbered(f.mqtt, "q/data", N);
    wait_metric(&f, QUEUED, N as u64);

    let (mut c, ack) = Raw::connect(f.mqtt, "sub", true, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present, "a clean session");
    c.send(Packet::Disconnect);
    c.expect_closed(T);
    wait_metric(&f, QUEUED, 0);
    wait_metric(&f, QUEUED_BYTES, 0);

    assert_eq!(f.terminate(), Some(0));
    let f = start(dir.path(), &cfg);
    assert_eq!(metric_now(&f, QUEUED), 0, "discarded rows came back");
    let (mut c, ack) = Raw::connect(f.mqtt, "sub", false, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present, "session_present = 0");
    assert_eq!(
        c.subscribe(1, "q/#", QoS::AtLeastOnce),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    publish_marker(f.mqtt);
    let got = drain_to_marker(&mut c);
    assert!(
        got.is_empty(),
        "{} discarded message(s) delivered, the first {:?}",
        got.len(),
        got.first()
    );
    wait_metric(&f, QUEUED, 0);
}
