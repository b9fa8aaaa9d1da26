//! The validated configuration handed to the rest of ferry.
//!
//! Every value here has passed the checks in `validate`, so consumers may
//! rely on the documented ranges without re-checking them. `Default` mirrors
//! `DEFAULT_TOML` exactly (a test keeps the two in step).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::topic;
use super::units::ByteSize;
use super::url::UpstreamUrl;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The board profile the limits started from (`boards/<name>.toml`); keys set in the
    /// file override it. `None`: the built-in defaults.
    pub board: Option<String>,
    pub mqtt: MqttConfig,
    pub nats: NatsConfig,
    pub store: StoreConfig,
    pub upstream: Vec<UpstreamConfig>,
    pub forward: Vec<ForwardRule>,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub gateway: GatewayConfig,
    /// Access rules, first match wins; no match: `auth.acl_default`.
    pub acl: Vec<AclRule>,
    pub limits: LimitsConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub sys: SysConfig,
    pub runtime: RuntimeConfig,
}

/// `[runtime]`: the threads ferry runs on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuntimeConfig {
    pub worker_threads: WorkerThreads,
}

/// `runtime.worker_threads`: how many threads run ferry's tasks. The first is always the
/// event loop (every connection and the router, in arrival order); the others run the
/// upstream links (`forward/workers.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerThreads {
    /// `"auto"`: the number of cores, at most [`WorkerThreads::AUTO_MAX`].
    #[default]
    Auto,
    Fixed(u8),
}

/// The CPUs online. Not `std::thread::available_parallelism`, whose cgroup quota
/// parsing costs about 4 KB of the binary; a gateway's service has no CPU quota.
fn online_cpus() -> usize {
    // SAFETY: sysconf reads a system value; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

impl WorkerThreads {
    pub const AUTO_MAX: usize = 4;
    pub const MAX: u8 = 64;

    /// The number of threads on this machine.
    pub fn resolve(self) -> usize {
        match self {
            WorkerThreads::Fixed(n) => usize::from(n.max(1)),
            WorkerThreads::Auto => online_cpus().min(Self::AUTO_MAX),
        }
    }
}

/// `[admin]`: the local socket `ferry status` and `ferry reload` talk to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminConfig {
    pub socket: AdminSocket,
}

/// Where the admin socket is.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AdminSocket {
    /// `ferry.sock` in `store.dir`: where the service user may write anyway.
    #[default]
    InStoreDir,
    At(PathBuf),
    /// `socket = ""`: no admin socket (SIGHUP still reloads).
    Off,
}

/// The longest socket path Linux takes (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl Config {
    /// The admin socket's path, None when it is off.
    pub fn admin_socket(&self) -> Option<PathBuf> {
        match &self.admin.socket {
            AdminSocket::InStoreDir => Some(self.store.dir.join("ferry.sock")),
            AdminSocket::At(p) => Some(p.clone()),
            AdminSocket::Off => None,
        }
    }
}

/// `[sys]`: the retained `$SYS/...` status topics.
#[derive(Debug, Clone, PartialEq)]
pub struct SysConfig {
    /// How often they are published; zero: never.
    pub interval: Duration,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig {
            interval: Duration::from_secs(10),
        }
    }
}

/// `[tls]`: the server certificate of every TLS listener (MQTT `tls_listen`,
/// `wss_listen`, NATS `tls`), and client certificates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsConfig {
    /// PEM certificate chain; set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates are verified against.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by `client_ca_file`.
    pub require_client_cert: bool,
    /// Whether a verified client certificate names the user.
    pub identity_from_cert: CertIdentity,
}

impl TlsConfig {
    /// A server certificate is configured (TLS listeners are possible).
    pub fn has_server_cert(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// `tls.identity_from_cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertIdentity {
    #[default]
    None,
    /// The subject's common name.
    Cn,
    /// The first DNS (or else email) subject alternative name.
    San,
}

impl CertIdentity {
    pub fn as_str(self) -> &'static str {
        match self {
            CertIdentity::None => "none",
            CertIdentity::Cn => "cn",
            CertIdentity::San => "san",
        }
    }
}

/// `[auth]`: who may connect, and what happens when no `[[acl]]` rule matches.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// `user:hash` lines (`ferry passwd`); checked for MQTT CONNECT and NATS user/pass.
    pub password_file: Option<PathBuf>,
    /// Clients without credentials (or certificate identity) are let in. Default: true
    /// only when neither `password_file`, `nats_token` nor `tls.client_ca_file` is set.
    pub allow_anonymous: bool,
    /// The decision when no `[[acl]]` rule matches: allow (true) or deny.
    pub acl_default_allow: bool,
    /// A NATS CONNECT `auth_token` that is accepted (as the user "token").
    pub nats_token: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            password_file: None,
            allow_anonymous: true,
            acl_default_allow: true,
            nats_token: None,
        }
    }
}

/// `nats.tls`, as nats-server offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatsTls {
    #[default]
    Off,
    /// INFO says `tls_available`; a client may upgrade (or start with TLS).
    Optional,
    /// INFO says `tls_required`; plain clients are refused.
    Required,
}

impl NatsTls {
    pub fn as_str(self) -> &'static str {
        match self {
            NatsTls::Off => "off",
            NatsTls::Optional => "optional",
            NatsTls::Required => "required",
        }
    }
}

/// `[limits]`: the memory budget everything input can grow is carved from.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// 4MiB..; split between the store cache, the store queue and subscriber queues.
    pub memory: ByteSize,
    /// The longest a publisher is held back, per message, while a subscriber it feeds
    /// is past half its queue; 0 never holds publishers back. 0ms..=1s.
    pub publisher_stall: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory: ByteSize::mib(32),
            publisher_stall: Duration::from_millis(250),
        }
    }
}

/// What an `[[acl]]` rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    Publish,
    Subscribe,
    All,
}

impl AclAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AclAction::Publish => "publish",
            AclAction::Subscribe => "subscribe",
            AclAction::All => "all",
        }
    }
}

/// One `[[acl]]` rule: allow or deny `action` on topics matching `filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct AclRule {
    /// Glob (`*` any run, `?` one character) on the user name; `anonymous` names
    /// clients without one. None: every client.
    pub user: Option<String>,
    /// MQTT filter, matched against published topics and requested filters; `%u` and
    /// `%c` stand for the user name and client id (one whole level each).
    pub filter: String,
    pub action: AclAction,
    /// Default false: a rule denies unless it says `allow = true`.
    pub allow: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub enabled: bool,
    /// Plain TCP; None (`""` in the file): no such listener.
    pub listen: Option<SocketAddr>,
    /// MQTT over TLS; needs `[tls]`.
    pub tls_listen: Option<SocketAddr>,
    /// MQTT over WebSocket.
    pub ws_listen: Option<SocketAddr>,
    /// MQTT over secure WebSocket; needs `[tls]`.
    pub wss_listen: Option<SocketAddr>,
    /// The HTTP path WebSocket clients connect to; starts with `/`.
    pub ws_path: String,
    /// 64B..=256MiB.
    pub max_packet_size: ByteSize,
    /// >= 1.
    pub max_connections: usize,
    /// QoS>0 publishes one client may have un-acknowledged by us; >= 1.
    pub max_inflight: u16,
    /// Messages waiting for one subscriber connection or offline session; 0: no count
    /// limit (the byte limits bound the queue).
    pub max_queued: usize,
    /// Time from TCP accept to CONNECT; > 0.
    pub connect_timeout: Duration,
    /// Persistent sessions (expiry > 0), online and offline, held at once; >= 1. Clean
    /// sessions do not count: they end with their connection, which `max_connections`
    /// bounds. When full, the offline session connected least recently is evicted.
    pub max_sessions: usize,
    /// Bytes waiting for one subscriber or offline session; >= 1B.
    pub max_queued_bytes: ByteSize,
    /// Subscriptions one client may hold; >= 1.
    pub max_subscriptions: usize,
    /// Levels in a topic or filter; 1..=32.
    pub max_topic_levels: usize,
    /// Retained messages held (and stored); >= 1.
    pub max_retained: usize,
    /// Bytes all retained messages may hold together, in memory and in the store (the
    /// two hold the same set); also at most a sixteenth of `limits.memory`; >= 1B.
    pub max_retained_bytes: ByteSize,
    /// MQTT 5 topic aliases per connection, each direction; 0..=65535.
    pub max_topic_aliases: u16,
    /// Send topic aliases to MQTT 5 subscribers that accept them. Off by default: several
    /// common clients (mosquitto_sub, paho-mqtt, aiomqtt) announce a maximum but then
    /// mishandle aliased publishes.
    pub outbound_topic_aliases: bool,
    /// Longest keep-alive granted to MQTT 5 clients (told as Server Keep Alive);
    /// whole seconds, 1s..=65535s.
    pub max_keep_alive: Duration,
    /// Longest a persistent session outlives its connection: the MQTT 5 Session Expiry
    /// Interval (its "never" too) and 3.1.1 `clean_session = 0` sessions are capped at
    /// it, so sessions abandoned by their clients cannot pile up for ever; whole
    /// seconds, 1s..=4294967294s (the largest finite MQTT 5 interval).
    pub max_session_expiry: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 1883))),
            tls_listen: None,
            ws_listen: None,
            wss_listen: None,
            ws_path: "/mqtt".to_string(),
            max_packet_size: ByteSize::mib(1),
            max_connections: 10_000,
            max_inflight: 1024,
            max_queued: 0,
            connect_timeout: Duration::from_secs(10),
            max_sessions: 10_000,
            max_queued_bytes: ByteSize::mib(16),
            max_subscriptions: 1000,
            max_topic_levels: 32,
            max_retained: 10_000,
            max_retained_bytes: ByteSize::mib(2),
            max_topic_aliases: 64,
            outbound_topic_aliases: false,
            max_keep_alive: Duration::from_secs(65_535),
            max_session_expiry: Duration::from_secs(7 * 86_400),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    pub enabled: bool,
    /// None (`""` in the file): no NATS listener.
    pub listen: Option<SocketAddr>,
    /// TLS on the NATS port, as nats-server offers it; not `Off` needs `[tls]`.
    pub tls: NatsTls,
    /// Time from accept to a CONNECT (TLS handshake included) when authentication or
    /// TLS is required; > 0.
    pub connect_timeout: Duration,
    /// 1B..=64MiB.
    pub max_payload: ByteSize,
    /// 256B..=1MiB.
    pub max_control_line: ByteSize,
    /// Slow-consumer cut-off per connection; >= max_payload.
    pub max_pending: ByteSize,
    /// > 0.
    pub ping_interval: Duration,
    /// >= 1.
    pub max_pings_out: u32,
    /// >= 1.
    pub max_connections: usize,
    /// Non-empty, printable ASCII without spaces (sent in INFO).
    pub server_name: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            enabled: true,
            listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4222))),
            tls: NatsTls::Off,
            connect_timeout: Duration::from_secs(10),
            max_payload: ByteSize::mib(1),
            max_control_line: ByteSize::kib(4),
            max_pending: ByteSize::mib(64),
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            max_connections: 10_000,
            server_name: "ferry".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Non-empty; relative paths are relative to the working directory.
    pub dir: PathBuf,
    pub cache_size: ByteSize,
    /// Events per write transaction; 1..=65536.
    pub max_batch: usize,
    /// Extra wait to gather a bigger group commit; <= 1s.
    pub linger: Duration,
    /// Events waiting for the writer; >= 1.
    pub queue: usize,
    /// Bytes of stored events (records) at most; >= 1MiB.
    pub max_bytes: ByteSize,
    /// Events older than this are dropped (counted); zero = no age limit.
    pub max_age: Duration,
    /// What happens when `max_bytes` is reached.
    pub on_full: OnFull,
    /// When a commit reaches the disk.
    pub fsync: Fsync,
    /// Most fsyncs a second (an SD card's wear budget): commits, and the acknowledgements
    /// waiting for them, are grouped until the budget holds; 0: no cap. 0..=10000.
    pub max_fsyncs_per_sec: u32,
    /// Disk quota of the dead-letter table (events upstreams refused); the oldest dead
    /// letters are dropped past it (counted).
    pub dead_letter_max_bytes: ByteSize,
    /// Disk quota of the quarantine (damaged records moved out of the way); the oldest
    /// entries are dropped past it (counted).
    pub quarantine_max_bytes: ByteSize,
}

/// `store.on_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Delete the oldest stored events (counted per upstream) to make room.
    DropOldest,
    /// Refuse new events that do not fit; never touch what is stored.
    RejectNew,
}

impl OnFull {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFull::DropOldest => "drop_oldest",
            OnFull::RejectNew => "reject_new",
        }
    }
}

/// `store.fsync`: "always" (every commit is fsynced before anything in it is
/// acknowledged) or an interval ("1s": commits are acknowledged at once and fsynced at
/// most once per interval; a crash of ferry, of the kernel or of the power loses what was
/// acknowledged since the last fsync, at most one interval's worth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Interval(Duration),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: PathBuf::from("./data"),
            cache_size: ByteSize::mib(4),
            max_batch: 1024,
            linger: Duration::ZERO,
            queue: 4096,
            max_bytes: ByteSize::gib(1),
            max_age: Duration::ZERO,
            on_full: OnFull::DropOldest,
            fsync: Fsync::Always,
            max_fsyncs_per_sec: 0,
            dead_letter_max_bytes: ByteSize::mib(16),
            quarantine_max_bytes: ByteSize::mib(4),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Unique among upstreams; `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// The first of `urls`: what logs and the reachability probe name.
    pub url: UpstreamUrl,
    /// Every address of the upstream, `url` first (`urls = [...]` lists a cluster's
    /// nodes): each connection attempt takes the next, so the link fails over between
    /// them. All of one protocol family (MQTT or NATS) and TLS-ness.
    pub urls: Vec<UpstreamUrl>,
    /// 1..=65535 bytes; defaults to "ferry-<name>". The client name for NATS.
    pub client_id: String,
    /// Set whenever `password` is set (MQTT 3.1.1 requires it).
    pub username: Option<String>,
    pub password: Option<String>,
    /// NATS upstreams: the `auth_token` of CONNECT.
    pub token: Option<String>,
    /// NATS upstreams: a file holding the user's nkey seed (nkey authentication); read at
    /// each connection attempt.
    pub creds_file: Option<PathBuf>,
    /// Whole seconds, 5s..=18h (MQTT carries it as u16 seconds).
    pub keep_alive: Duration,
    /// >= 1.
    pub inflight: u16,
    /// Records read from the store at once; >= 1.
    pub batch: usize,
    /// > 0.
    pub backoff_min: Duration,
    /// >= backoff_min.
    pub backoff_max: Duration,
    /// > 0.
    pub connect_timeout: Duration,
    /// Connected with publishes in flight and none acknowledged for this long: the link
    /// is dropped and re-established (forward/watchdog.rs). Zero: off; else >= 1s.
    pub stall_timeout: Duration,
    /// PEM file of CA certificates to trust for an `mqtts://` upstream instead of the
    /// system's roots (a private CA). Only set with a TLS url; read at each connect.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and its key (PEM) for mutual TLS: both or neither, TLS
    /// urls only; read at each connect, so a renewed certificate needs no restart.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// ALPN protocols offered in the TLS handshake (e.g. "x-amzn-mqtt-ca" for AWS IoT
    /// Core on port 443); empty: none.
    pub alpn: Vec<String>,
    /// MQTT version spoken upstream (5 adds the `ferry-id` idempotency key), or for a
    /// NATS url JetStream (acknowledged, `Nats-Msg-Id`) or core NATS.
    pub protocol: UpstreamProtocol,
    /// JetStream: a publish not acknowledged this long after it was written ends the
    /// connection (it is sent again, de-duplicated by `Nats-Msg-Id`, on the next one).
    pub ack_timeout: Duration,
    /// Events per second at most while draining (metered links); None: as fast as the
    /// upstream acknowledges.
    pub max_rate: Option<u32>,
    /// Bytes (topic and payload of the events) per second at most while draining; None:
    /// no limit.
    pub max_bytes_rate: Option<ByteSize>,
    /// Times an event the upstream refuses is sent before it moves to the dead-letter
    /// table; 1..=100.
    pub max_attempts: u32,
    /// What goes first when the link returns with a backlog.
    pub drain: Drain,
    /// Many events per upstream message (`pack = "ferry-batch-v1"`); None: one each.
    pub pack: Option<super::PackConfig>,
}

/// `[[upstream]] drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// The backlog first, then what arrived since: per-topic order always holds.
    Ordered,
    /// What arrives after the link came back goes out at once; the backlog drains
    /// behind it. Per-topic order holds within each of the two.
    LiveFirst,
}

impl Drain {
    pub fn as_str(self) -> &'static str {
        match self {
            Drain::Ordered => "ordered",
            Drain::LiveFirst => "live_first",
        }
    }
}

/// `[[upstream]] protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    V311,
    V5,
    /// JetStream publishes: a PubAck for each, `Nats-Msg-Id` de-duplication.
    JetStream,
    /// Core NATS publishes: delivered once the server answered a PING sent after them.
    NatsCore,
}

impl UpstreamProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::V311 => "3.1.1",
            UpstreamProtocol::V5 => "5",
            UpstreamProtocol::JetStream => "jetstream",
            UpstreamProtocol::NatsCore => "core",
        }
    }

    pub fn is_nats(self) -> bool {
        matches!(
            self,
            UpstreamProtocol::JetStream | UpstreamProtocol::NatsCore
        )
    }
}

impl UpstreamConfig {
    /// An upstream with every optional key at its default.
    pub fn new(name: &str, url: UpstreamUrl) -> Self {
        UpstreamConfig {
            name: name.to_string(),
            urls: vec![url.clone()],
            url,
            client_id: default_client_id(name),
            username: None,
            password: None,
            token: None,
            creds_file: None,
            keep_alive: Duration::from_secs(30),
            inflight: 256,
            batch: 256,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            ca_file: None,
            cert_file: None,
            key_file: None,
            alpn: Vec::new(),
            protocol: UpstreamProtocol::V5,
            ack_timeout: Duration::from_secs(5),
            max_rate: None,
            max_bytes_rate: None,
            max_attempts: 3,
            drain: Drain::Ordered,
            pack: None,
        }
    }
}

pub(crate) fn default_client_id(name: &str) -> String {
    format!("ferry-{name}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForwardRule {
    /// Names an entry of `Config::upstream`.
    pub upstream: String,
    /// A valid MQTT topic filter.
    pub filter: String,
    /// Upstream topic template; `{topic}` is the local topic. `None` keeps
    /// the local topic. Rendered topics never contain wildcards.
    pub topic: Option<String>,
    /// 0 or 1.
    pub qos: u8,
    /// 0..=9, higher first while a backlog drains; under `on_full = "drop_oldest"` the
    /// lowest loses first. [`DEFAULT_PRIORITY`] when not set.
    pub priority: u8,
}

/// A `[[forward]]` rule's priority when it sets none.
pub const DEFAULT_PRIORITY: u8 = 5;

impl ForwardRule {
    /// The topic a local message is published under upstream.
    pub fn upstream_topic(&self, local_topic: &str) -> String {
        topic::render(self.topic.as_deref(), local_topic)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// `None` means no metrics endpoint.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A level name or `target=level` directives (tracing-subscriber `Targets`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayConfig {
    /// `[A-Za-z0-9_.-]{0,64}`; empty means "use the host name at run time".
    pub id: String,
}
