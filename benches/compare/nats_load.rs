//! NATS load with async-nats: a counting core subscriber, a core publisher (at full speed
//! or at a fixed pace) and a JetStream publisher that keeps a window of acks pending.
//! The same client settings are used against ferry and nats-server.

use crate::payload::{self, Tally};
use anyhow::{Context, Result, bail};
use async_nats::jetstream;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Messages the client buffers for a subscription before it drops them (slow consumer):
/// large, so that a burst is measured as the broker's throughput, not as client loss.
const SUB_CAPACITY: usize = 1 << 20;

async fn connect(port: u16) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(SUB_CAPACITY)
        .connect(format!("127.0.0.1:{port}"))
        .await
        .with_context(|| format!("NATS connect to port {port}"))
}

pub struct NatsSub {
    tally: Arc<Tally>,
    task: JoinHandle<()>,
    client: async_nats::Client,
}

/// Subscribes to `subject` and returns once the server has the subscription (a flush
/// round trip after SUB).
pub async fn subscribe(port: u16, subject: &str) -> Result<NatsSub> {
    let client = connect(port).await?;
    let mut sub = client.subscribe(subject.to_string()).await?;
    client.flush().await?;
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            t.on_message(&m.payload);
        }
    });
    Ok(NatsSub {
        tally,
        task,
        client,
    })
}

impl NatsSub {
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    pub async fn stop(self) {
        self.task.abort();
        drop(self.client);
    }
}

/// Publishes `n` core messages of `size` bytes, then flushes; returns the start time in
/// time-base nanoseconds.
pub async fn publish(
    port: u16,
    subject: &str,
    size: usize,
    n: u64,
    pace: Option<Duration>,
) -> Result<u64> {
    let client = connect(port).await?;
    let start = payload::now_ns();
    let mut tick = pace.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    for seq in 0..n {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        client
            .publish(subject.to_string(), payload::make(seq, size))
            .await?;
        if tick.is_some() {
            // Paced: each message leaves now, not when the client's buffer fills.
            client.flush().await?;
        }
    }
    client.flush().await?;
    Ok(start)
}

/// Creates the file-store stream `BENCH` on `subject`.
pub async fn jetstream_stream(port: u16, subject: &str) -> Result<()> {
    let js = jetstream::new(connect(port).await?);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "BENCH".to_string(),
        subjects: vec![subject.to_string()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("create JetStream stream: {e}"))?;
    Ok(())
}

/// Publishes `n` messages to a JetStream stream with a window of `window` acks pending,
/// and returns once every ack arrived. With `pace`, one message per `pace`.
pub async fn jetstream_publish(
    port: u16,
    subject: &str,
    size: usize,
    n: u64,
    window: usize,
    pace: Option<Duration>,
) -> Result<()> {
    let js = jetstream::new(connect(port).await?);
    let mut tick = pace.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut pending = VecDeque::with_capacity(window);
    for seq in 0..n {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        if pending.len() >= window {
            if let Some(ack) = pending.pop_front() {
                wait_ack(ack).await?;
            }
        }
        let ack = js
            .publish(subject.to_string(), payload::make(seq, size))
            .await
            .map_err(|e| anyhow::anyhow!("JetStream publish: {e}"))?;
        pending.push_back(ack);
    }
    while let Some(ack) = pending.pop_front() {
        wait_ack(ack).await?;
    }
    Ok(())
}

/// `publishers` connections publish `n` messages in total concurrently; returns the
/// aggregate rate in messages per second.
pub async fn jetstream_ingest(
    port: u16,
    subject: &str,
    publishers: u64,
    size: usize,
    n: u64,
    window: usize,
) -> Result<f64> {
    let each = n / publishers.max(1);
    let started = Instant::now();
    let runs = (0..publishers).map(|_| jetstream_publish(port, subject, size, each, window, None));
    futures_util::future::try_join_all(runs).await?;
    Ok(payload::rate(each * publishers, started.elapsed()))
}

async fn wait_ack(ack: jetstream::context::PublishAckFuture) -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(30), ack.into_future()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("JetStream ack: {e}"),
        Err(_) => bail!("JetStream ack timed out"),
    }
}
