//! The progress watchdog of one upstream connection (`[[upstream]] stall_timeout`).
//!
//! A link can look healthy and move nothing: the TCP connection stays open, keep-alive
//! pings may even be answered, but no publish is acknowledged. Only acknowledged progress
//! counts, so this watches acknowledgements, never bytes or pings.
//!
//! The clock runs only while something is owed: it starts at the first publish handed to
//! the client after the last acknowledgement (or, with publishes still in flight, at the
//! last acknowledgement itself), and stops when nothing is in flight. An idle link with
//! nothing to send therefore never trips it. Pure bookkeeping over explicit instants: the
//! link loop feeds it and acts on the answer, so the rule is tested without sockets or
//! clocks.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Watchdog {
    /// `Duration::ZERO`: the watchdog is off.
    timeout: Duration,
    /// When the current wait for an acknowledgement began; `None` when it has not begun
    /// since the last acknowledgement (or since nothing was owed).
    since: Option<Instant>,
    /// The last acknowledgement on this connection.
    last_ack: Option<Instant>,
}

impl Watchdog {
    /// A watchdog for one connection; `timeout` zero turns it off.
    pub fn new(timeout: Duration) -> Watchdog {
        Watchdog {
            timeout,
            since: None,
            last_ack: None,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.timeout.is_zero()
    }

    /// A publish was handed to the client: an acknowledgement is owed from now, unless
    /// one was already owed (then the earlier start stands).
    pub fn sent(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// The upstream acknowledged a publish (any packet id, refused or not: it answered).
    pub fn acked(&mut self, now: Instant) {
        self.since = None;
        self.last_ack = Some(now);
    }

    /// Whether the link has gone `timeout` without progress while `owed` (events in
    /// flight); if so, for how long. With nothing owed the clock is stopped.
    pub fn stalled(&mut self, now: Instant, owed: bool) -> Option<Duration> {
        if !self.enabled() || !owed {
            self.since = None;
            return None;
        }
        // Still owed after an acknowledgement and nothing sent since: the next one is
        // owed from that acknowledgement.
        let start = *self.since.get_or_insert(self.last_ack.unwrap_or(now));
        let silent = now.saturating_duration_since(start);
        (silent >= self.timeout).then_some(silent)
    }

    /// How often the link should ask [`Watchdog::stalled`]: a quarter of the timeout
    /// (so a stall is noticed within 1.25 x `timeout`), between 10 ms and 1 s.
    pub fn check_every(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(60);

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn an_idle_link_never_trips() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T);
        for s in [0, 59, 60, 61, 3600] {
            assert_eq!(w.stalled(at(t0, s), false), None);
        }
        // Idle long after an acknowledgement: the next send starts a fresh wait.
        w.sent(at(t0, 0));
        w.acked(at(t0, 1));
        assert_eq!(w.stalled(at(t0, 1000), false), None);
        w.sent(at(t0, 5000));
        assert_eq!(w.stalled(at(t0, 5059), true), None);
        assert_eq!(w.stalled(at(t0, 5060), true), Some(Duration::from_secs(60)));
    }

    #[test]
    fn no_acknowledgement_for_the_timeout_while_in_flight_trips() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T);
        w.sent(at(t0, 10));
        // Later sends do not move the start of the wait.
        w.sent(at(t0, 30));
        assert_eq!(w.stalled(at(t0, 69), true), None);
        assert_eq!(w.stalled(at(t0, 70), true), Some(T));
        assert_eq!(w.stalled(at(t0, 95), true), Some(Duration::from_secs(85)));
    }

    #[test]
    fn any_acknowledgement_is_progress() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T);
        w.sent(at(t0, 0));
        w.acked(at(t0, 50));
        // Still in flight, nothing sent since: owed from the acknowledgement.
        assert_eq!(w.stalled(at(t0, 109), true), None);
        assert_eq!(w.stalled(at(t0, 110), true), Some(T));
        w.acked(at(t0, 111));
        // A send after the acknowledgement starts the next wait.
        w.sent(at(t0, 140));
        assert_eq!(w.stalled(at(t0, 199), true), None);
        assert!(w.stalled(at(t0, 200), true).is_some());
    }

    #[test]
    fn nothing_owed_stops_the_clock() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T);
        w.sent(at(t0, 0));
        assert_eq!(w.stalled(at(t0, 30), true), None);
        assert_eq!(w.stalled(at(t0, 40), false), None);
        // Owed again (e.g. a QoS 0 publish waiting to be written) from the next check.
        assert_eq!(w.stalled(at(t0, 50), true), None);
        assert_eq!(w.stalled(at(t0, 109), true), None);
        assert!(w.stalled(at(t0, 110), true).is_some());
    }

    #[test]
    fn zero_turns_it_off() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::ZERO);
        assert!(!w.enabled());
        w.sent(t0);
        assert_eq!(w.stalled(at(t0, 1_000_000), true), None);
    }

    #[test]
    fn checks_often_enough() {
        assert_eq!(
            Watchdog::new(Duration::from_secs(2)).check_every(),
            Duration::from_millis(500)
        );
        assert_eq!(Watchdog::new(T).check_every(), Duration::from_secs(1));
        assert_eq!(
            Watchdog::new(Duration::from_millis(1)).check_every(),
            Duration::from_millis(10)
        );
    }
}
