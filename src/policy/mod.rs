//! Who may connect, and what each client may do: the one place both protocols ask.
//!
//! - [`Policy::authenticate`]: credentials (MQTT CONNECT username/password, NATS CONNECT
//!   user/pass or auth_token, a verified client certificate) -> an [`Identity`] or an
//!   [`AuthError`] naming why, counted in `ferry_auth_failures_total`.
//! - [`Policy::may_publish`]: MQTT PUBLISH, wills and retained messages; NATS PUB/HPUB.
//! - [`Policy::subscribe`]: MQTT SUBSCRIBE (shared too), NATS SUB (queue groups too). The
//!   [`Grant`] says whether deliveries need a check per message ([`ReadGuard`]), which the
//!   router runs for every delivery, retained messages included; a wholly allowed
//!   subscription costs nothing per message.
//!
//! - [`Policy::refresh`]: after a config reload, the identity of a client already
//!   connected under the new policy, or None when its credentials no longer hold (a user
//!   removed, a password or token changed); [`crate::broker::Hub::replace_policy`] grants
//!   every subscription again with it.
//!
//! The listeners never read `[auth]`, `[[acl]]` or the password file themselves.

pub mod acl;
pub mod passwd;
pub mod passwd_cli;
mod passwd_file;
mod throttle;

use crate::config::{AclRule, Config};
use crate::metrics::{AuthFailure, Metrics};
use acl::{Coverage, Rules};
use passwd::{PasswordFile, Verified};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use throttle::{Throttle, Wait};
use tokio::sync::Semaphore;

/// Password verifications running at once. Each allocates the hash's memory cost
/// (7 MiB with `ferry passwd`'s parameters), so this bounds that memory.
const VERIFY_SLOTS: usize = 2;

/// The protocol a client speaks, for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Mqtt,
    Nats,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Nats => "nats",
        }
    }
}

/// What a client presented.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub protocol: Protocol,
    pub peer: IpAddr,
    /// MQTT client id, NATS CONNECT name (may be empty).
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// NATS CONNECT `auth_token`.
    pub token: Option<&'a str>,
    /// The user named by a verified client certificate (`tls.identity_from_cert`).
    pub cert_user: Option<&'a str>,
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials, and anonymous clients are not allowed")]
    Anonymous,
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    BadPassword,
    #[error("wrong token")]
    BadToken,
    #[error("credentials given, but no password file is configured")]
    NoPasswordFile,
    #[error("the client id belongs to another user's session")]
    ClientIdInUse,
    #[error("too many failed attempts from this address: try again later")]
    Throttled,
}

impl AuthError {
    /// MQTT 5: 0x86 for credentials that did not check out, 0x87 for a client that
    /// may not connect this way at all; 0x85 for a client id held by another user.
    pub fn mqtt5_code(self) -> u8 {
        match self {
            AuthError::UnknownUser
            | AuthError::BadPassword
            | AuthError::BadToken
            | AuthError::NoPasswordFile => 0x86,
            AuthError::Anonymous => 0x87,
            AuthError::ClientIdInUse => 0x85,
            AuthError::Throttled => 0x9F,
        }
    }

    /// MQTT 3.1.1: 5 (not authorized) for every credential failure, 2 (identifier
    /// rejected) for a client id held by another user, 3 (server unavailable) for an
    /// address refused for too many failures.
    pub fn mqtt3_code(self) -> u8 {
        match self {
            AuthError::ClientIdInUse => 2,
            AuthError::Throttled => 3,
            _ => 5,
        }
    }

    fn metric(self) -> AuthFailure {
        match self {
            AuthError::Anonymous => AuthFailure::Anonymous,
            AuthError::UnknownUser => AuthFailure::UnknownUser,
            AuthError::BadPassword | AuthError::NoPasswordFile => AuthFailure::BadPassword,
            AuthError::BadToken => AuthFailure::BadToken,
            AuthError::ClientIdInUse => AuthFailure::ClientIdInUse,
            AuthError::Throttled => AuthFailure::Throttled,
        }
    }
}

/// An authenticated (or anonymous) client and the access rules that apply to it.
#[derive(Debug, Clone)]
pub struct Identity {
    inner: Arc<IdentityInner>,
}

struct IdentityInner {
    user: Option<String>,
    client_id: Box<str>,
    /// What it proved, so that a reload can tell whether that still holds.
    credential: Credential,
    rules: Rules,
    /// The [`Policy::generation`] these rules are from.
    generation: u64,
}

/// Never printed: it holds the password hash.
impl std::fmt::Debug for IdentityInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// How a client proved who it is.
#[derive(Clone, PartialEq, Eq)]
enum Credential {
    /// Nothing: anonymous clients are allowed.
    Anonymous,
    /// A password that matched this PHC hash of the password file.
    Password(Box<str>),
    /// The NATS `auth_token` with this fingerprint ([`fingerprint`]): a reload that
    /// changes the token ends the clients that proved the old one.
    Token(u64),
    /// A client certificate verified against `tls.client_ca_file` at the handshake.
    Certificate,
    /// Not proved on this run: a persistent session restored from the store, or an
    /// internal publisher. Its user proves itself again when it connects.
    Known,
}

impl Identity {
    /// The user name; None for an anonymous client.
    pub fn user(&self) -> Option<&str> {
        self.inner.user.as_deref()
    }

    /// An identity allowed everything, for tests and internal publishers.
    pub fn unrestricted() -> Identity {
        Identity::with_rules(Rules::allow_all())
    }

    /// An identity allowed nothing: a subscription a reload denies keeps its place in
    /// the router with this as its read check, so it passes nothing.
    pub fn nobody() -> Identity {
        Identity::with_rules(Rules::deny_all())
    }

    fn with_rules(rules: Rules) -> Identity {
        Identity {
            inner: Arc::new(IdentityInner {
                user: None,
                client_id: "".into(),
                credential: Credential::Known,
                rules,
                generation: 0,
            }),
        }
    }

    /// The policy generation its rules are from.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The same client (one `Arc`): a reload maps each identity once.
    pub fn same(&self, other: &Identity) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// An address for this identity's state, to map each identity once in a reload.
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }
}

/// The answer to a subscription.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Everything the filter matches may be delivered: no per-message check.
    All,
    /// Deliveries must pass `ReadGuard::may_read`.
    Filtered(ReadGuard),
    /// Nothing the filter matches may be read: refuse the subscription.
    Denied,
}

impl Grant {
    pub fn is_denied(&self) -> bool {
        matches!(self, Grant::Denied)
    }

    /// The check each delivery needs, if any.
    pub fn guard(&self) -> Option<ReadGuard> {
        match self {
            Grant::Filtered(g) => Some(g.clone()),
            _ => None,
        }
    }
}

/// The per-message check of a partly allowed subscription.
#[derive(Debug, Clone)]
pub struct ReadGuard {
    identity: Identity,
}

impl ReadGuard {
    pub fn may_read(&self, topic: &str) -> bool {
        self.identity.inner.rules.may_read(topic)
    }

    /// A check that passes nothing (a subscription a reload denied).
    pub fn nothing() -> ReadGuard {
        ReadGuard {
            identity: Identity::nobody(),
        }
    }

    /// True when this check passes no topic at all.
    pub fn reads_nothing(&self) -> bool {
        self.identity.inner.rules.denies_everything()
    }
}

pub struct Policy {
    users: Option<Arc<PasswordFile>>,
    nats_token: Option<String>,
    allow_anonymous: bool,
    acl: Vec<AclRule>,
    acl_default_allow: bool,
    /// 0 at start, one more at each reload ([`Policy::reloaded`]).
    generation: u64,
    /// Kept across reloads: an address that failed lately still waits.
    throttle: Arc<Throttle>,
    verify_slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// Why the policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    PasswordFile(#[from] passwd::PasswdError),
}

impl Policy {
    /// Reads the password file named in `[auth]`.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Policy, PolicyError> {
        let users = match &config.auth.password_file {
            Some(path) => Some(Arc::new(PasswordFile::load(path)?)),
            None => None,
        };
        Ok(Policy {
            users,
            nats_token: config.auth.nats_token.clone(),
            allow_anonymous: config.auth.allow_anonymous,
            acl: config.acl.clone(),
            acl_default_allow: config.auth.acl_default_allow,
            generation: 0,
            throttle: Arc::default(),
            verify_slots: Arc::new(Semaphore::new(VERIFY_SLOTS)),
            metrics,
        })
    }

    /// The policy of a reloaded `config` (the password file read again), keeping
    /// `previous`'s failed-attempt throttle and verification slots.
    pub fn reloaded(config: &Config, previous: &Policy) -> Result<Policy, PolicyError> {
        let mut p = Policy::new(config, previous.metrics.clone())?;
        p.throttle = previous.throttle.clone();
        p.verify_slots = previous.verify_slots.clone();
        p.generation = previous.generation + 1;
        Ok(p)
    }

    /// Which reload this policy is from (0: the start).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `who` under this policy: None when what it proved no
    /// longer holds (its user is gone or has another password, the token changed, or
    /// anonymous clients are no longer allowed); else its identity with today's rules
    /// (the same one when they did not change).
    pub fn refresh(&self, who: &Identity) -> Option<Identity> {
        let inner = &who.inner;
        let holds = match &inner.credential {
            Credential::Anonymous => self.allow_anonymous,
            Credential::Password(hash) => {
                let user = inner.user.as_deref().unwrap_or_default();
                self.users
                    .as_ref()
                    .and_then(|u| u.hash_of(user))
                    .is_some_and(|h| h == &**hash)
            }
            Credential::Token(f) => self.nats_token.as_deref().map(fingerprint) == Some(*f),
            Credential::Certificate | Credential::Known => true,
        };
        if !holds {
            return None;
        }
        let rules = Rules::for_client(
            &self.acl,
            self.acl_default_allow,
            inner.user.as_deref(),
            &inner.client_id,
        );
        if rules == inner.rules && inner.generation == self.generation {
            return Some(who.clone());
        }
        Some(Identity {
            inner: Arc::new(IdentityInner {
                user: inner.user.clone(),
                client_id: inner.client_id.clone(),
                credential: inner.credential.clone(),
                rules,
                generation: self.generation,
            }),
        })
    }

    /// What `who` may read of `filter`, uncounted (a reload's re-check, not a request).
    pub fn regrant(&self, who: &Identity, filter: &str) -> Grant {
        let rules = &who.inner.rules;
        if rules.allows_everything() {
            return Grant::All;
        }
        match rules.grant(filter) {
            Coverage::All => Grant::All,
            Coverage::None => Grant::Denied,
            Coverage::Some => Grant::Filtered(ReadGuard {
                identity: who.clone(),
            }),
        }
    }

    /// Everything allowed, nobody checked: what a broker without `[auth]`/`[[acl]]` does.
    pub fn open(metrics: Arc<Metrics>) -> Policy {
        Policy {
            users: None,
            nats_token: None,
            allow_anonymous: true,
            acl: Vec::new(),
            acl_default_allow: true,
            generation: 0,
            throttle: Arc::default(),
            verify_slots: Arc::new(Semaphore::new(VERIFY_SLOTS)),
            metrics,
        }
    }

    /// Whether NATS clients must authenticate (INFO `auth_required`).
    pub fn auth_required(&self) -> bool {
        !self.allow_anonymous
    }

    /// Checks what a client presented. Failures are counted and, per address, slow
    /// down the next attempts.
    pub async fn authenticate(&self, c: Credentials<'_>) -> Result<Identity, AuthError> {
        let result = self.check(&c).await;
        match &result {
            Ok(_) => {}
            Err(e) => self.metrics.auth.failed(c.protocol.as_str(), e.metric()),
        }
        result.map(|(user, credential)| self.make_identity(user, c.client_id, credential))
    }

    /// The identity of a client already known (e.g. restored state), with its rules.
    pub fn identity(&self, user: Option<String>, client_id: &str) -> Identity {
        self.make_identity(user, client_id, Credential::Known)
    }

    /// An anonymous client's identity (NATS clients need not send CONNECT then).
    pub fn anonymous(&self, client_id: &str) -> Identity {
        self.make_identity(None, client_id, Credential::Anonymous)
    }

    fn make_identity(
        &self,
        user: Option<String>,
        client_id: &str,
        credential: Credential,
    ) -> Identity {
        let rules = Rules::for_client(
            &self.acl,
            self.acl_default_allow,
            user.as_deref(),
            client_id,
        );
        Identity {
            inner: Arc::new(IdentityInner {
                user,
                client_id: client_id.into(),
                credential,
                rules,
                generation: self.generation,
            }),
        }
    }

    async fn check(&self, c: &Credentials<'_>) -> Result<(Option<String>, Credential), AuthError> {
        if let Some(user) = c.cert_user {
            // The certificate was verified against client_ca_file during the handshake.
            return Ok((Some(user.to_string()), Credential::Certificate));
        }
        if let Some(user) = c.username {
            let Some(users) = &self.users else {
                // Nothing to check a name against: without a password file a user name
                // proves nothing, so it confers nothing.
                return if self.allow_anonymous {
                    Ok((None, Credential::Anonymous))
                } else {
                    Err(AuthError::NoPasswordFile)
                };
            };
            return self
                .verify(users, user, c.password.unwrap_or_default(), c.peer)
                .await;
        }
        if c.password.is_some() {
            // MQTT 5 allows a password without a user name; ferry has no use for one.
            return Err(AuthError::BadPassword);
        }
        if let Some(token) = c.token {
            return match &self.nats_token {
                Some(expected) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
                    self.throttle.succeeded(c.peer);
                    Ok((
                        Some("token".to_string()),
                        Credential::Token(fingerprint(expected)),
                    ))
                }
                Some(_) => {
                    self.wait_turn(c.peer).await?;
                    self.failed_from(c.peer);
                    Err(AuthError::BadToken)
                }
                None if self.allow_anonymous => Ok((None, Credential::Anonymous)),
                None => Err(AuthError::BadToken),
            };
        }
        if self.allow_anonymous {
            Ok((None, Credential::Anonymous))
        } else {
            Err(AuthError::Anonymous)
        }
    }

    async fn verify(
        &self,
        users: &Arc<PasswordFile>,
        user: &str,
        password: &[u8],
        peer: IpAddr,
    ) -> Result<(Option<String>, Credential), AuthError> {
        self.wait_turn(peer).await?;
        let verdict = {
            let Ok(_slot) = self.verify_slots.acquire().await else {
                return Err(AuthError::BadPassword);
            };
            // Argon2 takes tens of milliseconds of CPU: never on a runtime worker.
            let (users, name, pass) = (users.clone(), user.to_string(), password.to_vec());
            tokio::task::spawn_blocking(move || users.verify(&name, &pass))
                .await
                .unwrap_or(Verified::BadPassword)
        };
        match verdict {
            Verified::Ok => {
                self.throttle.succeeded(peer);
                let hash = users.hash_of(user).unwrap_or_default();
                Ok((Some(user.to_string()), Credential::Password(hash.into())))
            }
            Verified::UnknownUser => {
                self.failed_from(peer);
                Err(AuthError::UnknownUser)
            }
            Verified::BadPassword => {
                self.failed_from(peer);
                Err(AuthError::BadPassword)
            }
        }
    }

    /// Waits for this address's turn, or refuses when it failed too often lately.
    async fn wait_turn(&self, peer: IpAddr) -> Result<(), AuthError> {
        match self.throttle.wait(peer).await {
            Wait::None => Ok(()),
            Wait::Waited => {
                self.metrics.auth.throttled.inc();
                Ok(())
            }
            Wait::Refused => {
                self.metrics.auth.throttled.inc();
                Err(AuthError::Throttled)
            }
        }
    }

    fn failed_from(&self, peer: IpAddr) {
        self.throttle.failed(peer, tokio::time::Instant::now());
        self.metrics
            .auth
            .throttle_addresses
            .set(self.throttle.tracked() as i64);
    }

    /// Counts a session takeover refused because the client id is another user's.
    pub fn refused_takeover(&self, protocol: Protocol) {
        self.metrics
            .auth
            .failed(protocol.as_str(), AuthFailure::ClientIdInUse);
    }

    /// May `who` publish to `topic`? Denials are counted. Nobody publishes to `$SYS`:
    /// those topics are ferry's own (`broker/sys.rs`).
    pub fn may_publish(&self, who: &Identity, topic: &str) -> bool {
        let ok = !topic.starts_with("$SYS") && who.inner.rules.may_publish(topic);
        if !ok {
            self.metrics.auth.denied_publish.inc();
        }
        ok
    }

    /// May `who` subscribe to `filter` (MQTT form, without any `$share/<group>/`), and
    /// does each delivery need a check?
    pub fn subscribe(&self, who: &Identity, filter: &str) -> Grant {
        let rules = &who.inner.rules;
        if rules.allows_everything() {
            return Grant::All;
        }
        match rules.grant(filter) {
            Coverage::All => Grant::All,
            Coverage::None => {
                self.metrics.auth.denied_subscribe.inc();
                Grant::Denied
            }
            Coverage::Some => Grant::Filtered(ReadGuard {
                identity: who.clone(),
            }),
        }
    }
}

/// FNV-1a of a token: enough to tell a changed token from the same one, and never the
/// token itself (identities are kept, and may be printed, for a connection's life).
fn fingerprint(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Compares two secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Checks the files `[auth]` and `[tls]` name: the password file parses, the
/// certificates and keys can be read and belong together. For `ferry check` and start-up.
pub fn check_files(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(path) = &config.auth.password_file {
        if let Err(e) = PasswordFile::load(path) {
            problems.push(format!("auth.password_file: {e}"));
        }
    }
    #[cfg(feature = "tls")]
    if let Err(e) = crate::transport::tls::Acceptor::new(&config.tls) {
        if config.tls.has_server_cert() {
            problems.push(e.to_string());
        }
    }
    problems
}

/// Whether `path` can be read by users other than its owner and group.
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests;
