//! What a protocol's listeners admit, shared by every listener of the protocol and
//! changed by a reload: the connection cap (`max_connections`), the handshake deadline
//! (`connect_timeout`) and the largest WebSocket frame (`max_packet_size` plus slack).
//!
//! A cap lowered below the connections open closes none of them: new ones are refused
//! until enough have ended. A cap raised admits new ones at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct ListenLimits {
    max_connections: AtomicUsize,
    /// Connections holding a [`Slot`]: counted from accept to the end of the connection.
    open: AtomicUsize,
    handshake_timeout_ms: AtomicU64,
    ws_max_frame: AtomicUsize,
}

/// One admitted connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<ListenLimits>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ListenLimits {
    pub fn new(max_connections: usize, handshake_timeout: Duration, ws_max_frame: usize) -> Self {
        let limits = ListenLimits {
            max_connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            handshake_timeout_ms: AtomicU64::new(0),
            ws_max_frame: AtomicUsize::new(0),
        };
        limits.set(max_connections, handshake_timeout, ws_max_frame);
        limits
    }

    /// A reload's values, for the connections accepted from now on.
    pub fn set(&self, max_connections: usize, handshake_timeout: Duration, ws_max_frame: usize) {
        self.max_connections
            .store(max_connections, Ordering::Release);
        let ms = u64::try_from(handshake_timeout.as_millis()).unwrap_or(u64::MAX);
        self.handshake_timeout_ms.store(ms, Ordering::Release);
        self.ws_max_frame.store(ws_max_frame, Ordering::Release);
    }

    /// A place for one more connection, or None at the cap.
    pub fn try_enter(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max_connections.load(Ordering::Acquire);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.load(Ordering::Acquire))
    }

    pub fn ws_max_frame(&self) -> usize {
        self.ws_max_frame.load(Ordering::Acquire)
    }

    /// Connections holding a place now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_cap_closes_nothing_and_admits_again_once_under_it() {
        let cap = Arc::new(ListenLimits::new(3, Duration::from_secs(1), 10));
        let slots: Vec<Slot> = (0..3).map(|_| cap.try_enter().unwrap()).collect();
        assert!(cap.try_enter().is_none());
        cap.set(1, Duration::from_millis(1500), 20);
        assert_eq!(
            (cap.open(), cap.handshake_timeout(), cap.ws_max_frame()),
            (3, Duration::from_millis(1500), 20)
        );
        let mut slots = slots;
        slots.truncate(1);
        assert!(cap.try_enter().is_none(), "one open, cap 1");
        drop(slots);
        let one = cap.try_enter();
        assert!(one.is_some());
        cap.set(2, Duration::from_secs(1), 10);
        assert!(cap.try_enter().is_some(), "raised: admitted at once");
    }
}
