//! Authentication and access figures: refusals by protocol and reason, throttling,
//! access denials, failed TLS handshakes. `crate::policy` and the listeners keep them.

use super::registry::{Family, Kind};
use super::{Counter, Gauge};

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

    pub(super) const FAMILIES: &[Family<AuthMetrics>] = &[
        Family {
            name: "ferry_auth_failures_total",
            help: "Clients refused at connect, by protocol and reason.",
            kind: Kind::Counter,
            samples: |m, s| {
                for (p, protocol) in ["mqtt", "nats"].iter().enumerate() {
                    for (r, why) in AuthFailure::ALL.iter().enumerate() {
                        s.labeled(
                            &[("protocol", protocol), ("reason", why.as_str())],
                            m.failures[p][r].get(),
                        );
                    }
                }
            },
        },
        Family {
            name: "ferry_auth_throttled_total",
            help: "Authentication attempts delayed after repeated failures from their address.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.throttled.get()),
        },
        Family {
            name: "ferry_auth_throttle_addresses",
            help: "Client addresses tracked for repeated authentication failures.",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.throttle_addresses.get()),
        },
        Family {
            name: "ferry_acl_denied_total",
            help: "Publishes and subscriptions refused by the access rules.",
            kind: Kind::Counter,
            samples: |m, s| {
                s.labeled(&[("action", "publish")], m.denied_publish.get());
                s.labeled(&[("action", "subscribe")], m.denied_subscribe.get());
            },
        },
        Family {
            name: "ferry_tls_handshake_failures_total",
            help: "TLS handshakes that failed or timed out.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.tls_failures.get()),
        },
    ];
}
