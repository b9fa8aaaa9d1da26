//! Sessions cannot lock the broker: clean sessions do not count against
//! `mqtt.max_sessions`, every expiry is capped at `mqtt.max_session_expiry`, offline
//! sessions are evicted (least recently connected first) for new ones, and a takeover is
//! not held up by an old connection stuck writing to a client that stopped reading.

mod common;

use common::raw::Raw;
use common::raw5::Raw5;
use common::{Ferry, base_config, wait_until};
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, ConnectReturnCode as Code5};
use rumqttc::{ConnectReturnCode, Packet, PubAck, QoS};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const SLOW_SUBSCRIBER: &str = "ferry_events_dropped_total{reason=\"slow_subscriber\"}";

/// The base config with `mqtt` keys, `store` keys and a metrics endpoint.
fn config(dir: &std::path::Path, mqtt: &str, store: &str) -> String {
    base_config(dir)
        .replace("[mqtt]\n", &format!("[mqtt]\n{mqtt}"))
        .replace("[store]\n", &format!("[store]\n{store}"))
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n"
}

/// A 3.1.1 persistent session that connects and says goodbye; returns once ferry closed
/// the connection, which it does after the session was parked.
fn connect_and_leave(addr: SocketAddr, id: &str) -> bool {
    let (mut c, ack) = Raw::connect(addr, id, false, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success, "{id}");
    c.send(Packet::Disconnect);
    c.expect_closed(T);
    ack.session_present
}

/// SUBSCRIBE, skipping the PUBLISHes queued for the session that arrive before SUBACK.
fn subscribe_past_publishes(c: &mut Raw, pkid: u16, filter: &str) {
    let mut s = rumqttc::Subscribe::new(filter, QoS::AtLeastOnce);
    s.pkid = pkid;
    c.send(Packet::Subscribe(s));
    let end = Instant::now() + T;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match c.recv(left) {
            Ok(Packet::SubAck(a)) if a.pkid == pkid => return,
            Ok(Packet::Publish(p)) if p.qos == QoS::AtMostOnce => {}
            Ok(Packet::Publish(p)) => c.send(Packet::PubAck(PubAck::new(p.pkid))),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

#[test]
fn a_flood_of_persistent_connects_cannot_lock_out_new_clients() {
    const MAX: u64 = 50;
    const FLOOD: u64 = 10_000;
    const THREADS: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    // fsync at most once a second: the flood writes and deletes a session record per
    // CONNECT, and the test is about the session table, not the disk.
    let f = Ferry::start(
        dir.path(),
        &config(dir.path(), "max_sessions = 50\n", "fsync = \"1s\"\n"),
    );
    let addr = f.mqtt;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in (t..FLOOD).step_by(THREADS as usize) {
                    assert!(!connect_and_leave(addr, &format!("flood-{i}")));
                }
            });
        }
    });
    eprintln!("{FLOOD} persistent CONNECTs in {:?}", started.elapsed());
    // Every flood session got its place; 50 are left, the rest were evicted.
    assert_eq!(f.metric("ferry_mqtt_sessions_evicted_total"), FLOOD - MAX);
    assert_eq!(f.metric("ferry_mqtt_sessions"), MAX);
    // A new persistent client gets in, evicting one more; so does a clean one (uncounted).
    let (mut late, ack) = Raw::connect(addr, "late", false, 30);
    assert_eq!(
        (ack.code, ack.session_present),
        (ConnectReturnCode::Success, false)
    );
    assert_eq!(
        f.metric("ferry_mqtt_sessions_evicted_total"),
        FLOOD - MAX + 1
    );
    let (_clean, ack) = Raw::connect(addr, "clean", true, 30);
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(
        f.metric("ferry_mqtt_sessions_evicted_total"),
        FLOOD - MAX + 1
    );
    late.send(Packet::Disconnect);
    late.expect_closed(T);
    // The least recently connected went first: the flood's first session is gone, the
    // newest one is kept (and resuming it evicts nothing).
    assert!(
        connect_and_leave(addr, "late"),
        "the newest session is kept"
    );
    assert_eq!(
        f.metric("ferry_mqtt_sessions_evicted_total"),
        FLOOD - MAX + 1
    );
    assert!(
        !connect_and_leave(addr, "flood-0"),
        "the oldest was evicted"
    );
    assert_eq!(
        f.metric("ferry_mqtt_sessions_evicted_total"),
        FLOOD - MAX + 2
    );
    f.wait_log(
        &["offline MQTT session evicted", "mqtt.max_sessions reached"],
        T,
    );
}

#[test]
fn clean_sessions_beyond_max_sessions_all_connect() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ferry::start(dir.path(), &config(dir.path(), "max_sessions = 5\n", ""));
    let persistent: Vec<Raw> = (0..5)
        .map(|i| {
            let (c, ack) = Raw::connect(f.mqtt, &format!("p{i}"), false, 30);
            assert_eq!(ack.code, ConnectReturnCode::Success);
            c
        })
        .collect();
    // Every counted session is online: nothing to evict, a new persistent one is refused.
    let (mut refused, ack) = Raw::connect(f.mqtt, "p5", false, 30);
    assert_eq!(ack.code, ConnectReturnCode::ServiceUnavailable);
    refused.expect_closed(T);
    let expiry = ConnectProperties {
        session_expiry_interval: Some(60),
        ..ConnectProperties::new()
    };
    let (_r, ack) = Raw5::connect(f.mqtt, "p5v5", true, expiry, None);
    assert_eq!(ack.code, Code5::QuotaExceeded);
    // Clean sessions, ten times max_sessions, all held at once: none refused.
    let clean: Vec<Raw> = (0..50)
        .map(|i| {
            let (c, ack) = Raw::connect(f.mqtt, &format!("c{i}"), true, 30);
            assert_eq!(ack.code, ConnectReturnCode::Success, "clean session {i}");
            c
        })
        .collect();
    let (_v5, ack) = Raw5::connect(f.mqtt, "c-v5", true, ConnectProperties::new(), None);
    assert_eq!(ack.code, Code5::Success);
    assert_eq!(f.metric("ferry_mqtt_sessions"), 5 + 50 + 1);
    assert_eq!(f.metric("ferry_mqtt_sessions_evicted_total"), 0);
    drop((persistent, clean));
}

#[test]
fn a_311_persistent_session_expires_after_max_session_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ferry::start(
        dir.path(),
        &config(dir.path(), "max_session_expiry = \"2s\"\n", ""),
    );
    let (mut a, ack) = Raw::connect(f.mqtt, "expiring", false, 30);
    assert!(!ack.session_present);
    a.subscribe(1, "exp/#", QoS::AtLeastOnce);
    let left = Instant::now();
    a.send(Packet::Disconnect);
    a.expect_closed(T);
    wait_until(T, "the 3.1.1 session to expire", || {
        f.metric("ferry_mqtt_sessions_expired_total") == 1
    });
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "expired after {:?}, before max_session_expiry",
        left.elapsed()
    );
    f.wait_log(&["client_id=expiring", "session expired"], T);
    let (_a, ack) = Raw::connect(f.mqtt, "expiring", false, 30);
    assert!(!ack.session_present, "the expired session is gone");
}

#[test]
fn mqtt5_session_expiry_above_the_cap_is_lowered_and_told_in_connack() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ferry::start(
        dir.path(),
        &config(dir.path(), "max_session_expiry = \"1h\"\n", ""),
    );
    let granted = |id: &str, asked: Option<u32>| {
        let props = ConnectProperties {
            session_expiry_interval: asked,
            ..ConnectProperties::new()
        };
        let (_c, ack) = Raw5::connect(f.mqtt, id, true, props, None);
        assert_eq!(ack.code, Code5::Success);
        ack.properties.and_then(|p| p.session_expiry_interval)
    };
    assert_eq!(
        granted("never", Some(u32::MAX)),
        Some(3600),
        "0xFFFFFFFF is capped"
    );
    assert_eq!(granted("long", Some(7200)), Some(3600));
    assert_eq!(
        granted("within", Some(3600)),
        None,
        "granted as asked: not sent"
    );
    assert_eq!(granted("short", Some(60)), None);
    assert_eq!(granted("none", None), None);
}

/// An old connection stuck writing to a client that stopped reading is kicked at once by
/// a new connection with its client id: the new one gets CONNACK promptly with the
/// session (parked by the old one), the old one's will is published once, at the
/// takeover (MQTT 5 section 3.1.4: a taken-over client's will is published as in 3.1.2.5;
/// its will delay is 0 here — with a delay it would be cancelled by the resumption,
/// 3.1.3.2.2), never late, and the session as the new connection left it survives a
/// restart.
#[test]
fn a_takeover_is_not_held_up_by_a_connection_stuck_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "max_queued_bytes = \"256KiB\"\n", "");
    let f = Ferry::start(dir.path(), &cfg);
    let (mut watcher, _) = Raw::connect(f.mqtt, "watcher", true, 30);
    watcher.subscribe(1, "wills/#", QoS::AtLeastOnce);

    // The stuck client: a small receive buffer, a persistent session, a will; it
    // subscribes to the flood, then never reads again.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&f.mqtt.into()).unwrap();
    let mut stuck = Raw::from_stream(sock.into());
    let mut c = rumqttc::Connect::new("stuck");
    c.clean_session = false;
    c.keep_alive = 0;
    c.last_will = Some(rumqttc::LastWill::new(
        "wills/stuck",
        "stuck gone",
        QoS::AtLeastOnce,
        false,
    ));
    stuck.send(Packet::Connect(c));
    assert!(
        matches!(stuck.recv(T), Ok(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success)
    );
    stuck.subscribe(1, "flood/#", QoS::AtMostOnce);

    // Flood it until ferry's writes to it block: a whole batch is dropped from its full
    // queue, so its connection takes nothing from the queue any more.
    let (mut flooder, _) = Raw::connect(f.mqtt, "flooder", true, 30);
    let payload = vec![b'x'; 64 * 1024];
    const BATCH: u64 = 16;
    let mut sync = 0u16;
    wait_until(
        Duration::from_secs(60),
        "ferry's writes to the stuck client to block",
        || {
            let before = f.metric(SLOW_SUBSCRIBER);
            for _ in 0..BATCH {
                flooder.publish("flood/x", QoS::AtMostOnce, 0, false, &payload);
            }
            // Handled in order: once this is acked, the batch has been routed.
            sync = sync % 1000 + 1;
            flooder.publish("sync", QoS::AtLeastOnce, sync, false, b"");
            assert_eq!(flooder.recv(T), Ok(Packet::PubAck(PubAck::new(sync))));
            f.metric(SLOW_SUBSCRIBER) - before == BATCH
        },
    );

    let takeover = Instant::now();
    let mut second = Raw::open(f.mqtt);
    let mut c = rumqttc::Connect::new("stuck");
    c.clean_session = false;
    c.keep_alive = 30;
    second.send(Packet::Connect(c));
    let ack = match second.recv(Duration::from_secs(5)) {
        Ok(Packet::ConnAck(a)) => a,
        other => panic!("no CONNACK within 5 s of the takeover: {other:?}"),
    };
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(
        ack.session_present,
        "the stuck connection handed the session over"
    );
    eprintln!("CONNACK {:?} after the takeover", takeover.elapsed());
    subscribe_past_publishes(&mut second, 1, "after/#");

    // The old connection is gone; its will came once, and nothing after it.
    assert!(stuck.drain_until_closed(T), "the old connection is closed");
    let will = watcher.next_publish(T);
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/stuck", &b"stuck gone"[..])
    );
    watcher.send(Packet::PubAck(PubAck::new(will.pkid)));
    flooder.publish("wills/marker", QoS::AtMostOnce, 0, false, b"marker");
    assert_eq!(
        watcher.next_publish(T).topic,
        "wills/marker",
        "a single will"
    );
    f.wait_log(&["client_id=stuck", "session taken over"], T);

    second.send(Packet::Disconnect);
    second.expect_closed(T);
    assert_eq!(f.terminate(), Some(0));
    let f = Ferry::start(dir.path(), &cfg);
    f.wait_log(&["restored persistent MQTT sessions"], T);
    let (mut again, ack) = Raw::connect(f.mqtt, "stuck", false, 30);
    assert!(
        ack.session_present,
        "the new connection's session survived the restart"
    );
    let (mut publ, _) = Raw::connect(f.mqtt, "pub", true, 30);
    publ.publish("after/x", QoS::AtLeastOnce, 1, false, b"still subscribed");
    assert_eq!(publ.recv(T), Ok(Packet::PubAck(PubAck::new(1))));
    let p = again.next_publish(T);
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("after/x", &b"still subscribed"[..])
    );
}
