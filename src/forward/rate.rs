//! A token bucket for `[[upstream]] max_rate`: a drain over a metered link sends at most
//! `max_rate` events per second (bursts of up to one second's worth).

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

    /// How long until one more event may go.
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
}
