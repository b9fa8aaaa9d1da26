//! The fuzz targets. Adding one: a module with `pub fn run(&[u8]) -> Result<bool, String>`,
//! one entry in [`TARGETS`], and a few seed inputs in `fuzz/corpus/<name>/`.

mod config;
mod mqtt_codec;
mod nats_encode;
mod nats_parser;
mod websocket;

pub struct Target {
    /// Also the corpus and artifact directory name.
    pub name: &'static str,
    /// `Ok(true)`: the input was (at least partly) accepted, so its mutants are worth
    /// keeping; `Ok(false)`: rejected, which is fine; `Err`: a check failed. Must be
    /// deterministic in its input, so a saved input replays the same way.
    pub run: fn(&[u8]) -> Result<bool, String>,
    /// Text format: token- and line-level mutations too.
    pub text: bool,
    /// Tokens the mutator inserts (keywords, magic numbers).
    pub dict: &'static [&'static [u8]],
    /// Longest input tried.
    pub max_len: usize,
    /// A line of target-specific counts, printed after the run.
    pub stats: Option<fn() -> String>,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "mqtt_codec",
        run: mqtt_codec::run,
        text: false,
        dict: mqtt_codec::DICT,
        max_len: 2048,
        stats: Some(mqtt_codec::stats),
    },
    Target {
        name: "nats_parser",
        run: nats_parser::run,
        text: true,
        dict: nats_parser::DICT,
        max_len: 2048,
        stats: None,
    },
    Target {
        name: "websocket",
        run: websocket::run,
        text: false,
        dict: websocket::DICT,
        max_len: 8192,
        stats: None,
    },
    Target {
        name: "config",
        run: config::run,
        text: true,
        dict: config::DICT,
        max_len: 8192,
        stats: None,
    },
];
