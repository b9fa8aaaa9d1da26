//! Typed reads of raw leaves that record a located problem instead of
//! failing, so one pass over the file finds every mistake.
//!
//! Each reader returns `None` both when the key is absent and when it is
//! invalid; the caller then falls back to the default. That is safe because
//! any recorded problem makes the whole parse fail.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use toml::{Spanned, Value};

use super::errors::{Problem, line_col};
use super::raw::Leaf;
use super::units::{ByteSize, UnitError, format_duration, parse_duration};

const SIZE_EXPECTED: &str = "expected a number with optional unit B, KiB, MiB, GiB (or kB, MB, GB)";
const DURATION_EXPECTED: &str = "expected a whole number with unit ns, us, ms, s, m, h or d like \"30s\" (a bare integer means seconds)";

/// Allowed integer values.
#[derive(Clone, Copy)]
pub(crate) enum Bound {
    AtLeast(u64),
    Between(u64, u64),
}

pub(crate) struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub fn new(text: &'a str, origin: &'a str) -> Self {
        Checker {
            text,
            origin,
            problems: Vec::new(),
        }
    }

    /// Records `message` at byte `offset` of the file.
    pub fn at(&mut self, offset: usize, message: String) {
        let (line, column) = line_col(self.text, offset);
        self.problems.push(Problem {
            file: self.origin.to_string(),
            line,
            column,
            message,
        });
    }

    /// Records "path: message" at the start of `v`.
    pub fn bad<T>(&mut self, v: &Spanned<T>, path: &str, message: impl Display) {
        self.at(v.span().start, format!("{path}: {message}"));
    }

    pub fn bool(&mut self, path: &str, leaf: &Leaf) -> Option<bool> {
        let v = leaf.as_ref()?;
        match v.get_ref() {
            Value::Boolean(b) => Some(*b),
            other => {
                self.bad(
                    v,
                    path,
                    format!("expected true or false, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A string value, returned with its span for follow-up checks.
    pub fn string<'l>(&mut self, path: &str, leaf: &'l Leaf) -> Option<(&'l str, usize)> {
        let v = leaf.as_ref()?;
        match v.get_ref() {
            Value::String(s) => Some((s.as_str(), v.span().start)),
            other => {
                self.bad(
                    v,
                    path,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// An array of strings, each with its offset in the file.
    pub fn strings(&mut self, path: &str, leaf: &Leaf) -> Option<Vec<(String, usize)>> {
        let v = leaf.as_ref()?;
        let Value::Array(items) = v.get_ref() else {
            let found = describe(v.get_ref());
            self.bad(
                v,
                path,
                format!("expected an array of strings, found {found}"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) => out.push((s.clone(), v.span().start)),
                other => {
                    let found = describe(other);
                    self.bad(
                        v,
                        path,
                        format!("expected an array of strings, found {found} in it"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    pub fn uint<T: TryFrom<u64>>(&mut self, path: &str, leaf: &Leaf, bound: Bound) -> Option<T> {
        let v = leaf.as_ref()?;
        let expected = match bound {
            Bound::AtLeast(min) => format!("expected an integer >= {min}"),
            Bound::Between(min, max) => format!("expected an integer in {min}..={max}"),
        };
        let Value::Integer(i) = v.get_ref() else {
            let found = describe(v.get_ref());
            self.bad(v, path, format!("{expected}, found {found}"));
            return None;
        };
        let (min, max) = match bound {
            Bound::AtLeast(min) => (min, u64::MAX),
            Bound::Between(min, max) => (min, max),
        };
        let in_range = u64::try_from(*i).ok().filter(|n| (min..=max).contains(n));
        match in_range.and_then(|n| T::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.bad(v, path, format!("invalid value {i}: {expected}"));
                None
            }
        }
    }

    pub fn size(
        &mut self,
        path: &str,
        leaf: &Leaf,
        min: ByteSize,
        max: ByteSize,
    ) -> Option<ByteSize> {
        let v = leaf.as_ref()?;
        let size = match v.get_ref() {
            Value::Integer(i) => match u64::try_from(*i) {
                Ok(n) => ByteSize(n),
                Err(_) => {
                    self.bad(v, path, format!("invalid size {i}: {SIZE_EXPECTED}"));
                    return None;
                }
            },
            Value::String(s) => match ByteSize::parse(s) {
                Ok(size) => size,
                Err(UnitError::Invalid) => {
                    self.bad(v, path, format!("invalid size {s:?}: {SIZE_EXPECTED}"));
                    return None;
                }
                Err(UnitError::TooLarge) => {
                    self.bad(v, path, format!("invalid size {s:?}: too large"));
                    return None;
                }
            },
            other => {
                self.bad(
                    v,
                    path,
                    format!("{SIZE_EXPECTED}, found {}", describe(other)),
                );
                return None;
            }
        };
        if size < min || size > max {
            let range = if max.0 == u64::MAX {
                format!("expected at least {min}")
            } else {
                format!("expected {min}..={max}")
            };
            self.bad(v, path, format!("{size} is out of range: {range}"));
            return None;
        }
        Some(size)
    }

    pub fn duration(
        &mut self,
        path: &str,
        leaf: &Leaf,
        min: Duration,
        max: Option<Duration>,
    ) -> Option<Duration> {
        let v = leaf.as_ref()?;
        let d = match v.get_ref() {
            Value::Integer(i) => match u64::try_from(*i) {
                Ok(n) => Duration::from_secs(n),
                Err(_) => {
                    self.bad(
                        v,
                        path,
                        format!("invalid duration {i}: {DURATION_EXPECTED}"),
                    );
                    return None;
                }
            },
            Value::String(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(UnitError::Invalid) => {
                    self.bad(
                        v,
                        path,
                        format!("invalid duration {s:?}: {DURATION_EXPECTED}"),
                    );
                    return None;
                }
                Err(UnitError::TooLarge) => {
                    self.bad(v, path, format!("invalid duration {s:?}: too large"));
                    return None;
                }
            },
            other => {
                self.bad(
                    v,
                    path,
                    format!("{DURATION_EXPECTED}, found {}", describe(other)),
                );
                return None;
            }
        };
        let too_big = max.is_some_and(|m| d > m);
        if d < min || too_big {
            let range = match max {
                Some(m) if min.is_zero() => format!("expected at most {}", format_duration(m)),
                Some(m) => format!("expected {}..={}", format_duration(min), format_duration(m)),
                None => format!("expected at least {}", format_duration(min)),
            };
            self.bad(
                v,
                path,
                format!("{} is out of range: {range}", format_duration(d)),
            );
            return None;
        }
        Some(d)
    }

    /// A listener address where `""` turns the listener off: `Some(None)`.
    pub fn listen(&mut self, path: &str, leaf: &Leaf, example: &str) -> Option<Option<SocketAddr>> {
        let (s, _) = self.string(path, leaf)?;
        if s.trim().is_empty() {
            return Some(None);
        }
        self.addr(path, leaf, example).map(Some)
    }

    /// An `ip:port`, or a `host:port` with a local host name: `localhost` or a name in
    /// `/etc/hosts` (an IPv4 address preferred), as in `localhost:9100`. Never DNS: these
    /// are addresses of this machine, and a gateway that boots without a network must not
    /// wait for a resolver to read its config.
    pub fn addr(&mut self, path: &str, leaf: &Leaf, example: &str) -> Option<SocketAddr> {
        let (s, start) = self.string(path, leaf)?;
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(a);
        }
        let named = s.rsplit_once(':').and_then(|(host, port)| {
            let port = port.parse::<u16>().ok()?;
            let name = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            name.then_some((host, port))
        });
        if let Some((host, port)) = named {
            let ip = local_host(host);
            if ip.is_none() {
                self.at(
                    start,
                    format!("{path}: host name {host:?} is neither localhost nor in /etc/hosts: expected an IP address or a local name, like {example:?}"),
                );
            }
            return ip.map(|ip| SocketAddr::new(ip, port));
        }
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    start,
                    format!(
                        "{path}: invalid socket address {s:?}: expected host:port like {example:?}"
                    ),
                );
                None
            }
        }
    }
}

/// "string \"x\"", "integer 5", ... for type-mismatch messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// The address of a local host name: `localhost`, or the first address `/etc/hosts`
/// gives it (an IPv4 one if it has any).
fn local_host(name: &str) -> Option<std::net::IpAddr> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut found: Vec<std::net::IpAddr> = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip = words.next()?.parse().ok()?;
            words.any(|w| w.eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect();
    if name.eq_ignore_ascii_case("localhost") {
        found.push(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    found
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(found.first())
        .copied()
}
