//! The last minutes of ferry's figures, sampled every [`EVERY`]: rates for `ferry status`
//! and the status page, and each upstream's backlog over time for the page's chart.
//!
//! Bounded: [`SAMPLES`] samples, each with one entry per upstream (at most 64).

use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(5);
/// How many are kept: 6 minutes.
pub const SAMPLES: usize = 72;

/// One look at the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Wall-clock milliseconds.
    pub at_ms: u64,
    pub received: u64,
    pub delivered: u64,
    /// Per upstream, in `Metrics::upstreams` order: (name, forwarded, backlog events).
    pub upstreams: Vec<(String, u64, i64)>,
}

impl Sample {
    pub fn take(metrics: &Metrics, at_ms: u64) -> Sample {
        let upstreams = metrics
            .upstreams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|u| (u.name.clone(), u.forwarded.get(), u.backlog_events.get()))
            .collect();
        Sample {
            at_ms,
            received: metrics.events_received.get(),
            delivered: metrics.deliveries.get(),
            upstreams,
        }
    }
}

#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

/// Per second, between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub received: f64,
    pub delivered: f64,
}

impl History {
    pub fn push(&self, s: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    /// Rates from the last sample to `now` (a sample just taken): events per second.
    pub fn rates(&self, now: &Sample) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = samples.back().filter(|l| now.at_ms > l.at_ms) else {
            return Rates::default();
        };
        let secs = (now.at_ms - last.at_ms) as f64 / 1000.0;
        Rates {
            received: now.received.saturating_sub(last.received) as f64 / secs,
            delivered: now.delivered.saturating_sub(last.delivered) as f64 / secs,
        }
    }

    /// Events received and sent per minute over the last minute (or as much of it as
    /// there are samples for), up to `now`: `$SYS/broker/load/messages/*/1min`.
    pub fn per_minute(&self, now: &Sample) -> (f64, f64) {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let from = samples
            .iter()
            .find(|s| now.at_ms.saturating_sub(s.at_ms) <= 60_000 && now.at_ms > s.at_ms);
        let Some(from) = from else {
            return (0.0, 0.0);
        };
        let minutes = (now.at_ms - from.at_ms) as f64 / 60_000.0;
        (
            now.received.saturating_sub(from.received) as f64 / minutes,
            now.delivered.saturating_sub(from.delivered) as f64 / minutes,
        )
    }

    /// Events `upstream` had acknowledged per second, from the last sample to `now`.
    pub fn drain_rate(&self, now: &Sample, upstream: &str) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = samples.back().filter(|l| now.at_ms > l.at_ms) else {
            return 0.0;
        };
        let of = |s: &Sample| s.upstreams.iter().find(|u| u.0 == upstream).map(|u| u.1);
        match (of(now), of(last)) {
            (Some(n), Some(l)) => {
                n.saturating_sub(l) as f64 / ((now.at_ms - last.at_ms) as f64 / 1000.0)
            }
            _ => 0.0,
        }
    }

    /// `upstream`'s backlog at each sample: (seconds before `now_ms`, events).
    pub fn backlog(&self, upstream: &str, now_ms: u64) -> Vec<(f64, i64)> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .iter()
            .filter_map(|s| {
                let b = s.upstreams.iter().find(|u| u.0 == upstream)?.2;
                Some((now_ms.saturating_sub(s.at_ms) as f64 / 1000.0, b))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, received: u64, forwarded: u64, backlog: i64) -> Sample {
        Sample {
            at_ms: ms,
            received,
            delivered: received * 2,
            upstreams: vec![("cloud".into(), forwarded, backlog)],
        }
    }

    #[test]
    fn rates_come_from_the_last_sample_and_the_ring_is_bounded() {
        let h = History::default();
        assert_eq!(h.rates(&at(1_000, 10, 0, 0)), Rates::default());
        for i in 0..(SAMPLES as u64 + 10) {
            h.push(at(i * 5_000, i * 100, i * 50, 1_000 - i as i64));
        }
        let last = (SAMPLES as u64 + 9) * 5_000;
        let now = at(
            last + 2_000,
            (SAMPLES as u64 + 9) * 100 + 40,
            (SAMPLES as u64 + 9) * 50 + 30,
            5,
        );
        let r = h.rates(&now);
        assert_eq!(r.received, 20.0);
        assert_eq!(r.delivered, 40.0);
        assert_eq!(h.drain_rate(&now, "cloud"), 15.0);
        assert_eq!(h.drain_rate(&now, "other"), 0.0);
        let backlog = h.backlog("cloud", last);
        assert_eq!(backlog.len(), SAMPLES);
        assert_eq!(backlog.last(), Some(&(0.0, 1_000 - (SAMPLES as i64 + 9))));
        assert_eq!(backlog[0].0, (SAMPLES as f64 - 1.0) * 5.0);
    }
}
