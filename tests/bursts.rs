//! Bursts are delivered (issue 11, case 1): one fast publisher writing 200,000 small
//! messages back to back, as gateways' bridges do, to one healthy subscriber: every
//! message arrives, in order, because the publisher is held back briefly while the
//! subscriber's queue is past its high-water mark (`limits.publisher_stall`) instead of
//! the queue dropping. A subscriber that stops reading costs the publisher one stall and
//! then loses its own messages (counted), while a healthy one beside it gets them all.

mod common;

use common::{Ferry, base_config};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

const BURST: usize = 200_000;
const PAYLOAD: usize = 64;

fn config(dir: &std::path::Path) -> String {
    format!("{}[metrics]\nlisten = \"127.0.0.1:0\"\n", base_config(dir))
}

/// The payload of message `i`: its index, big-endian, padded to 64 bytes.
fn payload(i: usize) -> [u8; PAYLOAD] {
    let mut p = [b'.'; PAYLOAD];
    p[..8].copy_from_slice(&(i as u64).to_be_bytes());
    p
}

fn index_of(payload: &[u8]) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&payload[..8]);
    u64::from_be_bytes(b) as usize
}

/// MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s) for `id`.
fn connect_packet(id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend_from_slice(&body);
    p
}

/// `n` QoS 0 PUBLISH packets to `topic`, encoded back to back.
fn publishes(topic: &str, n: usize) -> Vec<u8> {
    let len = 2 + topic.len() + PAYLOAD;
    assert!(len < 128);
    let mut out = Vec::with_capacity(n * (2 + len));
    for i in 0..n {
        out.extend_from_slice(&[0x30, len as u8]);
        out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&payload(i));
    }
    out
}

/// A raw MQTT publisher writing the whole burst in large writes (never reading), then
/// a DISCONNECT. Runs on its own thread; the write returns when ferry has read it all.
fn raw_burst(addr: SocketAddr, topic: &str, n: usize) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&connect_packet("burst-pub")).unwrap();
        for chunk in publishes(&topic, n).chunks(256 * 1024) {
            s.write_all(chunk).unwrap();
        }
        s.write_all(&[0xE0, 0]).unwrap();
        // Keep the socket until ferry closes it after the DISCONNECT.
        let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
    })
}

/// A rumqttc subscriber that checks every message is the next index and counts them.
struct Counter {
    count: Arc<AtomicUsize>,
    out_of_order: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Counter {
    async fn mqtt(addr: SocketAddr, id: &str, filter: &str, qos: QoS) -> Counter {
        Counter::mqtt_paced(addr, id, filter, qos, None).await
    }

    /// A subscriber that, with `pause`, stops reading for `pause.1` after every `pause.0`
    /// messages: slower than the publisher, as a busy device is, but never stuck.
    async fn mqtt_paced(
        addr: SocketAddr,
        id: &str,
        filter: &str,
        qos: QoS,
        pause: Option<(usize, Duration)>,
    ) -> Counter {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(60));
        let (client, mut el) = AsyncClient::new(o, 10);
        client.subscribe(filter, qos).await.unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let out_of_order = Arc::new(AtomicUsize::new(0));
        let subscribed = Arc::new(AtomicUsize::new(0));
        let (c, o, s) = (count.clone(), out_of_order.clone(), subscribed.clone());
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => s.store(1, Ordering::SeqCst),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let n = c.fetch_add(1, Ordering::SeqCst);
                        if index_of(&p.payload) != n {
                            o.fetch_add(1, Ordering::SeqCst);
                        }
                        if let Some((every, pause)) = pause {
                            if (n + 1) % every == 0 {
                                tokio::time::sleep(pause).await;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("subscriber connection failed: {e}"),
                }
            }
        });
        common::upstream::wait_for(Duration::from_secs(10), "SUBACK", || {
            subscribed.load(Ordering::SeqCst) == 1
        })
        .await;
        Counter {
            count,
            out_of_order,
            task,
        }
    }

    async fn nats(addr: SocketAddr, subject: &str) -> Counter {
        let client = async_nats::connect(addr.to_string()).await.unwrap();
        let mut sub = client.subscribe(subject.to_string()).await.unwrap();
        client.flush().await.unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let out_of_order = Arc::new(AtomicUsize::new(0));
        let (c, o) = (count.clone(), out_of_order.clone());
        let task = tokio::spawn(async move {
            let _client = client;
            use futures_util::StreamExt;
            while let Some(m) = sub.next().await {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if index_of(&m.payload) != n {
                    o.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Counter {
            count,
            out_of_order,
            task,
        }
    }

    /// Waits until `n` arrived (or panics with how many did, after `limit` or after 10 s
    /// without one more), then checks the order.
    async fn expect_all(&self, n: usize, limit: Duration) {
        let count = self.count.clone();
        let deadline = tokio::time::Instant::now() + limit;
        let (mut last, mut progress) = (0, tokio::time::Instant::now());
        while count.load(Ordering::SeqCst) < n {
            let now = tokio::time::Instant::now();
            let got = count.load(Ordering::SeqCst);
            if got != last {
                (last, progress) = (got, now);
            }
            assert!(
                now < deadline && now < progress + Duration::from_secs(10),
                "{got} of {n} messages arrived (limit {limit:?}, or 10 s without progress)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(self.count.load(Ordering::SeqCst), n, "no extra messages");
        assert_eq!(self.out_of_order.load(Ordering::SeqCst), 0, "in order");
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn assert_nothing_dropped(ferry: &Ferry) {
    assert_eq!(
        ferry.metric("ferry_events_dropped_total{reason=\"slow_subscriber\"}"),
        0,
        "no delivery dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_0_burst_reaches_an_mqtt_subscriber_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &config(dir.path()));
    let sub = Counter::mqtt(ferry.mqtt, "burst-sub", "burst/#", QoS::AtMostOnce).await;
    let publisher = raw_burst(ferry.mqtt, "burst/a", BURST);
    sub.expect_all(BURST, Duration::from_secs(120)).await;
    publisher.join().unwrap();
    assert_nothing_dropped(&ferry);
}

/// A subscriber slower than the publisher (it pauses 5 ms every 1,000 messages) still
/// gets every message: the publisher is held back while its queue is past half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_0_burst_reaches_a_slower_subscriber_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &config(dir.path()));
    let pause = Some((1_000, Duration::from_millis(5)));
    let sub = Counter::mqtt_paced(ferry.mqtt, "slow-sub", "burst/#", QoS::AtMostOnce, pause).await;
    let publisher = raw_burst(ferry.mqtt, "burst/s", BURST);
    sub.expect_all(BURST, Duration::from_secs(120)).await;
    publisher.join().unwrap();
    assert_nothing_dropped(&ferry);
    assert!(
        ferry.metric("ferry_publisher_stalls_total") > 0,
        "the publisher was held back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_1_burst_with_1000_in_flight_reaches_a_qos_1_subscriber_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &config(dir.path()));
    let sub = Counter::mqtt(ferry.mqtt, "burst-sub1", "burst/#", QoS::AtLeastOnce).await;
    let mut o = MqttOptions::new("burst-pub1", "127.0.0.1", ferry.mqtt.port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(1000);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let acked = Arc::new(AtomicUsize::new(0));
    let a = acked.clone();
    let events = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(e) => panic!("publisher connection failed: {e}"),
            }
        }
    });
    for i in 0..BURST {
        client
            .publish("burst/b", QoS::AtLeastOnce, false, payload(i).to_vec())
            .await
            .unwrap();
    }
    sub.expect_all(BURST, Duration::from_secs(180)).await;
    common::upstream::wait_for(Duration::from_secs(30), "every PUBACK", || {
        acked.load(Ordering::SeqCst) == BURST
    })
    .await;
    events.abort();
    assert_nothing_dropped(&ferry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_burst_reaches_an_mqtt_subscriber_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &config(dir.path()));
    let sub = Counter::mqtt(ferry.mqtt, "burst-sub2", "burst/#", QoS::AtMostOnce).await;
    let nats = async_nats::connect(ferry.nats.unwrap().to_string())
        .await
        .unwrap();
    for i in 0..BURST {
        nats.publish("burst.c", payload(i).to_vec().into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    sub.expect_all(BURST, Duration::from_secs(120)).await;
    assert_nothing_dropped(&ferry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_burst_reaches_a_nats_subscriber_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &config(dir.path()));
    let sub = Counter::nats(ferry.nats.unwrap(), "burst.>").await;
    let publisher = raw_burst(ferry.mqtt, "burst/d", BURST);
    sub.expect_all(BURST, Duration::from_secs(120)).await;
    publisher.join().unwrap();
    assert_nothing_dropped(&ferry);
    assert_eq!(ferry.metric("ferry_nats_slow_consumers_total"), 0);
}

/// A subscriber that stops reading costs the publisher one stall (then it lags and its
/// own messages are dropped, counted), while a healthy subscriber on the same topic
/// still gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_loses_its_own_messages_and_nobody_elses() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &config(dir.path()));
    // Subscribes, then never reads again.
    let mut stuck = TcpStream::connect(ferry.mqtt).unwrap();
    stuck.write_all(&connect_packet("stuck")).unwrap();
    let filter = b"burst/#";
    let mut sub = vec![
        0x82,
        (2 + 2 + filter.len() + 1) as u8,
        0,
        1,
        0,
        filter.len() as u8,
    ];
    sub.extend_from_slice(filter);
    sub.push(0);
    stuck.write_all(&sub).unwrap();
    let healthy = Counter::mqtt(ferry.mqtt, "healthy", "burst/#", QoS::AtMostOnce).await;
    let publisher = raw_burst(ferry.mqtt, "burst/e", BURST);
    healthy.expect_all(BURST, Duration::from_secs(120)).await;
    publisher.join().unwrap();
    let dropped = ferry.metric("ferry_events_dropped_total{reason=\"slow_subscriber\"}");
    assert!(dropped > 0, "the stuck subscriber's overflow is counted");
    assert!(dropped < BURST as u64);
    let timeouts = ferry.metric("ferry_publisher_stall_timeouts_total");
    assert!(
        (1..=3).contains(&timeouts),
        "one stall per episode of the stuck subscriber, not one per message: {timeouts}"
    );
    drop(stuck);
}
