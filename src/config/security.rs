//! `[tls]` and `[auth]`: certificates, users and the defaults that depend on them.
//!
//! Only the shape is checked here (the text of the file); whether the certificate, key
//! and password files can be read and agree is checked by `crate::policy::check_files`,
//! which `ferry check` and start-up both run.

use std::path::PathBuf;

use super::check::Checker;
use super::raw::{Leaf, RawConfig};
use super::types::{AuthConfig, CertIdentity, MqttConfig, NatsConfig, NatsTls, TlsConfig};

/// A path key; `""` means unset.
fn path(c: &mut Checker, key: &str, leaf: &Leaf) -> Option<Option<PathBuf>> {
    let (s, at) = c.string(key, leaf)?;
    if s.is_empty() {
        return Some(None);
    }
    if s.contains('\0') {
        c.at(at, format!("{key}: invalid path {s:?}"));
        return None;
    }
    Some(Some(PathBuf::from(s)))
}

fn start(leaf: &Leaf) -> usize {
    leaf.as_ref().map_or(0, |v| v.span().start)
}

pub(crate) fn tls(c: &mut Checker, raw: &RawConfig, base: &TlsConfig) -> TlsConfig {
    let mut t = base.clone();
    let Some(spanned) = raw.tls.as_ref() else {
        return t;
    };
    let r = spanned.get_ref();
    t.cert_file = path(c, "tls.cert_file", &r.cert_file).unwrap_or(t.cert_file);
    t.key_file = path(c, "tls.key_file", &r.key_file).unwrap_or(t.key_file);
    t.client_ca_file = path(c, "tls.client_ca_file", &r.client_ca_file).unwrap_or(t.client_ca_file);
    t.require_client_cert = c
        .bool("tls.require_client_cert", &r.require_client_cert)
        .unwrap_or(t.require_client_cert);
    if let Some((v, at)) = c.string("tls.identity_from_cert", &r.identity_from_cert) {
        match v {
            "none" => t.identity_from_cert = CertIdentity::None,
            "cn" => t.identity_from_cert = CertIdentity::Cn,
            "san" => t.identity_from_cert = CertIdentity::San,
            other => c.at(
                at,
                format!(
                    "tls.identity_from_cert: invalid value {other:?}: expected \"none\", \"cn\" or \"san\""
                ),
            ),
        }
    }
    match (&t.cert_file, &t.key_file) {
        (Some(_), None) => c.at(
            start(&r.cert_file),
            "tls.cert_file: set without tls.key_file: expected both".into(),
        ),
        (None, Some(_)) => c.at(
            start(&r.key_file),
            "tls.key_file: set without tls.cert_file: expected both".into(),
        ),
        _ => {}
    }
    if t.client_ca_file.is_none() {
        if t.require_client_cert {
            c.at(
                start(&r.require_client_cert),
                "tls.require_client_cert: needs tls.client_ca_file (the CA that signs client certificates)".into(),
            );
        }
        if t.identity_from_cert != CertIdentity::None {
            c.at(
                start(&r.identity_from_cert),
                "tls.identity_from_cert: needs tls.client_ca_file (only verified certificates name a user)".into(),
            );
        }
    }
    t
}

pub(crate) fn auth(
    c: &mut Checker,
    raw: &RawConfig,
    base: &AuthConfig,
    tls: &TlsConfig,
) -> AuthConfig {
    let mut a = base.clone();
    let mut explicit_anonymous = None;
    if let Some(spanned) = raw.auth.as_ref() {
        let r = spanned.get_ref();
        a.password_file =
            path(c, "auth.password_file", &r.password_file).unwrap_or(a.password_file);
        explicit_anonymous = c.bool("auth.allow_anonymous", &r.allow_anonymous);
        if let Some((v, at)) = c.string("auth.acl_default", &r.acl_default) {
            match v {
                "allow" => a.acl_default_allow = true,
                "deny" => a.acl_default_allow = false,
                other => c.at(
                    at,
                    format!(
                        "auth.acl_default: invalid value {other:?}: expected \"allow\" or \"deny\""
                    ),
                ),
            }
        }
        if let Some((token, at)) = c.string("auth.nats_token", &r.nats_token) {
            if token.is_empty() {
                a.nats_token = None;
            } else if token.len() < 8 || token.chars().any(|ch| ch.is_control()) {
                c.at(
                    at,
                    "auth.nats_token: expected at least 8 printable characters".into(),
                );
            } else {
                a.nats_token = Some(token.to_string());
            }
        }
    }
    // Anonymous clients are let in by default only while nothing else could tell one
    // client from another: `cargo run` with no config keeps working, and configuring any
    // credential closes the door unless the file opens it again on purpose.
    let credentials_configured =
        a.password_file.is_some() || a.nats_token.is_some() || tls.client_ca_file.is_some();
    a.allow_anonymous = explicit_anonymous.unwrap_or(!credentials_configured);
    a
}

/// The TLS listeners need a server certificate.
pub(crate) fn check_tls_use(
    c: &mut Checker,
    raw: &RawConfig,
    mqtt: &MqttConfig,
    nats: &NatsConfig,
    tls: &TlsConfig,
) {
    if tls.has_server_cert() {
        return;
    }
    let mqtt_leaf = |get: fn(&super::raw::RawMqtt) -> &Leaf| {
        raw.mqtt.as_ref().map_or(0, |m| start(get(m.get_ref())))
    };
    if mqtt.enabled && mqtt.tls_listen.is_some() {
        c.at(
            mqtt_leaf(|m| &m.tls_listen),
            "mqtt.tls_listen: needs [tls] cert_file and key_file".into(),
        );
    }
    if mqtt.enabled && mqtt.wss_listen.is_some() {
        c.at(
            mqtt_leaf(|m| &m.wss_listen),
            "mqtt.wss_listen: needs [tls] cert_file and key_file".into(),
        );
    }
    if nats.enabled && nats.tls != NatsTls::Off {
        let at = raw.nats.as_ref().map_or(0, |n| start(&n.get_ref().tls));
        c.at(
            at,
            format!(
                "nats.tls: {:?} needs [tls] cert_file and key_file",
                nats.tls.as_str()
            ),
        );
    }
}
