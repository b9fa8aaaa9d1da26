//! The file as written, before any checking.
//!
//! Leaves are kept as `Spanned<Value>` rather than their final types so that a wrong type
//! is reported by us, with every other problem, instead of aborting at the first one.
//!
//! The document is read by toml's own parser into a [`DeTable`] (every key and value with
//! its span) and sorted into these structs here, by hand, rather than by serde's derive:
//! the derive instantiated toml's deserializer once per table type, and this file made
//! the stripped aarch64 binary 213 KB smaller (docs/operations.md, "Size"). It also lets
//! every unknown key and every table of the wrong shape be reported in one run, each at
//! its position, with the same words serde used.

use super::check::Checker;
use toml::de::{DeTable, DeValue};
use toml::{Spanned, Value};

pub(crate) type Leaf = Option<Spanned<Value>>;

/// A table of leaves: its keys, what it is called in messages, and how a key is stored.
pub(crate) trait Table: Default {
    const KEYS: &'static [&'static str];
    const EXPECTING: &'static str;
    /// Stores `value` under `key`; false for a key the table does not have.
    fn set(&mut self, key: &str, value: Spanned<Value>) -> bool;
}

macro_rules! table {
    ($name:ident, $expecting:literal, { $($field:ident),* $(,)? }) => {
        #[derive(Debug, Default)]
        pub(crate) struct $name {
            $(pub $field: Leaf,)*
        }

        impl Table for $name {
            const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
            const EXPECTING: &'static str = $expecting;
            fn set(&mut self, key: &str, value: Spanned<Value>) -> bool {
                match key {
                    $(stringify!($field) => self.$field = Some(value),)*
                    _ => return false,
                }
                true
            }
        }
    };
}

#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    /// A top-level string naming a built-in board profile (see `board.rs`).
    pub board: Leaf,
    pub mqtt: Option<Spanned<RawMqtt>>,
    pub nats: Option<Spanned<RawNats>>,
    pub store: Option<Spanned<RawStore>>,
    pub upstream: Option<Vec<Spanned<RawUpstream>>>,
    pub forward: Option<Vec<Spanned<RawForward>>>,
    pub metrics: Option<Spanned<RawMetrics>>,
    pub log: Option<Spanned<RawLog>>,
    pub gateway: Option<Spanned<RawGateway>>,
    pub acl: Option<Vec<Spanned<RawAcl>>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub tls: Option<Spanned<RawTls>>,
    pub auth: Option<Spanned<RawAuth>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub sys: Option<Spanned<RawSys>>,
    pub runtime: Option<Spanned<RawRuntime>>,
}

const TOP_KEYS: &[&str] = &[
    "board", "mqtt", "nats", "store", "upstream", "forward", "metrics", "log", "gateway", "acl",
    "limits", "tls", "auth", "admin", "sys", "runtime",
];

impl RawConfig {
    /// Reads `text`; every problem goes to `c`. None only when the text is not TOML.
    pub fn parse(text: &str, c: &mut Checker) -> Option<RawConfig> {
        let root = document(text, c)?;
        let mut raw = RawConfig::default();
        for (key, value) in root.into_inner() {
            let at = key.span().start;
            match key.get_ref().as_ref() {
                "board" => raw.board = leaf(value, c),
                "mqtt" => raw.mqtt = table(value, c),
                "nats" => raw.nats = table(value, c),
                "store" => raw.store = table(value, c),
                "upstream" => raw.upstream = tables(value, c),
                "forward" => raw.forward = tables(value, c),
                "metrics" => raw.metrics = table(value, c),
                "log" => raw.log = table(value, c),
                "gateway" => raw.gateway = table(value, c),
                "acl" => raw.acl = tables(value, c),
                "limits" => raw.limits = table(value, c),
                "tls" => raw.tls = table(value, c),
                "auth" => raw.auth = table(value, c),
                "admin" => raw.admin = table(value, c),
                "sys" => raw.sys = table(value, c),
                "runtime" => raw.runtime = table(value, c),
                other => c.at(at, unknown_field(other, TOP_KEYS)),
            }
        }
        Some(raw)
    }
}

/// Parses `text` as a TOML document; a syntax error goes to `c`.
pub(crate) fn document<'i>(text: &'i str, c: &mut Checker) -> Option<Spanned<DeTable<'i>>> {
    match DeTable::parse(text) {
        Ok(root) => Some(root),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            c.at(offset, e.message().trim_end().to_string());
            None
        }
    }
}

/// A table of type `T` from `value`, or None with the problem in `c` (not a table, or a
/// key it does not have; the other keys are kept).
pub(crate) fn table<T: Table>(value: Spanned<DeValue<'_>>, c: &mut Checker) -> Option<Spanned<T>> {
    let span = value.span();
    let t = match value.into_inner() {
        DeValue::Table(t) => t,
        other => {
            c.at(
                span.start,
                format!(
                    "invalid type: {}, expected {}",
                    unexpected(&other),
                    T::EXPECTING
                ),
            );
            return None;
        }
    };
    let mut out = T::default();
    for (key, v) in t {
        let at = key.span().start;
        let name = key.into_inner();
        if let Some(v) = leaf(v, c) {
            if !out.set(&name, v) {
                c.at(at, unknown_field(&name, T::KEYS));
            }
        }
    }
    Some(Spanned::new(span, out))
}

/// An array of tables of type `T` (`[[upstream]]`), or None with the problem in `c`.
fn tables<T: Table>(value: Spanned<DeValue<'_>>, c: &mut Checker) -> Option<Vec<Spanned<T>>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => Some(items.into_iter().filter_map(|v| table(v, c)).collect()),
        other => {
            c.at(
                span.start,
                format!("invalid type: {}, expected a sequence", unexpected(&other)),
            );
            None
        }
    }
}

/// `value` as a plain TOML value with its span.
pub(crate) fn leaf(value: Spanned<DeValue<'_>>, c: &mut Checker) -> Leaf {
    let span = value.span();
    let v = plain(value.into_inner())
        .map_err(|e| c.at(span.start, e))
        .ok()?;
    Some(Spanned::new(span, v))
}

/// Converts a parsed value, its inner spans dropped.
fn plain(value: DeValue<'_>) -> Result<Value, String> {
    Ok(match value {
        DeValue::String(s) => Value::String(s.into_owned()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(Value::Integer)
            .map_err(|_| format!("integer {i} is out of range (at most {})", i64::MAX))?,
        DeValue::Float(f) => match f.as_str().trim_start_matches('+') {
            "nan" | "-nan" => Value::Float(f64::NAN),
            s => Value::Float(s.parse().map_err(|_| format!("invalid float {f}"))?),
        },
        DeValue::Boolean(b) => Value::Boolean(b),
        DeValue::Datetime(d) => Value::Datetime(d),
        DeValue::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| plain(v.into_inner()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => {
            let mut map = toml::Table::new();
            for (k, v) in t {
                map.insert(k.into_inner().into_owned(), plain(v.into_inner())?);
            }
            Value::Table(map)
        }
    })
}

/// What serde said of a value of the wrong type.
fn unexpected(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer `{i}`"),
        DeValue::Float(f) => format!("floating point `{f}`"),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("datetime `{d}`"),
        DeValue::Array(_) => "sequence".into(),
        DeValue::Table(_) => "map".into(),
    }
}

/// serde's words for a key a table does not have.
pub(crate) fn unknown_field(key: &str, expected: &[&str]) -> String {
    let quoted: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    match quoted.as_slice() {
        [] => format!("unknown field `{key}`, there are no fields"),
        [one] => format!("unknown field `{key}`, expected {one}"),
        [a, b] => format!("unknown field `{key}`, expected {a} or {b}"),
        _ => format!(
            "unknown field `{key}`, expected one of {}",
            quoted.join(", ")
        ),
    }
}

table!(RawTls, "a [tls] table", {
    cert_file,
    key_file,
    client_ca_file,
    require_client_cert,
    identity_from_cert,
});

table!(RawAuth, "an [auth] table", {
    password_file,
    allow_anonymous,
    acl_default,
    nats_token,
});

table!(RawMqtt, "a [mqtt] table", {
    enabled,
    listen,
    tls_listen,
    ws_listen,
    wss_listen,
    ws_path,
    max_packet_size,
    max_connections,
    max_inflight,
    max_queued,
    connect_timeout,
    max_sessions,
    max_queued_bytes,
    max_subscriptions,
    max_topic_levels,
    max_retained,
    max_retained_bytes,
    max_topic_aliases,
    outbound_topic_aliases,
    max_keep_alive,
    max_session_expiry,
});

table!(RawNats, "a [nats] table", {
    enabled,
    listen,
    tls,
    connect_timeout,
    max_payload,
    max_control_line,
    max_pending,
    ping_interval,
    max_pings_out,
    max_connections,
    server_name,
});

table!(RawStore, "a [store] table", {
    dir,
    cache_size,
    max_batch,
    linger,
    queue,
    max_bytes,
    max_age,
    on_full,
    fsync,
    max_fsyncs_per_sec,
    dead_letter_max_bytes,
    quarantine_max_bytes,
});

table!(RawUpstream, "an [[upstream]] table", {
    name,
    url,
    urls,
    client_id,
    token,
    creds_file,
    ack_timeout,
    username,
    password,
    keep_alive,
    inflight,
    batch,
    backoff_min,
    backoff_max,
    connect_timeout,
    stall_timeout,
    ca_file,
    protocol,
    max_rate,
    max_bytes_rate,
    max_attempts,
    drain,
    cert_file,
    key_file,
    alpn,
    pack,
    pack_max_events,
    pack_max_bytes,
    pack_linger,
    pack_topic,
    compression,
});

table!(RawForward, "a [[forward]] table", {
    upstream,
    filter,
    topic,
    qos,
    priority,
});

table!(RawLimits, "a [limits] table", {
    memory,
    publisher_stall,
});

table!(RawAcl, "an [[acl]] table", {
    user,
    filter,
    action,
    allow,
});

table!(RawMetrics, "a [metrics] table", {
    listen,
});

table!(RawLog, "a [log] table", {
    level,
});

table!(RawGateway, "a [gateway] table", {
    id,
});

table!(RawAdmin, "an [admin] table", {
    socket,
});

table!(RawSys, "a [sys] table", {
    interval,
});

table!(RawRuntime, "a [runtime] table", {
    worker_threads,
});

// `[board]` of a built-in board profile (`board.rs`), not of a user's file.
table!(RawBoard, "a [board] table", {
    name,
    description,
    target,
    target_cpu,
    memory,
});
