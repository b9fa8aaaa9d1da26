//! Chaos: ferry is SIGKILLed 20 times at random moments while a device publishes QoS 1
//! and the upstream mosquitto is stopped and started. At the end every PUBACKed event has
//! reached the upstream, per-topic order is kept, and duplicates stay within the bound
//! stated in docs/guarantees.md: per ferry restart or upstream reconnect, at most two forwarding
//! windows (`inflight` in flight + up to `inflight` acknowledged but not yet persisted)
//! plus the device's one unacknowledged publish.

mod common;

use common::raw::Raw;
use common::upstream::Checker;
use common::{Ferry, Mosquitto, base_config, forward_config, free_port};
use rumqttc::{Packet, PubAck, QoS};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KILLS: usize = 20;
const INFLIGHT: usize = 32;
const TOPICS: usize = 4;

/// Publishes 0, 1, 2, ... at QoS 1 one at a time, reconnecting whenever ferry is gone;
/// `acked` counts the events ferry acknowledged (all ids below it).
fn device(addr: SocketAddr, acked: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let mut next = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut raw) = Raw::try_open(addr) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let mut c = rumqttc::Connect::new("chaos-device");
        c.keep_alive = 30;
        raw.send(Packet::Connect(c));
        if !matches!(raw.recv(Duration::from_secs(5)), Ok(Packet::ConnAck(_))) {
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            let pkid = (next % 60_000) as u16 + 1;
            raw.publish(
                &format!("sensors/{}", next % TOPICS),
                QoS::AtLeastOnce,
                pkid,
                false,
                next.to_string().as_bytes(),
            );
            match raw.recv(Duration::from_secs(5)) {
                Ok(Packet::PubAck(PubAck { pkid: p, .. })) if p == pkid => {
                    next += 1;
                    acked.store(next, Ordering::SeqCst);
                }
                _ => break, // ferry died: reconnect and send the same event again
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_and_upstream_restarts_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up_port = free_port();
    let mut mosq = Mosquitto::start(dir.path(), up_port);
    Checker::register(up_port, "checker", "site-a/#").await;
    let checker = Checker::connect(up_port, "checker", "site-a/#").await;
    let mqtt_port = free_port();
    let config = base_config(dir.path()).replace(
        "listen = \"127.0.0.1:0\"\n[nats]",
        &format!("listen = \"127.0.0.1:{mqtt_port}\"\n[nats]"),
    ) + &forward_config(up_port).replace(
        "client_id = \"gw-test\"\n",
        &format!("client_id = \"gw-test\"\ninflight = {INFLIGHT}\n"),
    );
    let mut ferry = Ferry::start(dir.path(), &config);
    let addr = ferry.mqtt;

    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, s) = (acked.clone(), stop.clone());
    let dev = std::thread::spawn(move || device(addr, a, s));

    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut upstream_restarts = 0;
    for kill in 0..KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Let some events through (and wait for progress, so each round does something).
        let before = acked.load(Ordering::SeqCst);
        let until = Instant::now() + Duration::from_millis(100 + rng % 300);
        while Instant::now() < until || acked.load(Ordering::SeqCst) < before + 20 {
            assert!(
                Instant::now() < until + Duration::from_secs(30),
                "device made no progress in round {kill}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ferry.kill9();
        if kill % 5 == 2 {
            mosq.stop();
            upstream_restarts += 1;
        }
        if kill % 5 == 4 {
            mosq.restart();
        }
        ferry = Ferry::start(dir.path(), &config);
    }
    if upstream_restarts > 0 {
        mosq.stop();
        mosq.restart();
    }
    stop.store(true, Ordering::SeqCst);
    dev.join().unwrap();
    let total = acked.load(Ordering::SeqCst);
    assert!(total > KILLS * 20, "only {total} events were acknowledged");

    // Every acknowledged event arrives upstream.
    let deadline = Instant::now() + Duration::from_secs(120);
    let received: Arc<Mutex<Vec<(String, bytes::Bytes)>>> = checker.received.clone();
    loop {
        let ids: HashSet<usize> = received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, p)| std::str::from_utf8(p).ok()?.parse().ok())
            .collect();
        if (0..total).all(|i| ids.contains(&i)) {
            break;
        }
        let missing = (0..total).filter(|i| !ids.contains(i)).count();
        assert!(
            Instant::now() < deadline,
            "{missing} of {total} acknowledged events never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    let mut seen = HashSet::new();
    let mut last_per_topic: HashMap<String, usize> = HashMap::new();
    let mut duplicates = 0;
    for (topic, payload) in &got {
        let id: usize = std::str::from_utf8(payload).unwrap().parse().unwrap();
        assert_eq!(topic, &format!("site-a/sensors/{}", id % TOPICS));
        if !seen.insert(id) {
            duplicates += 1;
            continue;
        }
        // First deliveries of each topic arrive in publish order.
        if let Some(last) = last_per_topic.insert(topic.clone(), id) {
            assert!(id > last, "order broken on {topic}: {id} after {last}");
        }
    }
    let bound = (KILLS + upstream_restarts) * (2 * INFLIGHT + 1);
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed the bound {bound}"
    );
    eprintln!(
        "chaos: {total} acknowledged events, {} received, {duplicates} duplicates (bound {bound})",
        got.len()
    );
    drop(ferry);
}
