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
//! - `[log] level` (unless RUST_LOG is set, which wins), `[sys] interval`.
//! - `[tls]` certificates, key and client CAs (the files always read again, so a
//!   certificate renewed in place is taken), for the TLS handshakes that follow; a
//!   connection up keeps its session. Only where TLS listeners were started and the
//!   file still names a certificate; adding or removing TLS needs a restart.
//!
//! Everything else is compared with what ferry started with and listed as needing a
//! restart, at every reload until it has one.

use crate::config::{self, Config};
use serde::Serialize;
use std::path::Path;

/// The keys (prefixes) a reload applies while ferry runs.
const APPLIED: &[&str] = &["auth.", "acl[", "log.level", "sys.interval"];

/// What one reload did, for the log and for `ferry reload`.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
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
}

impl Outcome {
    fn failed(problems: Vec<String>) -> Outcome {
        Outcome {
            ok: false,
            problems,
            ..Outcome::default()
        }
    }
}

/// The two configurations a reload compares against.
pub(super) struct Configs {
    /// What the listeners, store and links were started with.
    pub started: Config,
    /// The last one applied (the started one until a reload succeeds).
    pub applied: Config,
}

impl super::Running {
    /// Reads `path` again and applies it: see the module doc. Never fails the broker.
    pub fn reload_from(&self, path: Option<&Path>) -> Outcome {
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
                        self.apply(new, &origin)
                    } else {
                        Outcome::failed(problems)
                    }
                }
            },
        };
        self.report(&outcome);
        outcome
    }

    fn apply(&self, new: Config, origin: &str) -> Outcome {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
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
        let changed = config::changed_keys(&configs.applied, &new);
        let applies = |k: &str| {
            (tls.is_some() && k.starts_with("tls."))
                || APPLIED
                    .iter()
                    .any(|p| k.starts_with(p) || k == p.trim_end_matches(['.', '[']))
        };
        let mut outcome = Outcome {
            ok: true,
            ..Outcome::default()
        };
        outcome.applied = changed.iter().filter(|k| applies(k)).cloned().collect();
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
        outcome.restart_needed = config::changed_keys(&configs.started, &new)
            .into_iter()
            .filter(|k| !applies(k))
            .collect();
        outcome.revoked = self.hub.replace_policy(policy);
        if new.log.level != configs.applied.log.level {
            if let Err(e) = crate::logging::set_level(&new.log.level) {
                outcome.applied.retain(|k| k != "log.level");
                outcome.not_applied.push(format!("log.level: {e}"));
            }
        }
        self.sys_interval.send_replace(new.sys.interval);
        configs.applied = new;
        outcome
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
        tracing::info!(applied = ?o.applied, revoked = o.revoked, "config reloaded");
        if !o.not_applied.is_empty() {
            tracing::warn!(not_applied = ?o.not_applied, "config reloaded, but some keys could not take effect");
        }
        if !o.restart_needed.is_empty() {
            tracing::warn!(keys = ?o.restart_needed, "these keys changed but take effect only at a restart");
        }
    }
}
