//! MQTT clients for tests: a device that publishes and counts PUBACKs, and a checker that
//! subscribes on the upstream broker with a persistent session (so nothing forwarded
//! while it was away is missed) and records what arrives, in order.

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Async deadline wait, for use inside tokio tests.
pub async fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct Checker {
    pub received: Arc<Mutex<Vec<(String, Bytes)>>>,
    pub client: AsyncClient,
    task: JoinHandle<()>,
}

fn opts(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(16 << 20, 16 << 20);
    o
}

impl Checker {
    /// Creates the persistent session and its subscription, then disconnects.
    pub async fn register(port: u16, id: &str, filter: &str) {
        let (client, mut el) = AsyncClient::new(opts(id, port), 10);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < end, "checker could not subscribe");
            if let Ok(Ok(Event::Incoming(Packet::SubAck(_)))) =
                tokio::time::timeout(Duration::from_secs(5), el.poll()).await
            {
                break;
            }
        }
        client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while el.poll().await.is_ok() {}
        })
        .await;
    }

    /// Connects to the session and records every publish from now on.
    pub async fn connect(port: u16, id: &str, filter: &str) -> Checker {
        let (client, mut el) = AsyncClient::new(opts(id, port), 10);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => sink
                        .lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.clone())),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Checker {
            received,
            client,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub async fn wait_count(&self, n: usize, limit: Duration) {
        wait_for(limit, &format!("{n} messages upstream"), || {
            self.count() >= n
        })
        .await;
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}

/// A device connected to ferry over MQTT 3.1.1.
pub struct Device {
    pub client: AsyncClient,
    pub acked: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<(String, Bytes, QoS)>>>,
    task: JoinHandle<()>,
}

impl Device {
    pub async fn connect(addr: SocketAddr, id: &str) -> Device {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(200);
        let (client, mut el) = AsyncClient::new(o, 1000);
        let acked = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(AtomicUsize::new(0));
        let (a, r, c) = (acked.clone(), received.clone(), connected.clone());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.store(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        r.lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.clone(), p.qos))
                    }
                    Ok(_) => {}
                    // The test decides what a closed connection means.
                    Err(_) => return,
                }
            }
        });
        wait_for(Duration::from_secs(10), "device CONNACK", || {
            connected.load(Ordering::SeqCst) == 1
        })
        .await;
        Device {
            client,
            acked,
            received,
            task,
        }
    }

    /// Publishes `n` QoS 1 events `topic(i)` / payload `i` and waits for every PUBACK.
    pub async fn publish_acked(&self, n: usize, topic: impl Fn(usize) -> String, limit: Duration) {
        let start = self.acked.load(Ordering::SeqCst);
        for i in 0..n {
            self.client
                .publish(topic(i), QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap();
        }
        let acked = self.acked.clone();
        wait_for(limit, &format!("{n} PUBACKs from ferry"), || {
            acked.load(Ordering::SeqCst) - start >= n
        })
        .await;
    }

    pub fn abort(self) {
        self.task.abort();
    }
}

/// Asserts that `got` is exactly `site-a/sensors/<i % topics>` / `i` for i in 0..n, in order.
pub fn assert_exact_in_order(got: &[(String, Bytes)], n: usize, topics: usize) {
    assert_eq!(got.len(), n, "count upstream");
    for (i, (topic, payload)) in got.iter().enumerate() {
        assert_eq!(
            topic,
            &format!("site-a/sensors/{}", i % topics),
            "topic of event {i}"
        );
        assert_eq!(
            payload.as_ref(),
            i.to_string().as_bytes(),
            "payload of event {i}"
        );
    }
}
