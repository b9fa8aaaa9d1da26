//! Turns the raw file into a `Config`, checking every rule and recording
//! every violation (the per-key rules live next to the reads below, so the
//! documented range of each field is enforced in exactly one place).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::check::{Bound, Checker};
use super::links;
use super::raw::{
    Leaf, RawConfig, RawGateway, RawLimits, RawLog, RawMetrics, RawMqtt, RawNats, RawRuntime,
    RawStore, RawSys,
};
use super::types::{
    AdminConfig, AdminSocket, Config, Fsync, GatewayConfig, LimitsConfig, LogConfig, MetricsConfig,
    MqttConfig, NatsConfig, NatsTls, OnFull, RuntimeConfig, StoreConfig, SysConfig, WorkerThreads,
};
use super::units::ByteSize;

const MAX_BYTES: ByteSize = ByteSize(u64::MAX);

/// Builds the config from `base` (the defaults, or a board profile) with every key of
/// `raw` applied on top; problems are left in `c` (the value is meaningless if any were
/// recorded).
pub(crate) fn validate(raw: &RawConfig, c: &mut Checker, base: &Config) -> Config {
    let mqtt = mqtt(c, raw.mqtt.as_ref().map(Spanned::get_ref), &base.mqtt);
    let nats = nats(c, raw.nats.as_ref().map(Spanned::get_ref), &base.nats);
    let metrics = metrics(c, raw.metrics.as_ref().map(Spanned::get_ref), &base.metrics);
    check_listeners(c, raw, &mqtt, &nats, &metrics);
    let (upstream, forward) = links::upstreams_and_forwards(c, raw);
    let tls = super::security::tls(c, raw, &base.tls);
    let auth = super::security::auth(c, raw, &base.auth, &tls);
    super::security::check_tls_use(c, raw, &mqtt, &nats, &tls);
    let store = store(c, raw.store.as_ref().map(Spanned::get_ref), &base.store);
    Config {
        tls,
        auth,
        board: base.board.clone(),
        mqtt,
        nats,
        admin: admin(c, raw, &base.admin, &store),
        sys: sys(c, raw.sys.as_ref().map(Spanned::get_ref), &base.sys),
        runtime: runtime(c, raw.runtime.as_ref().map(Spanned::get_ref), &base.runtime),
        store,
        upstream,
        forward,
        metrics,
        log: log(c, raw.log.as_ref().map(Spanned::get_ref), &base.log),
        gateway: gateway(c, raw.gateway.as_ref().map(Spanned::get_ref), &base.gateway),
        acl: super::acl::acl(c, raw),
        limits: limits(c, raw.limits.as_ref().map(Spanned::get_ref), &base.limits),
    }
}

fn limits(c: &mut Checker, raw: Option<&RawLimits>, base: &LimitsConfig) -> LimitsConfig {
    let mut l = base.clone();
    let Some(r) = raw else { return l };
    l.memory = c
        .size("limits.memory", &r.memory, ByteSize::mib(4), MAX_BYTES)
        .unwrap_or(l.memory);
    l.publisher_stall = c
        .duration(
            "limits.publisher_stall",
            &r.publisher_stall,
            Duration::ZERO,
            Some(Duration::from_secs(1)),
        )
        .unwrap_or(l.publisher_stall);
    l
}

fn mqtt(c: &mut Checker, raw: Option<&RawMqtt>, base: &MqttConfig) -> MqttConfig {
    let mut m = base.clone();
    let Some(r) = raw else { return m };
    m.enabled = c.bool("mqtt.enabled", &r.enabled).unwrap_or(m.enabled);
    m.listen = c
        .listen("mqtt.listen", &r.listen, "0.0.0.0:1883")
        .unwrap_or(m.listen);
    m.tls_listen = c
        .listen("mqtt.tls_listen", &r.tls_listen, "0.0.0.0:8883")
        .unwrap_or(m.tls_listen);
    m.ws_listen = c
        .listen("mqtt.ws_listen", &r.ws_listen, "0.0.0.0:8080")
        .unwrap_or(m.ws_listen);
    m.wss_listen = c
        .listen("mqtt.wss_listen", &r.wss_listen, "0.0.0.0:8081")
        .unwrap_or(m.wss_listen);
    if let Some((p, at)) = c.string("mqtt.ws_path", &r.ws_path) {
        let ok = p.starts_with('/')
            && p.len() <= 256
            && p.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
        if ok {
            m.ws_path = p.to_string();
        } else {
            c.at(
                at,
                format!("mqtt.ws_path: invalid path {p:?}: expected an absolute HTTP path like \"/mqtt\" (no spaces, '?' or '#')"),
            );
        }
    }
    m.max_packet_size = c
        .size(
            "mqtt.max_packet_size",
            &r.max_packet_size,
            ByteSize(64),
            ByteSize::mib(256),
        )
        .unwrap_or(m.max_packet_size);
    m.max_connections = c
        .uint(
            "mqtt.max_connections",
            &r.max_connections,
            Bound::AtLeast(1),
        )
        .unwrap_or(m.max_connections);
    m.max_inflight = c
        .uint(
            "mqtt.max_inflight",
            &r.max_inflight,
            Bound::Between(1, 65_535),
        )
        .unwrap_or(m.max_inflight);
    m.max_queued = c
        .uint("mqtt.max_queued", &r.max_queued, Bound::AtLeast(0))
        .unwrap_or(m.max_queued);
    m.connect_timeout =
        positive(c, "mqtt.connect_timeout", &r.connect_timeout).unwrap_or(m.connect_timeout);
    m.max_sessions = c
        .uint("mqtt.max_sessions", &r.max_sessions, Bound::AtLeast(1))
        .unwrap_or(m.max_sessions);
    m.max_queued_bytes = c
        .size(
            "mqtt.max_queued_bytes",
            &r.max_queued_bytes,
            ByteSize(1),
            MAX_BYTES,
        )
        .unwrap_or(m.max_queued_bytes);
    m.max_subscriptions = c
        .uint(
            "mqtt.max_subscriptions",
            &r.max_subscriptions,
            Bound::AtLeast(1),
        )
        .unwrap_or(m.max_subscriptions);
    m.max_topic_levels = c
        .uint(
            "mqtt.max_topic_levels",
            &r.max_topic_levels,
            Bound::Between(1, 32),
        )
        .unwrap_or(m.max_topic_levels);
    m.max_retained = c
        .uint("mqtt.max_retained", &r.max_retained, Bound::AtLeast(1))
        .unwrap_or(m.max_retained);
    m.max_retained_bytes = c
        .size(
            "mqtt.max_retained_bytes",
            &r.max_retained_bytes,
            ByteSize(1),
            MAX_BYTES,
        )
        .unwrap_or(m.max_retained_bytes);
    m.max_topic_aliases = c
        .uint(
            "mqtt.max_topic_aliases",
            &r.max_topic_aliases,
            Bound::Between(0, 65_535),
        )
        .unwrap_or(m.max_topic_aliases);
    m.outbound_topic_aliases = c
        .bool("mqtt.outbound_topic_aliases", &r.outbound_topic_aliases)
        .unwrap_or(m.outbound_topic_aliases);
    if let Some(d) = c.duration(
        "mqtt.max_keep_alive",
        &r.max_keep_alive,
        Duration::from_secs(1),
        Some(Duration::from_secs(65_535)),
    ) {
        if d.subsec_nanos() == 0 {
            m.max_keep_alive = d;
        } else if let Some(v) = &r.max_keep_alive {
            c.bad(v, "mqtt.max_keep_alive", "expected whole seconds");
        }
    }
    if let Some(d) = c.duration(
        "mqtt.max_session_expiry",
        &r.max_session_expiry,
        Duration::from_secs(1),
        Some(Duration::from_secs(u64::from(u32::MAX - 1))),
    ) {
        if d.subsec_nanos() == 0 {
            m.max_session_expiry = d;
        } else if let Some(v) = &r.max_session_expiry {
            c.bad(v, "mqtt.max_session_expiry", "expected whole seconds");
        }
    }
    m
}

fn nats(c: &mut Checker, raw: Option<&RawNats>, base: &NatsConfig) -> NatsConfig {
    let mut n = base.clone();
    let Some(r) = raw else { return n };
    n.enabled = c.bool("nats.enabled", &r.enabled).unwrap_or(n.enabled);
    n.listen = c
        .listen("nats.listen", &r.listen, "0.0.0.0:4222")
        .unwrap_or(n.listen);
    if let Some((v, at)) = c.string("nats.tls", &r.tls) {
        match v {
            "off" => n.tls = NatsTls::Off,
            "optional" => n.tls = NatsTls::Optional,
            "required" => n.tls = NatsTls::Required,
            other => c.at(
                at,
                format!("nats.tls: invalid value {other:?}: expected \"off\", \"optional\" or \"required\""),
            ),
        }
    }
    n.connect_timeout =
        positive(c, "nats.connect_timeout", &r.connect_timeout).unwrap_or(n.connect_timeout);
    n.max_payload = c
        .size(
            "nats.max_payload",
            &r.max_payload,
            ByteSize(1),
            ByteSize::mib(64),
        )
        .unwrap_or(n.max_payload);
    n.max_control_line = c
        .size(
            "nats.max_control_line",
            &r.max_control_line,
            ByteSize(256),
            ByteSize::mib(1),
        )
        .unwrap_or(n.max_control_line);
    n.max_pending = c
        .size("nats.max_pending", &r.max_pending, ByteSize(1), MAX_BYTES)
        .unwrap_or(n.max_pending);
    n.ping_interval =
        positive(c, "nats.ping_interval", &r.ping_interval).unwrap_or(n.ping_interval);
    n.max_pings_out = c
        .uint(
            "nats.max_pings_out",
            &r.max_pings_out,
            Bound::Between(1, u64::from(u32::MAX)),
        )
        .unwrap_or(n.max_pings_out);
    n.max_connections = c
        .uint(
            "nats.max_connections",
            &r.max_connections,
            Bound::AtLeast(1),
        )
        .unwrap_or(n.max_connections);
    if let Some((s, at)) = c.string("nats.server_name", &r.server_name) {
        if s.is_empty() || s.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            c.at(
                at,
                format!(
                    "nats.server_name: invalid name {s:?}: expected a non-empty name without spaces"
                ),
            );
        } else {
            n.server_name = s.to_string();
        }
    }
    // A message as big as max_payload must fit in the pending buffer, or
    // every such message would cut off the consumer that receives it.
    if n.max_pending < n.max_payload {
        let (at, path) = match (&r.max_pending, &r.max_payload) {
            (Some(v), _) => (v.span().start, "nats.max_pending"),
            (None, Some(v)) => (v.span().start, "nats.max_payload"),
            (None, None) => (0, "nats.max_pending"),
        };
        c.at(
            at,
            format!(
                "{path}: max_pending {} is smaller than max_payload {}: expected max_pending >= max_payload",
                n.max_pending, n.max_payload
            ),
        );
    }
    n
}

fn store(c: &mut Checker, raw: Option<&RawStore>, base: &StoreConfig) -> StoreConfig {
    let mut s = base.clone();
    let Some(r) = raw else { return s };
    if let Some((dir, at)) = c.string("store.dir", &r.dir) {
        if dir.is_empty() || dir.contains('\0') {
            c.at(
                at,
                format!(
                    "store.dir: invalid path {dir:?}: expected a directory path like \"./data\""
                ),
            );
        } else {
            s.dir = PathBuf::from(dir);
        }
    }
    s.cache_size = c
        .size("store.cache_size", &r.cache_size, ByteSize(0), MAX_BYTES)
        .unwrap_or(s.cache_size);
    s.max_batch = c
        .uint("store.max_batch", &r.max_batch, Bound::Between(1, 65_536))
        .unwrap_or(s.max_batch);
    s.linger = c
        .duration(
            "store.linger",
            &r.linger,
            Duration::ZERO,
            Some(Duration::from_secs(1)),
        )
        .unwrap_or(s.linger);
    s.queue = c
        .uint("store.queue", &r.queue, Bound::AtLeast(1))
        .unwrap_or(s.queue);
    s.max_bytes = c
        .size("store.max_bytes", &r.max_bytes, ByteSize::mib(1), MAX_BYTES)
        .unwrap_or(s.max_bytes);
    s.dead_letter_max_bytes = c
        .size(
            "store.dead_letter_max_bytes",
            &r.dead_letter_max_bytes,
            ByteSize::kib(64),
            MAX_BYTES,
        )
        .unwrap_or(s.dead_letter_max_bytes);
    s.quarantine_max_bytes = c
        .size(
            "store.quarantine_max_bytes",
            &r.quarantine_max_bytes,
            ByteSize::kib(64),
            MAX_BYTES,
        )
        .unwrap_or(s.quarantine_max_bytes);
    s.max_age = c
        .duration("store.max_age", &r.max_age, Duration::ZERO, None)
        .unwrap_or(s.max_age);
    if let Some((v, at)) = c.string("store.on_full", &r.on_full) {
        match v {
            "drop_oldest" => s.on_full = OnFull::DropOldest,
            "reject_new" => s.on_full = OnFull::RejectNew,
            other => c.at(
                at,
                format!("store.on_full: invalid value {other:?}: expected \"drop_oldest\" or \"reject_new\""),
            ),
        }
    }
    s.max_fsyncs_per_sec = c
        .uint(
            "store.max_fsyncs_per_sec",
            &r.max_fsyncs_per_sec,
            Bound::Between(0, 10_000),
        )
        .unwrap_or(s.max_fsyncs_per_sec);
    if let Some((v, at)) = c.string("store.fsync", &r.fsync) {
        match v {
            "always" => s.fsync = Fsync::Always,
            other => match super::units::parse_duration(other) {
                Ok(d) if !d.is_zero() && d <= Duration::from_secs(60) => s.fsync = Fsync::Interval(d),
                _ => c.at(
                    at,
                    format!("store.fsync: invalid value {other:?}: expected \"always\" or an interval from 1ms to 60s like \"1s\""),
                ),
            },
        }
    }
    s
}

fn metrics(c: &mut Checker, raw: Option<&RawMetrics>, base: &MetricsConfig) -> MetricsConfig {
    MetricsConfig {
        listen: raw
            .and_then(|r| c.listen("metrics.listen", &r.listen, "127.0.0.1:9090"))
            .unwrap_or(base.listen),
    }
}

const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];

fn log(c: &mut Checker, raw: Option<&RawLog>, base: &LogConfig) -> LogConfig {
    let mut l = base.clone();
    let Some((level, at)) = raw.and_then(|r| c.string("log.level", &r.level)) else {
        return l;
    };
    // A bare word is almost always meant as a level; the filter would take a
    // typo like "inf" as a target name and silently log nothing useful.
    let is_directive =
        level.contains(['=', ',']) && level.parse::<tracing_subscriber::filter::Targets>().is_ok();
    let is_level = LEVELS
        .iter()
        .any(|lv| lv.eq_ignore_ascii_case(level.trim()));
    if is_directive || is_level {
        l.level = level.to_string();
    } else {
        c.at(
            at,
            format!(
                "log.level: unknown level {level:?}: expected one of error, warn, info, debug, trace, off, or directives like \"info,ferry=debug\" (target=level, comma-separated)"
            ),
        );
    }
    l
}

/// `admin.socket`: a path, or "" for none. A socket path longer than Linux takes is an
/// error here rather than a start that cannot bind (also the default one inside a long
/// `store.dir`).
fn admin(c: &mut Checker, raw: &RawConfig, base: &AdminConfig, store: &StoreConfig) -> AdminConfig {
    let mut a = base.clone();
    let leaf = raw.admin.as_ref().map(|r| &r.get_ref().socket);
    if let Some((path, _)) = leaf.and_then(|l| c.string("admin.socket", l)) {
        a.socket = if path.is_empty() {
            AdminSocket::Off
        } else {
            AdminSocket::At(PathBuf::from(path))
        };
    }
    let path = match &a.socket {
        AdminSocket::InStoreDir => store.dir.join("ferry.sock"),
        AdminSocket::At(p) => p.clone(),
        AdminSocket::Off => return a,
    };
    let len = path.as_os_str().len();
    if len > super::types::MAX_SOCKET_PATH {
        let at = leaf
            .and_then(|l| l.as_ref().map(|v| v.span().start))
            .or_else(|| raw.store.as_ref().map(|s| s.span().start))
            .unwrap_or(0);
        c.at(
            at,
            format!(
                "admin.socket: {} is {len} bytes, longer than the {} a socket path may be: set admin.socket to a shorter path (\"\" for none)",
                path.display(),
                super::types::MAX_SOCKET_PATH
            ),
        );
    }
    a
}

/// `sys.interval`: "0s" turns the `$SYS` topics off.
fn sys(c: &mut Checker, raw: Option<&RawSys>, base: &SysConfig) -> SysConfig {
    let mut s = base.clone();
    if let Some(d) = raw.and_then(|r| {
        c.duration(
            "sys.interval",
            &r.interval,
            Duration::ZERO,
            Some(Duration::from_secs(3600)),
        )
    }) {
        if !d.is_zero() && d < Duration::from_secs(1) {
            c.at(
                raw.and_then(|r| r.interval.as_ref().map(|v| v.span().start))
                    .unwrap_or(0),
                format!("sys.interval: {d:?} is out of range: expected \"0s\" (off) or 1s..=1h"),
            );
        } else {
            s.interval = d;
        }
    }
    s
}

/// `runtime.worker_threads`: `"auto"` or 1..=64.
fn runtime(c: &mut Checker, raw: Option<&RawRuntime>, base: &RuntimeConfig) -> RuntimeConfig {
    let mut r = base.clone();
    let Some(leaf) = raw.map(|r| &r.worker_threads) else {
        return r;
    };
    let Some(v) = leaf else {
        return r;
    };
    if v.get_ref().as_str() == Some("auto") {
        r.worker_threads = WorkerThreads::Auto;
    } else if v.get_ref().is_integer() {
        let bound = Bound::Between(1, u64::from(WorkerThreads::MAX));
        if let Some(n) = c.uint("runtime.worker_threads", leaf, bound) {
            r.worker_threads = WorkerThreads::Fixed(n);
        }
    } else {
        c.bad(
            v,
            "runtime.worker_threads",
            format!(
                "expected \"auto\" or an integer in 1..={}, found {}",
                WorkerThreads::MAX,
                super::check::describe(v.get_ref())
            ),
        );
    }
    r
}

fn gateway(c: &mut Checker, raw: Option<&RawGateway>, base: &GatewayConfig) -> GatewayConfig {
    let mut g = base.clone();
    let Some((id, at)) = raw.and_then(|r| c.string("gateway.id", &r.id)) else {
        return g;
    };
    let ok = id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        g.id = id.to_string();
    } else {
        c.at(
            at,
            format!(
                "gateway.id: invalid id {id:?}: expected up to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-' (empty = host name)"
            ),
        );
    }
    g
}

/// A timeout or interval: zero would mean "fail at once" or "spin".
pub(crate) fn positive(c: &mut Checker, path: &str, leaf: &Leaf) -> Option<Duration> {
    c.duration(path, leaf, Duration::from_millis(1), None)
}

/// Two enabled listeners on the same port fail at bind time; say so now,
/// with a line number.
fn check_listeners(
    c: &mut Checker,
    raw: &RawConfig,
    mqtt: &MqttConfig,
    nats: &NatsConfig,
    metrics: &MetricsConfig,
) {
    let leaf = |get: fn(&RawConfig) -> Option<&Leaf>| {
        get(raw).and_then(|l| l.as_ref()).map(|v| v.span().start)
    };
    let mut listeners: Vec<(&str, SocketAddr, Option<usize>)> = Vec::new();
    if mqtt.enabled {
        type Key = (&'static str, Option<SocketAddr>, fn(&RawMqtt) -> &Leaf);
        let keys: [Key; 4] = [
            ("mqtt.listen", mqtt.listen, |m| &m.listen),
            ("mqtt.tls_listen", mqtt.tls_listen, |m| &m.tls_listen),
            ("mqtt.ws_listen", mqtt.ws_listen, |m| &m.ws_listen),
            ("mqtt.wss_listen", mqtt.wss_listen, |m| &m.wss_listen),
        ];
        for (path, addr, get) in keys {
            if let Some(addr) = addr {
                let at = raw
                    .mqtt
                    .as_ref()
                    .and_then(|m| get(m.get_ref()).as_ref())
                    .map(|v| v.span().start);
                listeners.push((path, addr, at));
            }
        }
    }
    if let (true, Some(addr)) = (nats.enabled, nats.listen) {
        let at = leaf(|r| r.nats.as_ref().map(|n| &n.get_ref().listen));
        listeners.push(("nats.listen", addr, at));
    }
    if let Some(addr) = metrics.listen {
        let at = leaf(|r| r.metrics.as_ref().map(|m| &m.get_ref().listen));
        listeners.push(("metrics.listen", addr, at));
    }
    for (i, (path, addr, at)) in listeners.iter().enumerate() {
        for (other_path, other, other_at) in listeners.iter().take(i) {
            // Port 0 asks the OS for a free port: never a clash.
            let clash = addr.port() != 0
                && addr.port() == other.port()
                && (addr.ip() == other.ip()
                    || addr.ip().is_unspecified()
                    || other.ip().is_unspecified());
            if clash {
                let offset = at.or(*other_at).unwrap_or(0);
                c.at(
                    offset,
                    format!("{path}: {addr} clashes with {other_path} {other}: expected a different port"),
                );
            }
        }
    }
}
