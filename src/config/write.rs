//! Writes the effective configuration back as TOML in the same shape and
//! units a person would write, so `ferry --print-config` output can be
//! pasted into a file and parses back to the identical `Config`.

use std::fmt::Write as _;
use std::time::Duration;

use super::types::Config;
use super::units::format_duration;

impl Config {
    /// The effective configuration as TOML with human units ("64MiB",
    /// "30s"). Includes upstream passwords and the NATS token: use
    /// [`Config::to_toml_masked`] for anything a person or a log may see.
    /// Non-UTF-8 bytes in `store.dir` are replaced (lossy), the one case
    /// where the output does not parse back to `self`.
    pub fn to_toml(&self) -> String {
        self.write(false)
    }

    /// As [`Config::to_toml`], with every password and token replaced by `********`.
    pub fn to_toml_masked(&self) -> String {
        self.write(true)
    }

    fn write(&self, mask: bool) -> String {
        let secret = |s: &str| {
            if mask {
                MASK.to_string()
            } else {
                s.to_string()
            }
        };
        let mut w = Writer(String::new());
        // A top-level key: it must come before the first table.
        if let Some(board) = &self.board {
            w.str("board", board);
        }
        let m = &self.mqtt;
        w.table("mqtt");
        w.raw("enabled", m.enabled);
        w.str("listen", &addr(m.listen));
        w.str("tls_listen", &addr(m.tls_listen));
        w.str("ws_listen", &addr(m.ws_listen));
        w.str("wss_listen", &addr(m.wss_listen));
        w.str("ws_path", &m.ws_path);
        w.str("max_packet_size", &m.max_packet_size.to_string());
        w.raw("max_connections", m.max_connections);
        w.raw("max_inflight", m.max_inflight);
        w.raw("max_queued", m.max_queued);
        w.dur("connect_timeout", m.connect_timeout);
        w.raw("max_sessions", m.max_sessions);
        w.str("max_queued_bytes", &m.max_queued_bytes.to_string());
        w.raw("max_subscriptions", m.max_subscriptions);
        w.raw("max_topic_levels", m.max_topic_levels);
        w.raw("max_retained", m.max_retained);
        w.str("max_retained_bytes", &m.max_retained_bytes.to_string());
        w.raw("max_topic_aliases", m.max_topic_aliases);
        w.raw("outbound_topic_aliases", m.outbound_topic_aliases);
        w.dur("max_keep_alive", m.max_keep_alive);
        w.dur("max_session_expiry", m.max_session_expiry);

        let n = &self.nats;
        w.table("nats");
        w.raw("enabled", n.enabled);
        w.str("listen", &addr(n.listen));
        w.str("tls", n.tls.as_str());
        w.dur("connect_timeout", n.connect_timeout);
        w.str("max_payload", &n.max_payload.to_string());
        w.str("max_control_line", &n.max_control_line.to_string());
        w.str("max_pending", &n.max_pending.to_string());
        w.dur("ping_interval", n.ping_interval);
        w.raw("max_pings_out", n.max_pings_out);
        w.raw("max_connections", n.max_connections);
        w.str("server_name", &n.server_name);

        let s = &self.store;
        w.table("store");
        w.str("dir", &s.dir.to_string_lossy());
        w.str("cache_size", &s.cache_size.to_string());
        w.raw("max_batch", s.max_batch);
        w.dur("linger", s.linger);
        w.raw("queue", s.queue);
        w.str("max_bytes", &s.max_bytes.to_string());
        w.dur("max_age", s.max_age);
        w.str("on_full", s.on_full.as_str());
        match s.fsync {
            super::types::Fsync::Always => w.str("fsync", "always"),
            super::types::Fsync::Interval(d) => w.dur("fsync", d),
        }
        w.raw("max_fsyncs_per_sec", s.max_fsyncs_per_sec);
        w.str(
            "dead_letter_max_bytes",
            &s.dead_letter_max_bytes.to_string(),
        );
        w.str("quarantine_max_bytes", &s.quarantine_max_bytes.to_string());

        for u in &self.upstream {
            w.array_table("upstream");
            w.str("name", &u.name);
            if u.urls.len() > 1 {
                let list: Vec<String> = u.urls.iter().map(|a| quote(&a.to_string())).collect();
                w.raw("urls", format!("[{}]", list.join(", ")));
            } else {
                w.str("url", &u.url.to_string());
            }
            w.str("client_id", &u.client_id);
            if let Some(user) = &u.username {
                w.str("username", user);
            }
            if let Some(pass) = &u.password {
                w.str("password", &secret(pass));
            }
            if let Some(token) = &u.token {
                w.str("token", &secret(token));
            }
            if let Some(creds) = &u.creds_file {
                w.str("creds_file", &creds.to_string_lossy());
            }
            w.dur("keep_alive", u.keep_alive);
            w.raw("inflight", u.inflight);
            w.raw("max_attempts", u.max_attempts);
            w.str("drain", u.drain.as_str());
            w.raw("batch", u.batch);
            w.dur("backoff_min", u.backoff_min);
            w.dur("backoff_max", u.backoff_max);
            w.dur("connect_timeout", u.connect_timeout);
            w.dur("stall_timeout", u.stall_timeout);
            w.str("protocol", u.protocol.as_str());
            if u.protocol == super::UpstreamProtocol::JetStream {
                w.dur("ack_timeout", u.ack_timeout);
            }
            if let Some(rate) = u.max_rate {
                w.raw("max_rate", rate);
            }
            if let Some(rate) = u.max_bytes_rate {
                w.str("max_bytes_rate", &rate.to_string());
            }
            if let Some(ca) = &u.ca_file {
                w.str("ca_file", &ca.to_string_lossy());
            }
            if let Some(cert) = &u.cert_file {
                w.str("cert_file", &cert.to_string_lossy());
            }
            if let Some(key) = &u.key_file {
                w.str("key_file", &key.to_string_lossy());
            }
            if let Some(pack) = &u.pack {
                w.str("pack", "ferry-batch-v1");
                w.raw("pack_max_events", pack.max_events);
                w.str("pack_max_bytes", &pack.max_bytes.to_string());
                w.dur("pack_linger", pack.linger);
                w.str("pack_topic", &pack.topic);
                w.str("compression", pack.compression.as_str());
            }
            if !u.alpn.is_empty() {
                let list: Vec<String> = u.alpn.iter().map(|a| quote(a)).collect();
                w.raw("alpn", format!("[{}]", list.join(", ")));
            }
        }

        for f in &self.forward {
            w.array_table("forward");
            w.str("upstream", &f.upstream);
            w.str("filter", &f.filter);
            if let Some(t) = &f.topic {
                w.str("topic", t);
            }
            w.raw("qos", f.qos);
            w.raw("priority", f.priority);
        }

        w.table("metrics");
        if let Some(addr) = self.metrics.listen {
            w.str("listen", &addr.to_string());
        }
        w.table("log");
        w.str("level", &self.log.level);
        w.table("limits");
        w.str("memory", &self.limits.memory.to_string());
        w.dur("publisher_stall", self.limits.publisher_stall);
        w.table("gateway");
        w.str("id", &self.gateway.id);
        w.table("admin");
        match &self.admin.socket {
            // Unwritten, so it follows store.dir when the output is read again.
            super::types::AdminSocket::InStoreDir => {}
            super::types::AdminSocket::At(p) => w.str("socket", &p.display().to_string()),
            super::types::AdminSocket::Off => w.str("socket", ""),
        }
        w.table("sys");
        w.dur("interval", self.sys.interval);
        w.table("runtime");
        match self.runtime.worker_threads {
            super::types::WorkerThreads::Auto => w.str("worker_threads", "auto"),
            super::types::WorkerThreads::Fixed(n) => w.raw("worker_threads", n),
        }
        let t = &self.tls;
        w.table("tls");
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        w.str("cert_file", &path(&t.cert_file));
        w.str("key_file", &path(&t.key_file));
        w.str("client_ca_file", &path(&t.client_ca_file));
        w.raw("require_client_cert", t.require_client_cert);
        w.str("identity_from_cert", t.identity_from_cert.as_str());
        let a = &self.auth;
        w.table("auth");
        w.str("password_file", &path(&a.password_file));
        w.raw("allow_anonymous", a.allow_anonymous);
        w.str(
            "acl_default",
            if a.acl_default_allow { "allow" } else { "deny" },
        );
        if let Some(token) = &a.nats_token {
            w.str("nats_token", &secret(token));
        }
        for a in &self.acl {
            w.array_table("acl");
            if let Some(user) = &a.user {
                w.str("user", user);
            }
            w.str("filter", &a.filter);
            w.str("action", a.action.as_str());
            w.raw("allow", a.allow);
        }
        w.0
    }
}

/// What a masked secret is printed as.
pub const MASK: &str = "********";

/// A listener address; `""` for none.
fn addr(a: Option<std::net::SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

struct Writer(String);

// `write!` into a String cannot fail; the results are ignored on purpose.
impl Writer {
    fn table(&mut self, name: &str) {
        self.blank_line();
        let _ = writeln!(self.0, "[{name}]");
    }
    fn array_table(&mut self, name: &str) {
        self.blank_line();
        let _ = writeln!(self.0, "[[{name}]]");
    }
    fn blank_line(&mut self) {
        if !self.0.is_empty() {
            self.0.push('\n');
        }
    }
    fn raw(&mut self, key: &str, v: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{key} = {v}");
    }
    fn str(&mut self, key: &str, v: &str) {
        let _ = writeln!(self.0, "{key} = {}", quote(v));
    }
    fn dur(&mut self, key: &str, d: Duration) {
        self.str(key, &format_duration(d));
    }
}

/// A TOML basic string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes() {
        for s in [
            "plain",
            "a\"b",
            "c:\\dir",
            "tab\there",
            "nl\n",
            "\u{7f}\u{1}",
            "é✓",
        ] {
            let doc = format!("k = {}", quote(s));
            let t: toml::Table = toml::from_str(&doc).unwrap();
            assert_eq!(t["k"].as_str(), Some(s), "{doc}");
        }
    }
}
