//! `[[upstream]]` and `[[forward]]` tables: checked together because a
//! forward rule is only meaningful if the upstream it names exists.

use std::time::Duration;

use toml::Spanned;

use super::check::{Bound, Checker};
use super::raw::{Leaf, RawConfig, RawForward, RawUpstream};
use super::topic::{check_filter, check_template};
use super::types::{DEFAULT_PRIORITY, ForwardRule, UpstreamConfig, default_client_id};
use super::url::{UpstreamScheme, UpstreamUrl};
use super::validate::positive;

/// MQTT strings are length-prefixed with a u16.
const MAX_MQTT_STRING: usize = 65_535;

pub(crate) fn upstreams_and_forwards(
    c: &mut Checker,
    raw: &RawConfig,
) -> (Vec<UpstreamConfig>, Vec<ForwardRule>) {
    let raw_up = raw.upstream.as_deref().unwrap_or_default();
    let raw_fw = raw.forward.as_deref().unwrap_or_default();
    let mut ups: Vec<UpstreamConfig> = Vec::with_capacity(raw_up.len());
    for (i, r) in raw_up.iter().enumerate() {
        let up = upstream(c, i, r);
        if let Some(first) = ups
            .iter()
            .position(|u| !up.name.is_empty() && u.name == up.name)
        {
            if let Some(v) = &r.get_ref().name {
                c.bad(
                    v,
                    &format!("upstream[{i}].name"),
                    format!(
                        "duplicate name {:?} (already used by upstream[{first}])",
                        up.name
                    ),
                );
            }
        }
        ups.push(up);
    }
    let names: Vec<&str> = ups
        .iter()
        .map(|u| u.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    let fws: Vec<ForwardRule> = raw_fw
        .iter()
        .enumerate()
        .map(|(i, r)| forward(c, i, r, &names))
        .collect();
    // Each (upstream, priority) pair is a lane with a bit of its own in every stored
    // record's destination mask (`forward::lanes`): at most 64 of them.
    let mut lanes: Vec<(&str, u8)> = names.iter().map(|n| (*n, DEFAULT_PRIORITY)).collect();
    for (i, (f, r)) in fws.iter().zip(raw_fw).enumerate() {
        let lane = (f.upstream.as_str(), f.priority);
        if f.upstream.is_empty() || lanes.contains(&lane) {
            continue;
        }
        lanes.push(lane);
        if lanes.len() == crate::store::MAX_UPSTREAMS + 1 {
            c.at(
                r.span().start,
                format!(
                    "forward[{i}]: more than {} upstream and priority pairs (each upstream counts once, plus once per other priority its rules use)",
                    crate::store::MAX_UPSTREAMS
                ),
            );
        }
    }
    (ups, fws)
}

/// A placeholder URL for upstreams whose url is missing or invalid; never
/// escapes because such a config is rejected.
fn placeholder_url() -> UpstreamUrl {
    UpstreamUrl {
        scheme: UpstreamScheme::Mqtt,
        host: String::new(),
        port: UpstreamScheme::Mqtt.default_port(),
    }
}

fn upstream(c: &mut Checker, i: usize, spanned: &Spanned<RawUpstream>) -> UpstreamConfig {
    let r = spanned.get_ref();
    let p = |key: &str| format!("upstream[{i}].{key}");
    let header = spanned.span().start;

    let mut name = String::new();
    match c.string(&p("name"), &r.name) {
        Some((n, _)) if valid_name(n) => name = n.to_string(),
        Some((n, at)) => {
            c.at(
                at,
                format!(
                    "{}: invalid name {n:?}: expected 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'",
                    p("name")
                ),
            );
            // Kept so forward rules naming it do not add a second,
            // misleading "no [[upstream]] named" problem.
            name = n.to_string();
        }
        None if r.name.is_none() => c.at(
            header,
            format!(
                "upstream[{i}]: missing required key \"name\": expected name = \"cloud\" or similar"
            ),
        ),
        None => {}
    }
    let mut up = UpstreamConfig::new(&name, placeholder_url());

    addresses(c, &p, header, r, &mut up);

    up.client_id = default_client_id(&name);
    if let Some((id, at)) = c.string(&p("client_id"), &r.client_id) {
        if id.is_empty() || id.len() > MAX_MQTT_STRING || id.contains('\0') {
            c.at(
                at,
                format!(
                    "{}: invalid client id {id:?}: expected 1..=65535 bytes without U+0000",
                    p("client_id")
                ),
            );
        } else {
            up.client_id = id.to_string();
        }
    }
    up.username = mqtt_string(c, &p("username"), &r.username);
    up.token = mqtt_string(c, &p("token"), &r.token);
    if let (Some(v), false) = (&r.token, up.url.scheme.is_nats() || up.url.host.is_empty()) {
        c.bad(
            v,
            &p("token"),
            "set for an MQTT url: expected a nats:// or tls:// url (MQTT has no token; use username and password)",
        );
    }
    up.password = mqtt_string(c, &p("password"), &r.password);
    if up.password.is_some() && up.username.is_none() && r.username.is_none() {
        if let Some(v) = &r.password {
            c.bad(
                v,
                &p("password"),
                "password set without username: MQTT 3.1.1 requires a username with a password",
            );
        }
    }

    up.keep_alive = keep_alive(c, &p("keep_alive"), r).unwrap_or(up.keep_alive);
    up.inflight = c
        .uint(&p("inflight"), &r.inflight, Bound::Between(1, 65_535))
        .unwrap_or(up.inflight);
    up.max_attempts = c
        .uint(&p("max_attempts"), &r.max_attempts, Bound::Between(1, 100))
        .unwrap_or(up.max_attempts);
    if let Some((v, at)) = c.string(&p("drain"), &r.drain) {
        match v {
            "ordered" => up.drain = super::types::Drain::Ordered,
            "live_first" => up.drain = super::types::Drain::LiveFirst,
            other => c.at(
                at,
                format!(
                    "{}: invalid value {other:?}: expected \"ordered\" or \"live_first\"",
                    p("drain")
                ),
            ),
        }
    }
    up.batch = c
        .uint(&p("batch"), &r.batch, Bound::AtLeast(1))
        .unwrap_or(up.batch);
    up.backoff_min = positive(c, &p("backoff_min"), &r.backoff_min).unwrap_or(up.backoff_min);
    up.backoff_max = positive(c, &p("backoff_max"), &r.backoff_max).unwrap_or(up.backoff_max);
    up.connect_timeout =
        positive(c, &p("connect_timeout"), &r.connect_timeout).unwrap_or(up.connect_timeout);
    up.stall_timeout = stall_timeout(c, &p("stall_timeout"), r).unwrap_or(up.stall_timeout);
    if let Some((path, at)) = c.string(&p("ca_file"), &r.ca_file) {
        if path.is_empty() || path.contains('\0') {
            c.at(
                at,
                format!("{}: invalid path {path:?}: expected a PEM file path like \"/etc/ferry/ca.pem\"", p("ca_file")),
            );
        } else if r.url.is_some() && !up.url.scheme.is_tls() && !up.url.host.is_empty() {
            c.at(
                at,
                format!(
                    "{}: set for a plain {} url: expected an mqtts:// url (ca_file is for TLS only)",
                    p("ca_file"),
                    up.url.scheme.as_str()
                ),
            );
        } else {
            up.ca_file = Some(std::path::PathBuf::from(path));
        }
    }
    client_identity(c, &p, r, &mut up);
    super::packing::packing(c, &p, r, &mut up);
    if up.pack.is_some() && r.inflight.is_none() {
        // A batch is up to pack_max_events events: a few in flight keep the link busy,
        // and keep what a crash sends twice small.
        up.inflight = 8;
    }
    protocol(c, &p("protocol"), r, &mut up);
    if let Some((path, at)) = c.string(&p("creds_file"), &r.creds_file) {
        if !up.url.scheme.is_nats() && !up.url.host.is_empty() {
            c.at(
                at,
                format!(
                    "{}: set for an MQTT url: expected a nats:// or tls:// url (nkey credentials are NATS's)",
                    p("creds_file")
                ),
            );
        } else if path.is_empty() || path.contains('\0') {
            c.at(
                at,
                format!(
                    "{}: invalid path {path:?}: expected a file like \"/etc/ferry/gateway.nk\"",
                    p("creds_file")
                ),
            );
        } else {
            up.creds_file = Some(std::path::PathBuf::from(path));
        }
    }
    up.ack_timeout = positive(c, &p("ack_timeout"), &r.ack_timeout).unwrap_or(up.ack_timeout);
    up.max_bytes_rate = c.size(
        &p("max_bytes_rate"),
        &r.max_bytes_rate,
        super::units::ByteSize(1024),
        super::units::ByteSize(u64::from(u32::MAX)),
    );
    up.max_rate = c.uint(
        &p("max_rate"),
        &r.max_rate,
        Bound::Between(1, u64::from(u32::MAX)),
    );
    if up.backoff_max < up.backoff_min {
        let at = r
            .backoff_max
            .as_ref()
            .or(r.backoff_min.as_ref())
            .map_or(header, |v| v.span().start);
        c.at(
            at,
            format!(
                "{}: {} is less than backoff_min {}: expected backoff_max >= backoff_min",
                p("backoff_max"),
                super::units::format_duration(up.backoff_max),
                super::units::format_duration(up.backoff_min)
            ),
        );
    }
    up
}

/// `url` or `urls` (a cluster's nodes, tried in turn): exactly one of them, and every
/// address of one family (MQTT or NATS) and one TLS-ness, as the other keys assume.
fn addresses(
    c: &mut Checker,
    p: &dyn Fn(&str) -> String,
    header: usize,
    r: &RawUpstream,
    up: &mut UpstreamConfig,
) {
    let mut found: Vec<(UpstreamUrl, usize)> = Vec::new();
    if let Some((u, at)) = c.string(&p("url"), &r.url) {
        match UpstreamUrl::parse(u) {
            Ok(url) => found.push((url, at)),
            Err(e) => c.at(at, format!("{}: {e}", p("url"))),
        }
    }
    if let Some(list) = c.strings(&p("urls"), &r.urls) {
        if let (Some(v), true) = (&r.url, !list.is_empty()) {
            c.bad(
                v,
                &p("url"),
                "set together with urls: expected one of them (put every address in urls)",
            );
        }
        if list.is_empty() {
            if let Some(v) = &r.urls {
                c.bad(v, &p("urls"), "empty: expected at least one address");
            }
        }
        for (u, at) in list {
            match UpstreamUrl::parse(&u) {
                Ok(url) => found.push((url, at)),
                Err(e) => c.at(at, format!("{}: {e}", p("urls"))),
            }
        }
    }
    if r.url.is_none() && r.urls.is_none() {
        c.at(
            header,
            format!(
                "{}: missing required key \"url\": expected url = \"mqtt://host[:port]\" (or urls = [...] for a cluster)",
                p("url").trim_end_matches(".url")
            ),
        );
    }
    let Some((first, _)) = found.first().cloned() else {
        return;
    };
    for (url, at) in &found[1..] {
        if url.scheme != first.scheme {
            c.at(
                *at,
                format!(
                    "{}: {url} mixes {}:// with {}://: expected every address of one scheme",
                    p("urls"),
                    url.scheme.as_str(),
                    first.scheme.as_str()
                ),
            );
        }
    }
    up.url = first;
    up.urls = found.into_iter().map(|(u, _)| u).collect();
}

/// `protocol`: "5" or "3.1.1" for an MQTT url (default "5"), "jetstream" or "core" for a
/// NATS url (default "jetstream").
fn protocol(c: &mut Checker, path: &str, r: &RawUpstream, up: &mut UpstreamConfig) {
    use super::types::UpstreamProtocol as P;
    let nats = up.url.scheme.is_nats();
    if nats {
        up.protocol = P::JetStream;
    }
    let Some((v, at)) = c.string(path, &r.protocol) else {
        return;
    };
    let chosen = match v {
        "5" | "5.0" => P::V5,
        "3.1.1" => P::V311,
        "jetstream" => P::JetStream,
        "core" => P::NatsCore,
        other => {
            let expected = if nats {
                "\"jetstream\" or \"core\""
            } else {
                "\"5\" or \"3.1.1\""
            };
            c.at(
                at,
                format!("{path}: invalid value {other:?}: expected {expected}"),
            );
            return;
        }
    };
    if up.url.host.is_empty() || chosen.is_nats() == nats {
        up.protocol = chosen;
    } else {
        let (expected, scheme) = if nats {
            ("\"jetstream\" or \"core\"", "a NATS")
        } else {
            ("\"5\" or \"3.1.1\"", "an MQTT")
        };
        c.at(
            at,
            format!("{path}: {v:?} does not go with {scheme} url: expected {expected}"),
        );
    }
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn mqtt_string(c: &mut Checker, path: &str, leaf: &super::raw::Leaf) -> Option<String> {
    let (s, at) = c.string(path, leaf)?;
    if s.len() > MAX_MQTT_STRING {
        c.at(
            at,
            format!("{path}: {} bytes long: expected at most 65535", s.len()),
        );
        return None;
    }
    Some(s.to_string())
}

/// `"0s"` (off) or at least 1 s: a shorter one would drop links whose acknowledgements
/// merely queue behind a window of publishes on a slow network.
fn stall_timeout(c: &mut Checker, path: &str, r: &RawUpstream) -> Option<Duration> {
    let d = c.duration(path, &r.stall_timeout, Duration::ZERO, None)?;
    if !d.is_zero() && d < Duration::from_secs(1) {
        if let Some(v) = &r.stall_timeout {
            c.bad(
                v,
                path,
                format!(
                    "{} is out of range: expected \"0s\" (off) or at least 1s",
                    super::units::format_duration(d)
                ),
            );
        }
        return None;
    }
    Some(d)
}

/// MQTT carries keep-alive as whole seconds in a u16.
fn keep_alive(c: &mut Checker, path: &str, r: &RawUpstream) -> Option<Duration> {
    let d = c.duration(
        path,
        &r.keep_alive,
        Duration::from_secs(5),
        Some(Duration::from_secs(18 * 3600)),
    )?;
    if d.subsec_nanos() != 0 {
        if let Some(v) = &r.keep_alive {
            c.bad(
                v,
                path,
                "expected whole seconds (MQTT keep-alive has 1s resolution)",
            );
        }
        return None;
    }
    Some(d)
}

fn forward(
    c: &mut Checker,
    i: usize,
    spanned: &Spanned<RawForward>,
    names: &[&str],
) -> ForwardRule {
    let r = spanned.get_ref();
    let p = |key: &str| format!("forward[{i}].{key}");
    let header = spanned.span().start;
    let mut rule = ForwardRule {
        upstream: String::new(),
        filter: String::new(),
        topic: None,
        qos: 1,
        priority: super::types::DEFAULT_PRIORITY,
    };

    match c.string(&p("upstream"), &r.upstream) {
        Some((u, _)) if names.contains(&u) => rule.upstream = u.to_string(),
        Some((u, at)) => {
            let known = if names.is_empty() {
                "no [[upstream]] is configured".to_string()
            } else {
                let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
                format!("known: {}", quoted.join(", "))
            };
            c.at(at, format!("{}: no [[upstream]] named {u:?} ({known})", p("upstream")));
        }
        None if r.upstream.is_none() => c.at(
            header,
            format!("forward[{i}]: missing required key \"upstream\": expected the name of an [[upstream]]"),
        ),
        None => {}
    }

    match c.string(&p("filter"), &r.filter) {
        Some((f, at)) => match check_filter(f) {
            Ok(()) => rule.filter = f.to_string(),
            Err(e) => c.at(at, format!("{}: {e}", p("filter"))),
        },
        None if r.filter.is_none() => c.at(
            header,
            format!("forward[{i}]: missing required key \"filter\": expected an MQTT topic filter like \"sensors/#\""),
        ),
        None => {}
    }

    if let Some((t, at)) = c.string(&p("topic"), &r.topic) {
        match check_template(t) {
            Ok(()) => rule.topic = Some(t.to_string()),
            Err(e) => c.at(at, format!("{}: {e}", p("topic"))),
        }
    }

    if let Some(v) = &r.qos {
        match v.get_ref() {
            toml::Value::Integer(q @ (0 | 1)) => rule.qos = *q as u8,
            toml::Value::Integer(2) => c.bad(
                v,
                &p("qos"),
                "qos 2 forwarding is not supported yet: expected 0 or 1",
            ),
            toml::Value::Integer(q) => {
                c.bad(v, &p("qos"), format!("invalid qos {q}: expected 0 or 1"))
            }
            _ => {
                let _ = c.uint::<u8>(&p("qos"), &r.qos, Bound::Between(0, 1));
            }
        }
    }
    if let Some(v) = c.uint::<u8>(&p("priority"), &r.priority, Bound::Between(0, 9)) {
        rule.priority = v;
    }
    rule
}

/// `cert_file`, `key_file` (mutual TLS: both or neither) and `alpn`, for TLS urls only.
fn client_identity(
    c: &mut Checker,
    p: &dyn Fn(&str) -> String,
    r: &RawUpstream,
    up: &mut UpstreamConfig,
) {
    let plain = r.url.is_some() && !up.url.scheme.is_tls() && !up.url.host.is_empty();
    let mut file = |key: &str, leaf: &Leaf| -> Option<(std::path::PathBuf, usize)> {
        let (path, at) = c.string(&p(key), leaf)?;
        if path.is_empty() || path.contains('\0') {
            c.at(
                at,
                format!("{}: invalid path {path:?}: expected a PEM file path like \"/etc/ferry/{key}.pem\"", p(key)),
            );
            return None;
        }
        if plain {
            c.at(
                at,
                format!(
                    "{}: set for a plain {} url: expected an mqtts:// url ({key} is for TLS only)",
                    p(key),
                    up.url.scheme.as_str()
                ),
            );
            return None;
        }
        Some((std::path::PathBuf::from(path), at))
    };
    let cert = file("cert_file", &r.cert_file);
    let key = file("key_file", &r.key_file);
    match (cert, key) {
        (Some((cert, _)), Some((key, _))) => {
            up.cert_file = Some(cert);
            up.key_file = Some(key);
        }
        (Some((_, at)), None) if r.key_file.is_none() => c.at(
            at,
            format!(
                "{}: set without key_file: a client certificate needs its private key",
                p("cert_file")
            ),
        ),
        (None, Some((_, at))) if r.cert_file.is_none() => c.at(
            at,
            format!(
                "{}: set without cert_file: a private key needs its client certificate",
                p("key_file")
            ),
        ),
        _ => {}
    }
    if let Some(list) = c.strings(&p("alpn"), &r.alpn) {
        for (proto, at) in list {
            if proto.is_empty() || proto.len() > 255 {
                c.at(
                    at,
                    format!("{}: invalid protocol {proto:?}: expected 1 to 255 bytes like \"x-amzn-mqtt-ca\"", p("alpn")),
                );
            } else if plain {
                c.at(
                    at,
                    format!(
                        "{}: set for a plain url: expected an mqtts:// url (ALPN is part of TLS)",
                        p("alpn")
                    ),
                );
                return;
            } else {
                up.alpn.push(proto);
            }
        }
    }
}
