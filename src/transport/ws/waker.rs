//! One waker for writes to the inner stream that wakes both the reading and the writing
//! task. Both sides write to it (the read side sends pongs and close replies), and an
//! inner stream keeps only the last waker per direction: if the stream is split between
//! two tasks, the waker of one side would replace the other's, and that side would
//! wait forever for a wake-up that went elsewhere.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

/// Which side of the stream wants to be woken when the inner stream can take writes.
#[derive(Clone, Copy)]
pub enum Side {
    Read,
    Write,
}

#[derive(Default)]
struct Slots {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl Slots {
    fn slot(&self, side: Side) -> &Mutex<Option<Waker>> {
        match side {
            Side::Read => &self.read,
            Side::Write => &self.write,
        }
    }
}

impl Wake for Slots {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for side in [Side::Read, Side::Write] {
            // A poisoned lock only means a panic elsewhere; the waker inside is intact.
            let waker = self
                .slot(side)
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// The shared waker and the per-side wakers it forwards to.
pub struct WriteWaker {
    slots: Arc<Slots>,
    waker: Waker,
}

impl Default for WriteWaker {
    fn default() -> Self {
        let slots = Arc::new(Slots::default());
        let waker = Waker::from(slots.clone());
        WriteWaker { slots, waker }
    }
}

impl WriteWaker {
    /// Records `waker` as the one to wake for `side`, and returns the waker to give the
    /// inner stream.
    pub fn register(&self, side: Side, waker: &Waker) -> &Waker {
        let mut slot = self
            .slots
            .slot(side)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
        &self.waker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn write_waker_wakes_both_sides_once() {
        let (r, w) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let ww = WriteWaker::default();
        ww.register(Side::Read, &Waker::from(r.clone()));
        let shared = ww.register(Side::Write, &Waker::from(w.clone())).clone();
        shared.wake_by_ref();
        shared.wake();
        assert_eq!(r.0.load(Ordering::SeqCst), 1);
        assert_eq!(w.0.load(Ordering::SeqCst), 1);
    }
}
