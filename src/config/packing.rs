//! `[[upstream]] pack` and its keys: many events in one upstream message, in the
//! `ferry-batch-v1` format (docs/batch-format.md), optionally compressed.

use super::check::{Bound, Checker};
use super::raw::RawUpstream;
use super::types::UpstreamConfig;
use super::units::ByteSize;
use std::time::Duration;

/// How a packed upstream groups its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackConfig {
    /// Events in one batch at most; 1..=65535.
    pub max_events: usize,
    /// Encoded bytes of one batch at most (before compression); an event larger than this
    /// travels alone. 1 KiB..=16 MiB.
    pub max_bytes: ByteSize,
    /// How long the first event of a batch that is not full may wait for more.
    pub linger: Duration,
    pub compression: PackCompression,
    /// The upstream topic (MQTT) or subject's topic form (NATS) batches are published on;
    /// `{gateway}` is the gateway id.
    pub topic: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackCompression {
    None,
    Lz4,
}

impl PackCompression {
    pub fn as_str(self) -> &'static str {
        match self {
            PackCompression::None => "none",
            PackCompression::Lz4 => "lz4",
        }
    }
}

impl Default for PackConfig {
    fn default() -> PackConfig {
        PackConfig {
            max_events: 256,
            max_bytes: ByteSize(64 * 1024),
            linger: Duration::from_millis(100),
            compression: PackCompression::None,
            topic: "ferry/batch/{gateway}".into(),
        }
    }
}

/// The `pack*` and `compression` keys of `upstream[i]` (`p` makes their paths).
pub(super) fn packing(
    c: &mut Checker,
    p: &dyn Fn(&str) -> String,
    r: &RawUpstream,
    up: &mut UpstreamConfig,
) {
    let others = [
        ("pack_max_events", &r.pack_max_events),
        ("pack_max_bytes", &r.pack_max_bytes),
        ("pack_linger", &r.pack_linger),
        ("pack_topic", &r.pack_topic),
        ("compression", &r.compression),
    ];
    match c.string(&p("pack"), &r.pack) {
        Some(("ferry-batch-v1", _)) => {}
        Some((other, at)) => {
            c.at(
                at,
                format!(
                    "{}: unknown format {other:?}: expected \"ferry-batch-v1\"",
                    p("pack")
                ),
            );
            return;
        }
        None => {
            for (key, leaf) in others {
                if let Some(v) = leaf {
                    c.bad(
                        v,
                        &p(key),
                        "set without pack: expected pack = \"ferry-batch-v1\" too",
                    );
                }
            }
            return;
        }
    }
    let mut pack = PackConfig::default();
    pack.max_events = c
        .uint(
            &p("pack_max_events"),
            &r.pack_max_events,
            Bound::Between(1, 65_535),
        )
        .unwrap_or(pack.max_events);
    pack.max_bytes = c
        .size(
            &p("pack_max_bytes"),
            &r.pack_max_bytes,
            ByteSize(1024),
            ByteSize(16 << 20),
        )
        .unwrap_or(pack.max_bytes);
    pack.linger = c
        .duration(
            &p("pack_linger"),
            &r.pack_linger,
            Duration::ZERO,
            Some(Duration::from_secs(60)),
        )
        .unwrap_or(pack.linger);
    if let Some((v, at)) = c.string(&p("compression"), &r.compression) {
        match v {
            "none" => pack.compression = PackCompression::None,
            "lz4" => pack.compression = PackCompression::Lz4,
            other => c.at(
                at,
                format!(
                    "{}: invalid value {other:?}: expected \"none\" or \"lz4\"",
                    p("compression")
                ),
            ),
        }
    }
    if let Some((t, at)) = c.string(&p("pack_topic"), &r.pack_topic) {
        let probe = t.replace("{gateway}", "g");
        match crate::topic::validate_name(&probe) {
            Ok(()) => pack.topic = t.to_string(),
            Err(e) => c.at(at, format!("{}: invalid topic {t:?}: {e}", p("pack_topic"))),
        }
    }
    up.pack = Some(pack);
}
