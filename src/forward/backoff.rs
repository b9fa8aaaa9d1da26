//! Reconnect delays: exponential from `min` to `max`, with jitter so a fleet of gateways
//! that lost the same cloud broker does not reconnect in lockstep.

use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt: uniformly in [d/2, d], d doubling each time.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        // xorshift64: plenty for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        let nanos = half.as_nanos().max(1) as u64;
        half + Duration::from_nanos(self.rng % nanos)
    }

    /// The link came up: start again from `min` next time.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_max_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 42);
        let mut bases = vec![];
        for _ in 0..8 {
            let d = b.next_delay();
            bases.push(d);
        }
        assert!(bases[0] >= Duration::from_millis(50) && bases[0] <= Duration::from_millis(100));
        assert!(bases[1] >= Duration::from_millis(100) && bases[1] <= Duration::from_millis(200));
        for d in &bases[4..] {
            assert!(
                *d >= Duration::from_millis(500) && *d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
