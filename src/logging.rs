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
