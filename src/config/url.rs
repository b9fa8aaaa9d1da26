//! Upstream broker URLs: `mqtt://host[:port]` and `mqtts://host[:port]` (TLS) for MQTT
//! upstreams, `nats://host[:port]` and `tls://host[:port]` (TLS) for NATS and JetStream.
//!
//! Deliberately tiny instead of a general URL parser: we only need scheme,
//! host and port, and anything else in the string (path, credentials, query)
//! is more likely a mistake than an intent, so it is rejected loudly.

use std::fmt;
use std::net::Ipv6Addr;

/// Where to forward to. `host` is stored without IPv6 brackets so it can be
/// handed directly to a resolver; `Display` puts them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: UpstreamScheme,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamScheme {
    Mqtt,
    /// MQTT over TLS (needs the `tls` cargo feature, on by default).
    Mqtts,
    /// The NATS client protocol (core NATS or JetStream).
    Nats,
    /// NATS over TLS, as NATS clients spell it (`tls://`).
    NatsTls,
}

impl UpstreamScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamScheme::Mqtt => "mqtt",
            UpstreamScheme::Mqtts => "mqtts",
            UpstreamScheme::Nats => "nats",
            UpstreamScheme::NatsTls => "tls",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            UpstreamScheme::Mqtt => 1883,
            UpstreamScheme::Mqtts => 8883,
            UpstreamScheme::Nats | UpstreamScheme::NatsTls => 4222,
        }
    }
    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamScheme::Mqtts | UpstreamScheme::NatsTls)
    }
    /// A NATS url (`nats://`, `tls://`) rather than an MQTT one.
    pub fn is_nats(self) -> bool {
        matches!(self, UpstreamScheme::Nats | UpstreamScheme::NatsTls)
    }
}

/// Schemes we plan to support; named separately so the message says "not
/// yet" rather than "unknown" and the operator does not hunt for a typo.
const PLANNED_SCHEMES: &[&str] = &["ssl", "ws", "wss"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "invalid URL {0:?}: expected mqtt://, mqtts://, nats:// or tls:// then host[:port], like \"mqtt://broker.example.com:1883\""
    )]
    Malformed(String),
    #[error(
        "URL {url:?}: scheme \"{scheme}://\" is not supported yet (supported: mqtt://, mqtts://, nats://, tls://)"
    )]
    NotYetSupported { url: String, scheme: String },
    #[error(
        "URL {url:?}: this ferry was built without TLS support (cargo feature \"tls\"): use mqtt:// or nats://, or rebuild with it"
    )]
    TlsNotBuilt { url: String },
    #[error(
        "URL {url:?}: unknown scheme \"{scheme}://\" (supported: mqtt://, mqtts://, nats://, tls://)"
    )]
    UnknownScheme { url: String, scheme: String },
    #[error(
        "URL {url:?}: invalid host {host:?}: expected a host name, IPv4 address or [IPv6] address"
    )]
    Host { url: String, host: String },
    #[error("URL {url:?}: invalid port {port:?}: expected a number 1..=65535")]
    Port { url: String, port: String },
    #[error(
        "URL {url:?}: unexpected {extra:?}: only scheme://host[:port] is accepted (credentials go in username/password)"
    )]
    Extra { url: String, extra: String },
}

impl UpstreamUrl {
    pub fn parse(url: &str) -> Result<UpstreamUrl, UrlError> {
        let owned = || url.to_string();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(UrlError::Malformed(owned()));
        };
        let scheme_lc = scheme.to_ascii_lowercase();
        let scheme = match scheme_lc.as_str() {
            "mqtt" => UpstreamScheme::Mqtt,
            "mqtts" if cfg!(feature = "tls") => UpstreamScheme::Mqtts,
            "nats" => UpstreamScheme::Nats,
            "tls" if cfg!(feature = "tls") => UpstreamScheme::NatsTls,
            "mqtts" | "tls" => return Err(UrlError::TlsNotBuilt { url: owned() }),
            s if PLANNED_SCHEMES.contains(&s) => {
                return Err(UrlError::NotYetSupported {
                    url: owned(),
                    scheme: scheme_lc,
                });
            }
            _ => {
                return Err(UrlError::UnknownScheme {
                    url: owned(),
                    scheme: scheme.to_string(),
                });
            }
        };
        // A single trailing slash is harmless ("mqtt://host/"); more is not.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(i) = authority.find(['/', '?', '#', '@']) {
            return Err(UrlError::Extra {
                url: owned(),
                extra: authority.get(i..).unwrap_or("").to_string(),
            });
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| UrlError::Host {
            url: owned(),
            host: authority.to_string(),
        })?;
        let port = match port {
            None => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(UrlError::Port {
                        url: owned(),
                        port: p.to_string(),
                    });
                }
            },
        };
        Ok(UpstreamUrl {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

/// Splits "host:port", "host", "[v6]:port" or "[v6]"; `None` if the host part
/// is not a plausible host name or address.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(inner) = s.strip_prefix('[') {
        let (v6, after) = inner.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        return Some((v6, port));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let plausible = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    plausible.then_some((host, port))
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, u16) {
        let u = UpstreamUrl::parse(s).unwrap();
        assert_eq!(u.scheme, UpstreamScheme::Mqtt);
        (u.host, u.port)
    }

    #[test]
    fn accepts_names_ipv4_ipv6() {
        assert_eq!(
            ok("mqtt://broker.example.com"),
            ("broker.example.com".into(), 1883)
        );
        assert_eq!(ok("mqtt://10.0.0.1:8883"), ("10.0.0.1".into(), 8883));
        assert_eq!(ok("mqtt://[::1]:1884"), ("::1".into(), 1884));
        assert_eq!(ok("mqtt://[fe80::1]"), ("fe80::1".into(), 1883));
        assert_eq!(ok("MQTT://host/"), ("host".into(), 1883));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "mqtt://h:1883",
            "mqtt://[::1]:1884",
            "mqtt://10.0.0.1:65535",
        ] {
            let u = UpstreamUrl::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(UpstreamUrl::parse(&u.to_string()).unwrap(), u);
        }
        assert_eq!(
            UpstreamUrl::parse("mqtt://h").unwrap().to_string(),
            "mqtt://h:1883"
        );
    }

    #[test]
    fn mqtts_defaults_to_8883() {
        let u = UpstreamUrl::parse("mqtts://broker.example.com").unwrap();
        if cfg!(feature = "tls") {
            assert_eq!(u.scheme, UpstreamScheme::Mqtts);
            assert_eq!(u.port, 8883);
            assert!(u.scheme.is_tls());
            assert_eq!(u.to_string(), "mqtts://broker.example.com:8883");
            let v = UpstreamUrl::parse("MQTTS://[::1]:1234").unwrap();
            assert_eq!((v.host.as_str(), v.port), ("::1", 1234));
            assert_eq!(v.to_string(), "mqtts://[::1]:1234");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn mqtts_without_tls_feature_says_so() {
        let e = UpstreamUrl::parse("mqtts://h").unwrap_err().to_string();
        assert!(e.contains("built without TLS support"), "{e}");
    }

    #[test]
    fn rejects_with_reason() {
        let msg = |s: &str| UpstreamUrl::parse(s).unwrap_err().to_string();
        assert_eq!(
            msg("wss://h"),
            r#"URL "wss://h": scheme "wss://" is not supported yet (supported: mqtt://, mqtts://, nats://, tls://)"#
        );
        assert_eq!(
            UpstreamUrl::parse("nats://h").map(|u| (u.scheme, u.port)),
            Ok((UpstreamScheme::Nats, 4222))
        );
        assert_eq!(
            UpstreamUrl::parse("tls://h:4443").map(|u| (u.scheme, u.port)),
            Ok((UpstreamScheme::NatsTls, 4443))
        );
        assert!(msg("http://h").contains(r#"unknown scheme "http://""#));
        assert!(msg("broker:1883").starts_with("invalid URL"));
        assert!(msg("mqtt://h:0").contains("invalid port \"0\""));
        assert!(msg("mqtt://h:65536").contains("invalid port"));
        assert!(msg("mqtt://h:").contains("invalid port \"\""));
        assert!(msg("mqtt://h:+1").contains("invalid port"));
        assert!(msg("mqtt://").contains("invalid host \"\""));
        assert!(msg("mqtt://:1883").contains("invalid host"));
        assert!(msg("mqtt://[zz]:1").contains("invalid host"));
        assert!(msg("mqtt://[::1]x").contains("invalid host"));
        assert!(msg("mqtt://::1").contains("invalid"));
        assert!(msg("mqtt://h:1/topic").contains("unexpected \"/topic\""));
        assert!(msg("mqtt://u:p@h").contains("credentials go in username/password"));
        assert!(msg("mqtt://h h").contains("invalid host"));
    }
}
