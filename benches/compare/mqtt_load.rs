//! MQTT load with rumqttc (v4 client): a counting subscriber and a publisher that sends N
//! messages, as fast as its in-flight window allows or at a fixed pace. The same client
//! settings are used against every broker: Nagle off, `inflight` QoS 1 publishes in flight,
//! 1 MiB packets, a 1024-request channel.

use crate::payload::{self, Tally};
use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Requests a client may queue before `publish().await` waits.
const CHANNEL: usize = 1024;

fn client(id: &str, port: u16, inflight: u16, clean: bool) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(inflight);
    o.set_clean_session(clean);
    let (c, mut el) = AsyncClient::new(o, CHANNEL);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    (c, el)
}

/// A subscriber counting what it receives (and, when asked, the latency of each message).
pub struct Sub {
    tally: Arc<Tally>,
    subacked: Arc<AtomicBool>,
    task: JoinHandle<()>,
    client: AsyncClient,
}

/// Connects, subscribes to `filter` and returns once the SUBACK arrived. Messages that
/// arrive before it (a persistent session's queue) are counted too.
pub async fn subscribe(port: u16, id: &str, filter: &str, qos: QoS, clean: bool) -> Result<Sub> {
    subscribe_with(port, id, filter, qos, clean, false).await
}

/// [`subscribe`]; with `packed`, each message is a `ferry-batch-v1` batch whose events are
/// counted (`Tally::on_batch`).
pub async fn subscribe_with(
    port: u16,
    id: &str,
    filter: &str,
    qos: QoS,
    clean: bool,
    packed: bool,
) -> Result<Sub> {
    let (client, mut el) = client(id, port, 100, clean);
    client.subscribe(filter, qos).await?;
    let tally = Arc::new(Tally::default());
    let subacked = Arc::new(AtomicBool::new(false));
    let (t, acked) = (tally.clone(), subacked.clone());
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if packed => t.on_batch(&p.payload),
                Ok(Event::Incoming(Packet::Publish(p))) => t.on_message(&p.payload),
                Ok(Event::Incoming(Packet::SubAck(_))) => acked.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let sub = Sub {
        tally,
        subacked,
        task,
        client,
    };
    let end = Instant::now() + Duration::from_secs(10);
    while !sub.subacked.load(Ordering::Relaxed) {
        if Instant::now() >= end {
            bail!("no SUBACK from the broker on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(sub)
}

impl Sub {
    /// What arrived so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
    }
}

/// How a publisher sends.
#[derive(Clone, Copy)]
pub struct PubSpec {
    pub qos: QoS,
    pub inflight: u16,
    pub size: usize,
    /// One message per `pace` instead of as fast as the window allows.
    pub pace: Option<Duration>,
}

/// When a publisher started (after its CONNACK) and when its last message was done
/// (QoS 1: PUBACK received; QoS 0: written to the socket), in time-base nanoseconds.
#[derive(Clone, Copy)]
pub struct Published {
    pub start_ns: u64,
    pub done_ns: u64,
}

/// Publishes `n` messages to `topic` and waits until all are done.
pub async fn publish(port: u16, id: &str, topic: &str, spec: PubSpec, n: u64) -> Result<Published> {
    let (client, mut el) = client(id, port, spec.inflight, true);
    let done = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicBool::new(false));
    let failed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (d, c, f) = (done.clone(), connected.clone(), failed.clone());
    let qos = spec.qos;
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => c.store(true, Ordering::Relaxed),
                Ok(Event::Incoming(Packet::PubAck(_))) if qos != QoS::AtMostOnce => {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Ok(mut g) = f.lock() {
                        *g = Some(e.to_string());
                    }
                    return;
                }
            }
        }
    });
    let result = async {
        let end = Instant::now() + Duration::from_secs(10);
        while !connected.load(Ordering::Relaxed) {
            if let Some(e) = failed.lock().ok().and_then(|g| g.clone()) {
                bail!("publisher {id} could not connect to port {port}: {e}");
            }
            if Instant::now() >= end {
                bail!("publisher {id}: no CONNACK from port {port}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let start_ns = payload::now_ns();
        let mut tick = spec.pace.map(|p| {
            let mut t = tokio::time::interval(p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        for seq in 0..n {
            if let Some(t) = tick.as_mut() {
                t.tick().await;
            }
            client
                .publish_bytes(topic, spec.qos, false, payload::make(seq, spec.size))
                .await
                .context("publish")?;
        }
        // Generous: the slowest peer on this machine is far above 1,000 messages/s.
        let limit = Duration::from_secs(30) + Duration::from_millis(n);
        let end = Instant::now() + limit;
        while done.load(Ordering::Relaxed) < n {
            if let Some(e) = failed.lock().ok().and_then(|g| g.clone()) {
                bail!("publisher {id}: connection failed: {e}");
            }
            if Instant::now() >= end {
                bail!(
                    "publisher {id}: only {} of {n} done after {limit:?}",
                    done.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(Published {
            start_ns,
            done_ns: payload::now_ns(),
        })
    }
    .await;
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    task.abort();
    result
}

/// `publishers` clients publish `n` messages in total to `topic` concurrently; returns the
/// aggregate rate (first start to last done) in messages per second.
pub async fn ingest(
    port: u16,
    tag: &str,
    topic: &str,
    publishers: u64,
    spec: PubSpec,
    n: u64,
) -> Result<f64> {
    let each = n / publishers.max(1);
    let runs = (0..publishers).map(|i| {
        let id = format!("{tag}-pub-{i}");
        async move { publish(port, &id, topic, spec, each).await }
    });
    let done = futures_util::future::try_join_all(runs).await?;
    let start = done.iter().map(|p| p.start_ns).min().unwrap_or(0);
    let end = done.iter().map(|p| p.done_ns).max().unwrap_or(0);
    Ok(payload::rate(
        each * publishers,
        Duration::from_nanos(end.saturating_sub(start)),
    ))
}
