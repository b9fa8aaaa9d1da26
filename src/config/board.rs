//! Board profiles (`boards/*.toml`, compiled in): limits sized for one kind of gateway,
//! selected with a top-level `board = "rpi-4"` key.
//!
//! A profile is a partial config file (only `[mqtt]`, `[nats]`, `[store]`, `[limits]` and `[runtime]`) plus
//! a `[board]` table describing the hardware and the build target. It is checked by the
//! same rules as a user's file, then used as the base the user's file is applied on, so
//! "explicit keys override the profile" holds key by key with no merge code of its own.

use super::check::Checker;
use super::errors::ConfigError;
use super::raw::{self, RawBoard, RawConfig};
use super::types::Config;
use super::validate;

/// The known boards, in the order they are listed in messages.
const BOARDS: &[(&str, &str)] = &[
    ("rpi-zero-w", include_str!("../../boards/rpi-zero-w.toml")),
    ("rpi-zero-2w", include_str!("../../boards/rpi-zero-2w.toml")),
    ("rpi-3b-plus", include_str!("../../boards/rpi-3b-plus.toml")),
    ("rpi-4", include_str!("../../boards/rpi-4.toml")),
    ("rpi-5", include_str!("../../boards/rpi-5.toml")),
    ("cm4", include_str!("../../boards/cm4.toml")),
    ("generic-arm", include_str!("../../boards/generic-arm.toml")),
];

/// What a profile says about the hardware; not part of the broker's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardInfo {
    pub name: String,
    pub description: String,
    /// The Rust target triple cross/build.sh builds for this board.
    pub target: String,
    /// The `-C target-cpu` value for that build.
    pub target_cpu: String,
    /// The smallest RAM the board ships with, which the limits are sized for.
    pub memory: String,
}

const FILE_KEYS: &[&str] = &["board", "mqtt", "nats", "store", "limits", "runtime"];

/// Names of the built-in boards.
pub fn board_names() -> impl Iterator<Item = &'static str> {
    BOARDS.iter().map(|(name, _)| *name)
}

/// A built-in profile: its description and the configuration it yields on its own.
/// `None` for an unknown name; an error only if a built-in file is broken (a unit test
/// keeps that from shipping).
pub fn board(name: &str) -> Option<Result<(BoardInfo, Config), ConfigError>> {
    let (_, text) = BOARDS.iter().find(|(n, _)| *n == name)?;
    Some(parse_board(name, text))
}

fn parse_board(name: &str, text: &str) -> Result<(BoardInfo, Config), ConfigError> {
    let origin = format!("boards/{name}.toml (built in)");
    let mut checker = Checker::new(text, &origin);
    let mut raw = RawConfig::default();
    let mut info = None;
    for (key, value) in
        raw::document(text, &mut checker).map_or_else(Default::default, |d| d.into_inner())
    {
        match key.get_ref().as_ref() {
            "board" => info = raw::table::<RawBoard>(value, &mut checker),
            "mqtt" => raw.mqtt = raw::table(value, &mut checker),
            "nats" => raw.nats = raw::table(value, &mut checker),
            "store" => raw.store = raw::table(value, &mut checker),
            "limits" => raw.limits = raw::table(value, &mut checker),
            "runtime" => raw.runtime = raw::table(value, &mut checker),
            other => checker.at(key.span().start, raw::unknown_field(other, FILE_KEYS)),
        }
    }
    let mut text_of = |leaf: &raw::Leaf, key: &str| -> String {
        match checker.string(&format!("board.{key}"), leaf) {
            Some((s, _)) => s.to_string(),
            None => {
                checker.at(0, format!("[board] {key}: missing"));
                String::new()
            }
        }
    };
    let info = info.map(|i| i.into_inner()).unwrap_or_default();
    let board = BoardInfo {
        name: text_of(&info.name, "name"),
        description: text_of(&info.description, "description"),
        target: text_of(&info.target, "target"),
        target_cpu: text_of(&info.target_cpu, "target_cpu"),
        memory: text_of(&info.memory, "memory"),
    };
    let mut config = validate::validate(&raw, &mut checker, &Config::default());
    if board.name != name {
        checker.at(
            0,
            format!("[board] name {:?} differs from the file name", board.name),
        );
    }
    if checker.problems.is_empty() {
        config.board = Some(name.to_string());
        Ok((board, config))
    } else {
        Err(ConfigError {
            problems: checker.problems,
        })
    }
}

/// The base configuration for the user's `board` key: the profile's, or the defaults
/// (with a located problem) when the key is not a known board name.
pub(crate) fn base(c: &mut Checker, raw: &RawConfig) -> Config {
    let Some((name, at)) = c.string("board", &raw.board) else {
        return Config::default();
    };
    match board(name) {
        Some(Ok((_, config))) => config,
        Some(Err(e)) => {
            c.at(
                at,
                format!("board: built-in profile {name:?} is invalid: {e}"),
            );
            Config::default()
        }
        None => {
            let known: Vec<String> = board_names().map(|n| format!("{n:?}")).collect();
            c.at(
                at,
                format!(
                    "board: unknown board {name:?}: expected one of {}",
                    known.join(", ")
                ),
            );
            Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, parse};
    use std::time::Duration;

    #[test]
    fn every_built_in_board_is_valid_and_fits_its_memory() {
        for name in board_names() {
            let (info, config) = board(name).unwrap().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(info.name, name);
            assert_eq!(config.board.as_deref(), Some(name));
            assert!(
                [
                    "aarch64-unknown-linux-gnu",
                    "armv7-unknown-linux-gnueabihf",
                    "aarch64-unknown-linux-musl",
                    "armv7-unknown-linux-musleabihf",
                    "arm-unknown-linux-musleabihf"
                ]
                .contains(&info.target.as_str()),
                "{name}: target {}",
                info.target
            );
            assert!(!info.target_cpu.is_empty());
            let memory = ByteSize::parse(&info.memory).unwrap();
            // The redb cache and the store queue are the fixed costs: keep them small
            // next to the board's RAM.
            assert!(config.store.cache_size.0 * 32 <= memory.0, "{name}: cache");
            // Flash friendly: an fsync budget, with PUBACK latency still low (at most
            // 100 ms more) and room for bursts (max_batch x budget events a second).
            let budget = config.store.max_fsyncs_per_sec;
            assert!((10..=50).contains(&budget), "{name}: max_fsyncs_per_sec");
            assert!(
                config.store.max_batch as u64 * u64::from(budget) >= 5_000,
                "{name}: max_batch x max_fsyncs_per_sec"
            );
            assert_eq!(config.store.linger, Duration::ZERO, "{name}: linger");
            // Only the limits a profile is about differ from the defaults.
            let d = Config::default();
            assert_eq!(config.mqtt.listen, d.mqtt.listen);
            assert_eq!(config.store.dir, d.store.dir);
            // The memory budget fits well inside the board's RAM.
            assert!(
                config.limits.memory.0 * 8 <= memory.0,
                "{name}: limits.memory"
            );
            assert!(config.limits.memory.0 >= 16 << 20, "{name}: limits.memory");
            // Retained messages get a sixteenth of the budget: a larger key would only
            // pretend, and a smaller one would leave their share unused.
            assert_eq!(
                config.mqtt.max_retained_bytes.0,
                config.limits.memory.0 / 16,
                "{name}: max_retained_bytes"
            );
            // And the redb cache fits its share of the budget (three sixteenths).
            assert!(
                config.store.cache_size.0 <= config.limits.memory.0 / 16 * 3,
                "{name}: cache_size within its share of limits.memory"
            );
            // A profile never weakens durability: a PUBACK still means "on disk".
            assert_eq!(config.store.fsync, d.store.fsync, "{name}: fsync");
            assert!(config.upstream.is_empty() && config.forward.is_empty());
        }
    }

    #[test]
    fn profile_values_apply_and_explicit_keys_win() {
        let text =
            "board = \"rpi-zero-2w\"\n[store]\nlinger = \"0ms\"\n[mqtt]\nmax_connections = 3\n";
        let c = parse(text, "f.toml").unwrap();
        let (_, profile) = board("rpi-zero-2w").unwrap().unwrap();
        assert_eq!(c.board.as_deref(), Some("rpi-zero-2w"));
        assert_eq!(c.store.linger, Duration::ZERO);
        assert_eq!(c.mqtt.max_connections, 3);
        assert_eq!(c.store.cache_size, profile.store.cache_size);
        assert_eq!(c.store.queue, profile.store.queue);
        assert_eq!(c.nats.max_pending, profile.nats.max_pending);
        assert_eq!(c.mqtt.max_inflight, profile.mqtt.max_inflight);
        assert_ne!(c.nats.max_pending, Config::default().nats.max_pending);
    }

    #[test]
    fn board_round_trips_through_to_toml() {
        let text = "board = \"rpi-zero-w\"\n[nats]\nmax_payload = \"64KiB\"\n";
        let c = parse(text, "f.toml").unwrap();
        let out = c.to_toml();
        assert!(out.starts_with("board = \"rpi-zero-w\"\n"), "{out}");
        assert!(out.contains("max_fsyncs_per_sec = 10"), "{out}");
        assert_eq!(parse(&out, "out.toml").unwrap(), c);
    }

    #[test]
    fn a_profile_limit_is_checked_against_explicit_keys() {
        // The profile's max_pending (2MiB) is below this payload limit.
        let text = "board = \"rpi-zero-w\"\n[nats]\nmax_payload = \"4MiB\"\n";
        let e = parse(text, "f.toml").unwrap_err().to_string();
        assert!(e.contains("f.toml:3:15: nats.max_payload"), "{e}");
    }

    #[test]
    fn unknown_board_lists_the_known_ones() {
        let e = parse("\n\nboard = \"rpi-6\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "f.toml:3:9: board: unknown board \"rpi-6\": expected one of \"rpi-zero-w\", \
             \"rpi-zero-2w\", \"rpi-3b-plus\", \"rpi-4\", \"rpi-5\", \"cm4\", \"generic-arm\""
        );
        let e = parse("board = 4\n", "f.toml").unwrap_err().to_string();
        assert_eq!(e, "f.toml:1:9: board: expected a string, found integer 4");
    }
}
