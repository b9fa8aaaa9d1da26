//! The file as written, before any checking.
//!
//! Leaves are kept as `Spanned<Value>` rather than their final types so that
//! a wrong type is reported by us, with every other problem, instead of
//! aborting deserialization at the first one. Unknown keys are still left to
//! serde (`deny_unknown_fields`): its message lists the valid keys.

use serde::Deserialize;
use toml::{Spanned, Value};

pub(crate) type Leaf = Option<Spanned<Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the top level of the config file")]
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [tls] table")]
pub(crate) struct RawTls {
    pub cert_file: Leaf,
    pub key_file: Leaf,
    pub client_ca_file: Leaf,
    pub require_client_cert: Leaf,
    pub identity_from_cert: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [auth] table")]
pub(crate) struct RawAuth {
    pub password_file: Leaf,
    pub allow_anonymous: Leaf,
    pub acl_default: Leaf,
    pub nats_token: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [mqtt] table")]
pub(crate) struct RawMqtt {
    pub enabled: Leaf,
    pub listen: Leaf,
    pub tls_listen: Leaf,
    pub ws_listen: Leaf,
    pub wss_listen: Leaf,
    pub ws_path: Leaf,
    pub max_packet_size: Leaf,
    pub max_connections: Leaf,
    pub max_inflight: Leaf,
    pub max_queued: Leaf,
    pub connect_timeout: Leaf,
    pub max_sessions: Leaf,
    pub max_queued_bytes: Leaf,
    pub max_subscriptions: Leaf,
    pub max_topic_levels: Leaf,
    pub max_retained: Leaf,
    pub max_retained_bytes: Leaf,
    pub max_topic_aliases: Leaf,
    pub outbound_topic_aliases: Leaf,
    pub max_keep_alive: Leaf,
    pub max_session_expiry: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [nats] table")]
pub(crate) struct RawNats {
    pub enabled: Leaf,
    pub listen: Leaf,
    pub tls: Leaf,
    pub connect_timeout: Leaf,
    pub max_payload: Leaf,
    pub max_control_line: Leaf,
    pub max_pending: Leaf,
    pub ping_interval: Leaf,
    pub max_pings_out: Leaf,
    pub max_connections: Leaf,
    pub server_name: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [store] table")]
pub(crate) struct RawStore {
    pub dir: Leaf,
    pub cache_size: Leaf,
    pub max_batch: Leaf,
    pub linger: Leaf,
    pub queue: Leaf,
    pub max_bytes: Leaf,
    pub max_age: Leaf,
    pub on_full: Leaf,
    pub fsync: Leaf,
    pub dead_letter_max_bytes: Leaf,
    pub quarantine_max_bytes: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[upstream]] table")]
pub(crate) struct RawUpstream {
    pub name: Leaf,
    pub url: Leaf,
    pub urls: Leaf,
    pub client_id: Leaf,
    pub token: Leaf,
    pub creds_file: Leaf,
    pub ack_timeout: Leaf,
    pub username: Leaf,
    pub password: Leaf,
    pub keep_alive: Leaf,
    pub inflight: Leaf,
    pub batch: Leaf,
    pub backoff_min: Leaf,
    pub backoff_max: Leaf,
    pub connect_timeout: Leaf,
    pub stall_timeout: Leaf,
    pub ca_file: Leaf,
    pub protocol: Leaf,
    pub max_rate: Leaf,
    pub max_bytes_rate: Leaf,
    pub max_attempts: Leaf,
    pub cert_file: Leaf,
    pub key_file: Leaf,
    pub alpn: Leaf,
    pub pack: Leaf,
    pub pack_max_events: Leaf,
    pub pack_max_bytes: Leaf,
    pub pack_linger: Leaf,
    pub pack_topic: Leaf,
    pub compression: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[forward]] table")]
pub(crate) struct RawForward {
    pub upstream: Leaf,
    pub filter: Leaf,
    pub topic: Leaf,
    pub qos: Leaf,
    pub priority: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [limits] table")]
pub(crate) struct RawLimits {
    pub memory: Leaf,
    pub publisher_stall: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[acl]] table")]
pub(crate) struct RawAcl {
    pub user: Leaf,
    pub filter: Leaf,
    pub action: Leaf,
    pub allow: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [metrics] table")]
pub(crate) struct RawMetrics {
    pub listen: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [log] table")]
pub(crate) struct RawLog {
    pub level: Leaf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [gateway] table")]
pub(crate) struct RawGateway {
    pub id: Leaf,
}
