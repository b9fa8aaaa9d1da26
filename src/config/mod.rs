//! ferry's configuration: one TOML file, checked completely at start-up.
//!
//! `parse` reports every problem it can find at once, each with
//! file:line:col, so a broken file is fixed in one pass. Syntax errors stop
//! parsing (the rest of the file cannot be trusted), as do unknown keys and
//! tables of the wrong shape (serde stops at the first); everything else
//! (types, ranges, cross-references) is collected.

mod acl;
mod board;
mod check;
mod diff;
mod errors;
mod links;
mod packing;
mod raw;
mod security;
mod topic;
mod types;
mod units;
mod url;
mod validate;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_links;
#[cfg(test)]
mod tests_rules;

use std::path::Path;

pub use board::{BoardInfo, board, board_names};
pub use diff::changed_keys;
pub use errors::{ConfigError, Problem};
pub use packing::{PackCompression, PackConfig};
pub use topic::TOPIC_PLACEHOLDER;
pub use types::{
    AclAction, AclRule, AdminConfig, AdminSocket, AuthConfig, CertIdentity, Config,
    DEFAULT_PRIORITY, Drain, ForwardRule, Fsync, GatewayConfig, LogConfig, MetricsConfig,
    MqttConfig, NatsConfig, NatsTls, OnFull, RuntimeConfig, StoreConfig, SysConfig, TlsConfig,
    UpstreamConfig, UpstreamProtocol, WorkerThreads,
};
pub use units::{ByteSize, UnitError, format_duration, parse_duration};
pub use url::{UpstreamScheme, UpstreamUrl, UrlError};

/// The documented defaults; parsing it yields `Config::default()`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Reads and parses `path`; the path as given is the file name in messages.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &origin),
        Err(e) => Err(ConfigError {
            problems: vec![Problem {
                file: origin,
                line: 0,
                column: 0,
                message: format!("cannot read config file: {e}"),
            }],
        }),
    }
}

/// Where `text` puts the admin socket even when the file does not pass its checks (None:
/// not TOML at all; `Some(None)`: `admin.socket = ""`), so that `ferry reload` still
/// reaches the running ferry, which then reports the file's problems itself.
pub fn admin_socket_of(text: &str) -> Option<Option<std::path::PathBuf>> {
    let mut ignored = check::Checker::new(text, "");
    let raw = raw::RawConfig::parse(text, &mut ignored)?;
    let string = |l: &raw::Leaf| {
        l.as_ref()
            .and_then(|v| v.get_ref().as_str().map(str::to_string))
    };
    if let Some(socket) = raw.admin.as_ref().and_then(|a| string(&a.get_ref().socket)) {
        return Some((!socket.is_empty()).then(|| socket.into()));
    }
    let dir = raw
        .store
        .as_ref()
        .and_then(|s| string(&s.get_ref().dir))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Config::default().store.dir);
    Some(Some(dir.join("ferry.sock")))
}

/// Parses and checks `text`; `origin` names the file in messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut checker = check::Checker::new(text, origin);
    let Some(raw) = raw::RawConfig::parse(text, &mut checker) else {
        return Err(ConfigError {
            problems: checker.problems,
        });
    };
    let base = board::base(&mut checker, &raw);
    let config = validate::validate(&raw, &mut checker, &base);
    let mut problems = checker.problems;
    if problems.is_empty() {
        Ok(config)
    } else {
        // File order reads best; rules are checked section by section.
        problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError { problems })
    }
}
