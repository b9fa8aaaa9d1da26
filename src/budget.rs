//! The memory budget (`[limits] memory`): one number, carved into hard limits for what
//! input can grow, each with a metric.
//!
//! - the store's page cache: a quarter (at most `store.cache_size`);
//! - events waiting for the store writer: an eighth, in bytes; publishers wait for room
//!   (backpressure: their sockets are not read meanwhile);
//! - deliveries queued to subscribers and offline sessions: half, shared by all
//!   outboxes; a delivery that does not fit is dropped and counted, never buffered.
//!
//! The rest is headroom for connection buffers (bounded per connection by the packet
//! size limits) and forwarder batches (bounded by `upstream.inflight` and `batch`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A shared byte pool with a hard limit: reservations fail rather than wait.
#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryPool {
    pub fn new(limit: usize) -> Arc<MemoryPool> {
        Arc::new(MemoryPool {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// A pool that never refuses (tests, and components bounded elsewhere).
    pub fn unlimited() -> Arc<MemoryPool> {
        MemoryPool::new(usize::MAX)
    }

    /// Takes `bytes` if they fit under the limit.
    pub fn reserve(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// The budget split, built once at start.
#[derive(Debug)]
pub struct Budget {
    pub total: usize,
    pub cache: usize,
    pub outboxes: Arc<MemoryPool>,
    /// Permits are bytes of events queued for the store writer.
    pub ingest: Arc<Semaphore>,
    pub ingest_limit: usize,
}

impl Budget {
    pub fn new(total: usize, cache_cap: usize) -> Budget {
        let ingest_limit = (total / 8).max(64 * 1024);
        Budget {
            total,
            cache: cache_cap.min(total / 4),
            outboxes: MemoryPool::new(total / 2),
            ingest: Arc::new(Semaphore::new(ingest_limit)),
            ingest_limit,
        }
    }

    /// Waits until `bytes` of store-queue budget are free; the permit gives them back
    /// when dropped (after the commit). An event larger than the whole share takes all of it.
    pub async fn ingest(
        ingest: &Arc<Semaphore>,
        limit: usize,
        bytes: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes.min(limit)).unwrap_or(u32::MAX);
        ingest.clone().acquire_many_owned(n).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_refuses_past_its_limit() {
        let p = MemoryPool::new(100);
        assert!(p.reserve(60));
        assert!(!p.reserve(50));
        assert_eq!(p.used(), 60);
        p.release(60);
        assert!(p.reserve(100));
    }

    #[tokio::test]
    async fn ingest_waits_for_room() {
        let b = Budget::new(8 << 20, 1 << 30);
        assert_eq!(b.cache, 2 << 20);
        assert_eq!(b.ingest_limit, 1 << 20);
        let first = Budget::ingest(&b.ingest, b.ingest_limit, 900 << 10)
            .await
            .unwrap();
        let second = Budget::ingest(&b.ingest, b.ingest_limit, 200 << 10);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut second)
                .await
                .is_err(),
            "waits"
        );
        drop(first);
        assert!(second.await.is_some());
    }
}
