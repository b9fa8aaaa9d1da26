//! Token buckets for `[[upstream]] max_rate` and `max_bytes_rate`: a drain over a metered
//! link sends at most `max_rate` events and `max_bytes_rate` bytes per second (bursts of
//! up to one second's worth).

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Rate {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Rate {
    pub fn new(per_sec: u32) -> Rate {
        let per_sec = f64::from(per_sec.max(1));
        Rate {
            per_sec,
            tokens: per_sec,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        self.last = now;
    }

    /// How many events may go now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.floor() as usize
    }

    pub fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// For a bucket of bytes: how many events of `mean` bytes may go now. At least one
    /// whenever any byte is left (an event is never split), so the bucket may go into
    /// debt by one batch, which later waits repay.
    pub fn events_of(&mut self, now: Instant, mean: u64) -> usize {
        self.refill(now);
        if self.tokens < 1.0 {
            return 0;
        }
        ((self.tokens / mean.max(1) as f64).floor() as usize).max(1)
    }

    /// How long until one more event (or byte) may go.
    pub fn wait(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate_and_caps_the_burst() {
        let start = Instant::now();
        let mut r = Rate::new(100);
        assert_eq!(r.available(start), 100);
        r.take(100);
        assert_eq!(r.available(start), 0);
        assert!(r.wait() <= Duration::from_millis(10));
        assert_eq!(r.available(start + Duration::from_millis(250)), 25);
        assert_eq!(
            r.available(start + Duration::from_secs(60)),
            100,
            "burst capped at one second"
        );
    }

    #[test]
    fn a_byte_bucket_lets_whole_events_through_and_repays_its_debt() {
        let start = Instant::now();
        let mut r = Rate::new(1000); // bytes per second
        assert_eq!(r.events_of(start, 300), 3);
        r.take(1200); // the batch was bigger than its mean: 200 bytes of debt
        assert_eq!(r.events_of(start, 300), 0);
        assert!(r.wait() >= Duration::from_millis(200));
        assert_eq!(r.events_of(start + Duration::from_millis(201), 300), 1);
        assert_eq!(r.events_of(start + Duration::from_secs(9), 0), 1000);
    }
}
