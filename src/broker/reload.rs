//! A running ferry takes a changed config file (SIGHUP, `ferry reload`): what can change
//! while it runs is applied without dropping a connection or a cursor; what cannot (a
//! listener address, the store) is named and waits for a restart. An invalid file
//! changes nothing: every problem is logged as file:line:column and counted.
//!
//! Applied at once:
//! - `[auth]`, `[[acl]]` and the password file (always read again): the hub's policy is
//!   replaced, every subscription granted again under it
//!   ([`super::Hub::replace_policy`]); a client whose credentials no longer hold, or
//!   that lost every right on one of its subscriptions, is disconnected (MQTT 5:
//!   DISCONNECT 0x87, NATS: `-ERR 'Authorization Violation'`); every other client
//!   stays connected under its new rights.
//! - `[[upstream]]` and `[[forward]]`: new events are matched with the new rules; once
//!   every event matched under the old ones is stored, the links whose upstream or rules
//!   changed start again from their cursors (events in flight then are sent again: the
//!   idempotency key lets the upstream drop them), a removed upstream's link stops and
//!   its lanes keep their cursors, so its backlog stays in the store. Only lanes the
//!   store registered at start can be used: a new upstream or priority waits for a
//!   restart (named in `not_applied`), and so do the other forwarding changes of that file.
//! - `[log] level` (unless RUST_LOG is set, which wins), `[sys] interval`.
//! - The limits of `[mqtt]` and `[nats]` and `limits.publisher_stall` ([`APPLIED`]): the
//!   connections and sessions that start after the reload take them, those up keep
//!   theirs; the caps and the retained table's bounds hold at once
//!   ([`super::Hub::replace_settings`]).
//! - `[tls]` certificates, key and client CAs (the files always read again, so a
//!   certificate renewed in place is taken), for the TLS handshakes that follow; a
//!   connection up keeps its session. Only where TLS listeners were started and the
//!   file still names a certificate; adding or removing TLS needs a restart.
//!
//! Everything else is compared with what ferry started with and listed as needing a
//! restart, at every reload until it has one.

use crate::config::{self, Config};
use std::path::Path;
use std::sync::Arc;

/// The keys (prefixes) a reload applies while ferry runs.
const APPLIED: &[&str] = &[
    "auth.",
    "acl[",
    "log.level",
    "sys.interval",
    "limits.publisher_stall",
    // For the connections and sessions after the reload (`broker/settings.rs`); the
    // caps and the retained table's bounds at once.
    "mqtt.max_packet_size",
    "mqtt.max_connections",
    "mqtt.max_inflight",
    "mqtt.max_queued",
    "mqtt.connect_timeout",
    "mqtt.max_sessions",
    "mqtt.max_queued_bytes",
    "mqtt.max_subscriptions",
    "mqtt.max_topic_levels",
    "mqtt.max_retained",
    "mqtt.max_retained_bytes",
    "mqtt.max_topic_aliases",
    "mqtt.outbound_topic_aliases",
    "mqtt.max_keep_alive",
    "mqtt.max_session_expiry",
    "nats.connect_timeout",
    "nats.max_payload",
    "nats.max_control_line",
    "nats.max_pending",
    "nats.ping_interval",
    "nats.max_pings_out",
    "nats.max_connections",
    "nats.server_name",
];

/// What one reload did, for the log and for `ferry reload`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// False: the file was not valid (or not readable) and nothing changed.
    pub ok: bool,
    /// Why not, each as `file:line:column: message` where the file says where.
    pub problems: Vec<String>,
    /// Keys applied now (`auth.password_file` also when only its contents changed).
    pub applied: Vec<String>,
    /// Keys that differ from what ferry started with and wait for a restart.
    pub restart_needed: Vec<String>,
    /// Applied keys that could not take effect, with why (`log.level: RUST_LOG is set`).
    pub not_applied: Vec<String>,
    /// Clients disconnected because their credentials or rights were removed.
    pub revoked: usize,
    /// Upstream links started (new in the file), restarted (changed settings or rules:
    /// from their cursors) and stopped (no longer in the file: their backlog is kept).
    pub upstreams_started: Vec<String>,
    pub upstreams_restarted: Vec<String>,
    pub upstreams_stopped: Vec<String>,
}

impl Outcome {
    /// What `ferry reload` prints: the problems, or what was applied, started, stopped
    /// and what waits for a restart.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        if !self.ok {
            for p in &self.problems {
                let _ = writeln!(s, "{p}");
            }
            s.push_str("ferry: reload refused; ferry goes on with the configuration it had\n");
            return s;
        }
        if self.applied.is_empty() {
            s.push_str("reloaded: nothing changed that applies at run time\n");
        } else {
            let _ = writeln!(s, "reloaded: applied {}", self.applied.join(", "));
        }
        if self.revoked > 0 {
            let _ = writeln!(
                s,
                "{} subscribers disconnected: they lost every right on a subscription (clients whose credentials were removed are disconnected at their next packet)",
                self.revoked
            );
        }
        for (names, what) in [
            (&self.upstreams_started, "upstream links started"),
            (
                &self.upstreams_restarted,
                "upstream links restarted from their cursors",
            ),
            (
                &self.upstreams_stopped,
                "upstream links stopped (their backlog is kept)",
            ),
        ] {
            if !names.is_empty() {
                let _ = writeln!(s, "{what}: {}", names.join(", "));
            }
        }
        for n in &self.not_applied {
            let _ = writeln!(s, "not applied: {n}");
        }
        if !self.restart_needed.is_empty() {
            let _ = writeln!(
                s,
                "needs a restart to take effect: {}",
                self.restart_needed.join(", ")
            );
        }
        s
    }

    fn failed(problems: Vec<String>) -> Outcome {
        Outcome {
            ok: false,
            problems,
            ..Outcome::default()
        }
    }
}

/// The configurations a reload compares against.
pub(super) struct Configs {
    /// What the listeners and the store were started with.
    pub started: Arc<Config>,
    /// The last one applied (the started one until a reload succeeds).
    pub applied: Arc<Config>,
    /// The one whose `[[upstream]]` and `[[forward]]` the links run (a reload that needs
    /// a lane the store lacks applies the rest of its file, not those).
    pub links: Arc<Config>,
}

impl super::Running {
    /// Reads `path` again and applies it: see the module doc. Never fails the broker.
    /// Reloads are one at a time (`main` asks for them in turn).
    pub async fn reload_from(&self, path: Option<&Path>) -> Outcome {
        let outcome = match path {
            None => Outcome::failed(vec![
                "ferry runs on its built-in defaults (no --config FILE): there is no file to read again".into(),
            ]),
            Some(p) => match config::load(p) {
                Err(e) => Outcome::failed(e.problems.iter().map(ToString::to_string).collect()),
                Ok(new) => {
                    let origin = p.display().to_string();
                    let problems: Vec<String> = crate::policy::check_files(&new)
                        .into_iter()
                        .map(|m| format!("{origin}: {m}"))
                        .collect();
                    if problems.is_empty() {
                        self.apply(new, &origin).await
                    } else {
                        Outcome::failed(problems)
                    }
                }
            },
        };
        self.report(&outcome);
        outcome
    }

    async fn apply(&self, new: Config, origin: &str) -> Outcome {
        let (started, applied, running) = {
            let c = self.configs.lock().unwrap_or_else(|e| e.into_inner());
            (c.started.clone(), c.applied.clone(), c.links.clone())
        };
        // Everything that can fail first: nothing is applied unless all of it can be.
        let policy = match crate::policy::Policy::reloaded(&new, &self.hub.policy()) {
            Ok(p) => p,
            Err(e) => return Outcome::failed(vec![format!("{origin}: {e}")]),
        };
        // TLS listeners take new certificates (read again: renewed in place, as certbot
        // does) when they were started with some and the file still names some.
        #[cfg(feature = "tls")]
        let tls = match self.hub.has_tls() && new.tls.has_server_cert() {
            true => match crate::transport::tls::Acceptor::new(&new.tls) {
                Ok(a) => Some(a),
                Err(e) => return Outcome::failed(vec![format!("{origin}: {e}")]),
            },
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls: Option<()> = None;
        let mut outcome = Outcome {
            ok: true,
            ..Outcome::default()
        };
        let forwarding = self.reload_forwarding(&running, &new, &mut outcome).await;
        let applies = |k: &str| {
            (tls.is_some() && k.starts_with("tls."))
                || (forwarding && (k.starts_with("upstream[") || k.starts_with("forward[")))
                || APPLIED
                    .iter()
                    .any(|p| k.starts_with(p) || k == p.trim_end_matches(['.', '[']))
        };
        let links = |k: &String| k.starts_with("upstream[") || k.starts_with("forward[");
        outcome.applied = config::changed_keys(&applied, &new)
            .into_iter()
            .filter(|k| applies(k) && !links(k))
            .chain(
                config::changed_keys(&running, &new)
                    .into_iter()
                    .filter(|k| forwarding && links(k)),
            )
            .collect();
        if new.auth.password_file.is_some()
            && !outcome.applied.iter().any(|k| k == "auth.password_file")
        {
            outcome.applied.push("auth.password_file".into());
        }
        #[cfg(feature = "tls")]
        if let Some(next) = &tls {
            self.hub.replace_tls(next);
            for key in ["tls.cert_file", "tls.key_file"] {
                if !outcome.applied.iter().any(|k| k == key) {
                    outcome.applied.push(key.into());
                }
            }
        }
        // Forwarding runs as the last reload that applied it (maybe not the started one).
        outcome.restart_needed = config::changed_keys(&started, &new)
            .into_iter()
            .filter(|k| !applies(k) && !links(k))
            .chain(
                config::changed_keys(&running, &new)
                    .into_iter()
                    .filter(|k| !forwarding && links(k)),
            )
            .collect();
        outcome.revoked = self.hub.replace_policy(policy);
        if new.log.level != applied.log.level {
            if let Err(e) = crate::logging::set_level(&new.log.level) {
                outcome.applied.retain(|k| k != "log.level");
                outcome.not_applied.push(format!("log.level: {e}"));
            }
        }
        self.sys_interval.send_replace(new.sys.interval);
        let new = Arc::new(new);
        self.hub.replace_settings(new.clone());
        let mut c = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if forwarding {
            c.links = new.clone();
        }
        c.applied = new;
        outcome
    }

    /// Applies `[[upstream]]` and `[[forward]]` when they changed: the hub matches new
    /// events with the new rules; once every event matched under the old ones is stored
    /// (the store's barrier), the links whose upstream or rules changed start again from
    /// their cursors with the rules that hold after it. False when they stay as they
    /// were: unchanged, or needing a lane the store does not have yet (a new upstream
    /// or priority: a restart registers it).
    async fn reload_forwarding(
        &self,
        applied: &Config,
        new: &Config,
        outcome: &mut Outcome,
    ) -> bool {
        if new.upstream == applied.upstream && new.forward == applied.forward {
            return true;
        }
        let lanes = crate::forward::lanes(new);
        let mut links = self.links.lock().await;
        let bits = match links.bits_for(new, &lanes) {
            Ok(bits) => bits,
            Err(missing) => {
                outcome.not_applied.push(format!(
                    "[[upstream]] and [[forward]]: the store has no lane for {} yet (a new upstream, or a priority its rules did not use at start): applied at the next restart",
                    missing.join(", ")
                ));
                return false;
            }
        };
        let table = crate::forward::Forwarding::new(new, &lanes, &bits);
        self.hub.replace_forwarding(table).await;
        let since = match self.store.barrier().await {
            Ok(seq) => seq,
            Err(_) => *self.store.committed().borrow(),
        };
        let changes = links.reload(new, &lanes, since).await;
        outcome.upstreams_started = changes.started;
        outcome.upstreams_restarted = changes.restarted;
        outcome.upstreams_stopped = changes.stopped;
        true
    }

    /// Logs the outcome (each problem on its own line) and counts it.
    fn report(&self, o: &Outcome) {
        if !o.ok {
            self.metrics.reloads_failed.inc();
            for p in &o.problems {
                tracing::error!("config reload refused: {p}");
            }
            tracing::error!(
                problems = o.problems.len(),
                "config reload refused: ferry goes on with the configuration it had"
            );
            return;
        }
        self.metrics.reloads_ok.inc();
        tracing::info!(applied = ?o.applied, revoked = o.revoked, started = ?o.upstreams_started,
            restarted = ?o.upstreams_restarted, stopped = ?o.upstreams_stopped, "config reloaded");
        if !o.not_applied.is_empty() {
            tracing::warn!(not_applied = ?o.not_applied, "config reloaded, but some keys could not take effect");
        }
        if !o.restart_needed.is_empty() {
            tracing::warn!(keys = ?o.restart_needed, "these keys changed but take effect only at a restart");
        }
    }
}
