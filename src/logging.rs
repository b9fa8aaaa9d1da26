//! Logging to stderr (journald or a file take it from there) at `[log] level`, which a
//! reload may change while ferry runs.
//!
//! `Targets` rather than `EnvFilter`: the same `level,target=level` directives without
//! the regex engine (about 250 KiB of the binary). Plain text, never colours.

use std::sync::OnceLock;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Registry, reload};

/// Swaps the filter in place; set once by [`init`].
static FILTER: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();
/// RUST_LOG was set at start: it wins over `[log] level`, at start and at a reload.
static FROM_ENV: OnceLock<bool> = OnceLock::new();

/// Starts logging at `level`, or at RUST_LOG when that is set and valid.
pub fn init(level: &str) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok());
    let _ = FROM_ENV.set(from_env.is_some());
    let filter = from_env
        .or_else(|| level.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    if tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Why a new `[log] level` was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("RUST_LOG is set, and overrides log.level")]
    Environment,
    #[error("logging was not started by ferry (a test harness owns it)")]
    NotOurs,
    #[error("not a level or directives: {0:?}")]
    Invalid(String),
}

/// Applies a reloaded `[log] level` (already validated by the config reader).
pub fn set_level(level: &str) -> Result<(), LevelError> {
    if FROM_ENV.get().copied().unwrap_or(false) {
        return Err(LevelError::Environment);
    }
    let handle = FILTER.get().ok_or(LevelError::NotOurs)?;
    let targets = level
        .parse::<Targets>()
        .map_err(|_| LevelError::Invalid(level.to_string()))?;
    handle.reload(targets).map_err(|_| LevelError::NotOurs)
}

/// A kind of line every client can make ferry write (its connection, its refusal, its
/// bad packet). Each kind has its own budget per [`WINDOW_SECS`]: the first lines are
/// logged, the rest counted and reported in one summary line ([`flush_suppressed`]) or
/// with the next line logged, so a flood of bad clients cannot wear an SD card through
/// the log. At most [`MAX_LINES_PER_MINUTE`] such lines a minute, whatever clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    /// A client connected (MQTT CONNECT accepted, NATS CONNECT).
    Connected,
    /// A client's connection ended.
    Disconnected,
    /// A CONNECT refused: credentials, client id, session limit.
    Refused,
    /// A publish, subscription or will the ACL refused.
    Denied,
    /// A connection refused at the connection limit, or closed for its memory share.
    OverLimit,
    /// A NATS client cut off as a slow consumer.
    SlowConsumer,
}

const NOISES: [(Noise, &str, u64); 6] = [
    (Noise::Connected, "client connected", 20),
    (Noise::Disconnected, "client disconnected", 20),
    (Noise::Refused, "CONNECT refused", 5),
    (Noise::Denied, "refused by acl", 5),
    (Noise::OverLimit, "over a limit", 5),
    (Noise::SlowConsumer, "slow consumer", 5),
];

/// The length of one budget window.
pub const WINDOW_SECS: u64 = 10;
/// Lines of every [`Noise`] together in a minute: each kind's burst per window, and one
/// summary line per kind and window.
pub const MAX_LINES_PER_MINUTE: u64 = (20 + 20 + 5 + 5 + 5 + 5 + 6) * (60 / WINDOW_SECS);

struct Budget {
    window: std::sync::atomic::AtomicU64,
    used: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const FRESH: Budget = Budget {
    window: std::sync::atomic::AtomicU64::new(0),
    used: std::sync::atomic::AtomicU64::new(0),
    suppressed: std::sync::atomic::AtomicU64::new(0),
};
static BUDGETS: [Budget; 6] = [FRESH; 6];

fn index(n: Noise) -> usize {
    NOISES.iter().position(|(k, _, _)| *k == n).unwrap_or(0)
}

/// Whether to log a line of kind `n` now (`now_secs`: seconds since the epoch). `Some(k)`:
/// log it, with `k` lines of this kind suppressed since the last one logged.
pub fn allow_at(n: Noise, now_secs: u64) -> Option<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let i = index(n);
    let b = &BUDGETS[i];
    let window = now_secs / WINDOW_SECS;
    let seen = b.window.load(Relaxed);
    if seen != window
        && b.window
            .compare_exchange(seen, window, Relaxed, Relaxed)
            .is_ok()
    {
        b.used.store(0, Relaxed);
    }
    if b.used.fetch_add(1, Relaxed) < NOISES[i].2 {
        Some(b.suppressed.swap(0, Relaxed))
    } else {
        b.suppressed.fetch_add(1, Relaxed);
        None
    }
}

/// [`allow_at`] now.
pub fn allow(n: Noise) -> Option<u64> {
    allow_at(n, crate::event::now_ms() / 1000)
}

/// One line per kind with lines suppressed since its last line: called every
/// [`WINDOW_SECS`] (`broker::sys::run`), so a flood that stops is still accounted for.
pub fn flush_suppressed() {
    use std::sync::atomic::Ordering::Relaxed;
    for (i, (_, what, burst)) in NOISES.iter().enumerate() {
        let n = BUDGETS[i].suppressed.swap(0, Relaxed);
        if n > 0 {
            tracing::info!(
                suppressed = n,
                kind = what,
                burst,
                window_secs = WINDOW_SECS,
                "log lines suppressed: more clients than this a window are counted in /metrics, not logged one by one"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_burst_per_window() {
        // Times far from now and from each other: other tests share the budgets.
        let t = 1_000_000_000;
        let allowed = (0..50)
            .filter(|_| allow_at(Noise::SlowConsumer, t).is_some())
            .count();
        assert_eq!(allowed, 5);
        // Another kind is not affected.
        assert_eq!(allow_at(Noise::Connected, t), Some(0));
        // The next window: allowed again, told how many were not logged.
        assert_eq!(allow_at(Noise::SlowConsumer, t + WINDOW_SECS), Some(45));
        assert_eq!(allow_at(Noise::SlowConsumer, t + WINDOW_SECS), Some(0));
        assert_eq!(MAX_LINES_PER_MINUTE, 396);
    }
}
