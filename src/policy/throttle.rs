//! Slowing password guessing: per client address, attempts after repeated failures are
//! spaced out, so a LAN attacker cannot try passwords fast, however many connections it
//! opens in parallel.
//!
//! Each address has a "next attempt not before" instant. An attempt reserves the next
//! slot (so parallel attempts queue up one after another rather than all waiting the
//! same delay) and waits for it. The spacing doubles with each failure past
//! [`FREE_FAILURES`], up to [`MAX_DELAY`]; a success or [`FORGET_AFTER`] of quiet clears
//! the address. The table holds at most [`MAX_ADDRESSES`] addresses; when full, the entry
//! that failed longest ago gives way (an attacker cycling addresses gets no history, but
//! each of its addresses is still spaced).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failures from one address before attempts are spaced out.
pub const FREE_FAILURES: u32 = 3;
/// The spacing after the first throttled failure; doubles with each further failure.
pub const BASE_DELAY: Duration = Duration::from_millis(250);
/// The longest spacing between two attempts from one address.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// An address with no failure for this long starts over.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses tracked at once.
pub const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    next_attempt: Instant,
}

/// What [`Throttle::wait`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The address has no recent failures (or only the free ones).
    None,
    /// The attempt waited for its slot.
    Waited,
    /// The next slot is too far away: refuse without trying.
    Refused,
}

#[derive(Debug, Default)]
pub struct Throttle {
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long an attempt from `addr` must wait now (reserving its slot); None when its
    /// slot would be more than [`MAX_DELAY`] away: the attempt is refused at once rather
    /// than queued, so parallel guesses cannot pile up waiting connections.
    pub fn reserve(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let mut table = self.lock();
        let Some(e) = table.get_mut(&addr) else {
            return Some(Duration::ZERO);
        };
        if now.duration_since(e.last_failure) >= FORGET_AFTER {
            table.remove(&addr);
            return Some(Duration::ZERO);
        }
        if e.failures < FREE_FAILURES {
            return Some(Duration::ZERO);
        }
        let at = e.next_attempt.max(now);
        if at - now > MAX_DELAY {
            return None;
        }
        e.next_attempt = at + spacing(e.failures);
        Some(at - now)
    }

    /// Waits for the slot of an attempt from `addr`.
    pub async fn wait(&self, addr: IpAddr) -> Wait {
        match self.reserve(addr, Instant::now()) {
            None => Wait::Refused,
            Some(d) if d.is_zero() => Wait::None,
            Some(d) => {
                tokio::time::sleep(d).await;
                Wait::Waited
            }
        }
    }

    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut table = self.lock();
        if !table.contains_key(&addr) && table.len() >= MAX_ADDRESSES {
            let oldest = table
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                table.remove(&a);
            }
        }
        let e = table.entry(addr).or_insert(Entry {
            failures: 0,
            last_failure: now,
            next_attempt: now,
        });
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
    }

    pub fn succeeded(&self, addr: IpAddr) {
        self.lock().remove(&addr);
    }

    /// Addresses tracked (for the metric).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// The spacing after `failures` failures (past the free ones).
fn spacing(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(FREE_FAILURES).min(16);
    BASE_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn attempts_are_spaced_after_the_free_failures() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.reserve(ip(1), now), Some(Duration::ZERO));
            t.failed(ip(1), now);
        }
        // Parallel attempts queue one after another.
        assert_eq!(t.reserve(ip(1), now), Some(Duration::ZERO));
        assert_eq!(t.reserve(ip(1), now), Some(BASE_DELAY));
        assert_eq!(t.reserve(ip(1), now), Some(BASE_DELAY * 2));
        // Another address is not affected.
        assert_eq!(t.reserve(ip(2), now), Some(Duration::ZERO));
        // More failures: longer spacing, capped; an attempt whose slot is further away
        // than that is refused at once, without taking a slot.
        for _ in 0..20 {
            t.failed(ip(1), now);
        }
        let later = now + Duration::from_secs(60);
        assert_eq!(t.reserve(ip(1), later), Some(Duration::ZERO));
        assert_eq!(t.reserve(ip(1), later), Some(MAX_DELAY));
        assert_eq!(t.reserve(ip(1), later), None);
        assert_eq!(t.reserve(ip(1), later), None);
        assert_eq!(t.reserve(ip(1), later + MAX_DELAY), Some(MAX_DELAY));
        // Success forgets; so does a long quiet.
        t.succeeded(ip(1));
        assert_eq!(t.reserve(ip(1), later), Some(Duration::ZERO));
        for _ in 0..10 {
            t.failed(ip(3), now);
        }
        assert_eq!(t.reserve(ip(3), now + FORGET_AFTER), Some(Duration::ZERO));
        assert_eq!(t.reserve(ip(3), now + FORGET_AFTER), Some(Duration::ZERO));
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            let a = IpAddr::from(i.to_be_bytes());
            t.failed(a, now + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.tracked(), MAX_ADDRESSES);
    }
}
