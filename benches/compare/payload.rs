//! Bench payloads and the statistics taken from them. A payload starts with its sequence
//! number and its send time (nanoseconds since one process-wide instant), so the
//! subscriber, in the same process, measures publish-to-delivery latency without clocks
//! having to agree.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the bench's time base.
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A payload of `size` bytes (at least 16) carrying `seq` and the current time.
pub fn make(seq: u64, size: usize) -> Bytes {
    let mut v = vec![0u8; size.max(16)];
    v[..8].copy_from_slice(&seq.to_le_bytes());
    v[8..16].copy_from_slice(&now_ns().to_le_bytes());
    Bytes::from(v)
}

/// Microseconds since the payload was made, if it is one of ours.
pub fn latency_us(payload: &[u8]) -> Option<u32> {
    let sent = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((now_ns().saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32)
}

/// p50 and p99 of latency samples, in microseconds.
pub fn percentiles(mut samples: Vec<u32>) -> Option<(u32, u32)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    Some((at(0.50), at(0.99)))
}

/// Events per second for `n` events in `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// What a subscriber received: a count, first and last arrival, and (when `record` is on)
/// the latency of each message. Shared between the subscriber task and the scenario.
#[derive(Default)]
pub struct Tally {
    count: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    record: AtomicBool,
    latencies: Mutex<Vec<u32>>,
    /// Bytes of the messages that were `ferry-batch-v1` batches, and batches that did not
    /// decode (a broken batch loses its events: the count never reaches n).
    batch_bytes: AtomicU64,
    broken_batches: AtomicU64,
}

impl Tally {
    /// Called by the subscriber task for every message that is a packed batch: counts its
    /// events, decoded with ferry's own `unpack` as a cloud consumer would.
    pub fn on_batch(&self, payload: &[u8]) {
        let now = now_ns();
        let events = match ferry::pack::unpack(payload) {
            Ok(b) => b.events.len() as u64,
            Err(_) => {
                self.broken_batches.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.batch_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if self.count.fetch_add(events, Ordering::Relaxed) == 0 {
            self.first_ns.store(now, Ordering::Relaxed);
        }
        self.last_ns.store(now, Ordering::Relaxed);
    }

    /// Bytes of the batches received, and how many did not decode.
    pub fn batches(&self) -> (u64, u64) {
        (
            self.batch_bytes.load(Ordering::Relaxed),
            self.broken_batches.load(Ordering::Relaxed),
        )
    }

    /// Called by the subscriber task for every message.
    pub fn on_message(&self, payload: &[u8]) {
        let now = now_ns();
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_ns.store(now, Ordering::Relaxed);
        }
        self.last_ns.store(now, Ordering::Relaxed);
        if self.record.load(Ordering::Relaxed) {
            if let (Some(us), Ok(mut l)) = (latency_us(payload), self.latencies.lock()) {
                l.push(us);
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A copy of what arrived so far (the latency samples are moved into it).
    pub fn snapshot(&self) -> Tally {
        let t = Tally::default();
        t.count.store(self.count(), Ordering::Relaxed);
        let (first, last) = self.first_last_ns();
        t.first_ns.store(first, Ordering::Relaxed);
        t.last_ns.store(last, Ordering::Relaxed);
        if let Ok(mut l) = t.latencies.lock() {
            *l = self.take_latencies();
        }
        t
    }

    /// First and last arrival since the last reset, in time-base nanoseconds.
    pub fn first_last_ns(&self) -> (u64, u64) {
        (
            self.first_ns.load(Ordering::Relaxed),
            self.last_ns.load(Ordering::Relaxed),
        )
    }

    /// Starts counting from zero; `record` turns latency samples on.
    pub fn reset(&self, record: bool) {
        self.count.store(0, Ordering::Relaxed);
        self.record.store(record, Ordering::Relaxed);
        if let Ok(mut l) = self.latencies.lock() {
            l.clear();
        }
    }

    pub fn take_latencies(&self) -> Vec<u32> {
        self.latencies
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Waits until `n` messages arrived, nothing arrived for `stall`, or `limit` passed;
    /// returns how many arrived.
    pub async fn wait_for(&self, n: u64, stall: Duration, limit: Duration) -> u64 {
        let end = Instant::now() + limit;
        let mut seen = self.count();
        let mut since = Instant::now();
        loop {
            let c = self.count();
            if c >= n || Instant::now() >= end {
                return c;
            }
            if c != seen {
                seen = c;
                since = Instant::now();
            } else if since.elapsed() >= stall {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
