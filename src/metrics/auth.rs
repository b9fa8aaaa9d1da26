//! Authentication and access figures: refusals by protocol and reason, throttling,
//! access denials, failed TLS handshakes. `crate::policy` and the listeners keep them.

use super::{Counter, Gauge};
use std::fmt::Write;

/// Why an authentication failed, as `ferry_auth_failures_total{reason}` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Anonymous,
    UnknownUser,
    BadPassword,
    BadToken,
    ClientIdInUse,
    Throttled,
}

impl AuthFailure {
    const ALL: [AuthFailure; 6] = [
        AuthFailure::Anonymous,
        AuthFailure::UnknownUser,
        AuthFailure::BadPassword,
        AuthFailure::BadToken,
        AuthFailure::ClientIdInUse,
        AuthFailure::Throttled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Anonymous => "anonymous",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::BadPassword => "bad_password",
            AuthFailure::BadToken => "bad_token",
            AuthFailure::ClientIdInUse => "client_id_in_use",
            AuthFailure::Throttled => "throttled",
        }
    }
}

/// Authentication and access figures (`crate::policy` keeps them).
#[derive(Debug, Default)]
pub struct AuthMetrics {
    /// By protocol (mqtt, nats) and [`AuthFailure`].
    failures: [[Counter; 6]; 2],
    /// Attempts made to wait because their address failed repeatedly.
    pub throttled: Counter,
    /// Addresses with recent failures, tracked to slow them down (bounded).
    pub throttle_addresses: Gauge,
    pub denied_publish: Counter,
    pub denied_subscribe: Counter,
    /// TLS handshakes that failed or timed out (bad or missing client certificate too).
    pub tls_failures: Counter,
}

impl AuthMetrics {
    pub fn failed(&self, protocol: &str, why: AuthFailure) {
        let p = usize::from(protocol == "nats");
        let r = AuthFailure::ALL.iter().position(|a| *a == why).unwrap_or(0);
        self.failures[p][r].inc();
    }

    pub fn failures(&self, protocol: &str, why: AuthFailure) -> u64 {
        let p = usize::from(protocol == "nats");
        let r = AuthFailure::ALL.iter().position(|a| *a == why).unwrap_or(0);
        self.failures[p][r].get()
    }

    pub(super) fn render(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP ferry_auth_failures_total Clients refused at connect, by protocol and reason.\n\
             # TYPE ferry_auth_failures_total counter"
        );
        for (p, protocol) in ["mqtt", "nats"].iter().enumerate() {
            for (r, why) in AuthFailure::ALL.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "ferry_auth_failures_total{{protocol=\"{protocol}\",reason=\"{}\"}} {}",
                    why.as_str(),
                    self.failures[p][r].get()
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP ferry_auth_throttled_total Authentication attempts delayed after repeated failures from their address.\n\
             # TYPE ferry_auth_throttled_total counter\nferry_auth_throttled_total {}\n\
             # HELP ferry_auth_throttle_addresses Client addresses tracked for repeated authentication failures.\n\
             # TYPE ferry_auth_throttle_addresses gauge\nferry_auth_throttle_addresses {}\n\
             # HELP ferry_acl_denied_total Publishes and subscriptions refused by the access rules.\n\
             # TYPE ferry_acl_denied_total counter\n\
             ferry_acl_denied_total{{action=\"publish\"}} {}\n\
             ferry_acl_denied_total{{action=\"subscribe\"}} {}\n\
             # HELP ferry_tls_handshake_failures_total TLS handshakes that failed or timed out.\n\
             # TYPE ferry_tls_handshake_failures_total counter\nferry_tls_handshake_failures_total {}",
            self.throttled.get(),
            self.throttle_addresses.get(),
            self.denied_publish.get(),
            self.denied_subscribe.get(),
            self.tls_failures.get()
        );
    }
}
