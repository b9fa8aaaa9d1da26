//! Checking the HTTP/1.1 request that opens a WebSocket (RFC 6455 §4.2.1): a pure function
//! of the request head's bytes, so that every refusal can be tested without I/O.

use super::WsError;
use super::base64;

/// Subprotocols that carry MQTT: `mqtt` (MQTT 3.1.1 and 5) and `mqttv3.1` (sent by old
/// clients for MQTT 3.1).
const MQTT_PROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// What an acceptable upgrade request asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade<'a> {
    /// `Sec-WebSocket-Key`, trimmed, to compute `Sec-WebSocket-Accept` from.
    pub key: &'a str,
    /// The subprotocol to answer with, spelled as the client sent it; `None` when the
    /// client offered none.
    pub protocol: Option<&'a str>,
}

/// Checks `head` (the request line and headers, ending with the blank line) for an
/// upgrade to a WebSocket at `path`. The error says which HTTP status to refuse with.
pub fn check<'a>(head: &'a [u8], path: &str) -> Result<Upgrade<'a>, WsError> {
    let lines = lines(head)?;
    let (request_line, headers) = lines
        .split_first()
        .ok_or(WsError::Malformed("empty request"))?;
    let (method, target) = request_line_parts(request_line)?;

    let mut upgrade = false;
    let mut connection_upgrade = false;
    let mut version: Option<&str> = None;
    let mut version_13 = false;
    let mut key: Option<&str> = None;
    let mut keys = 0;
    let mut offered: Vec<&str> = Vec::new();
    for line in headers {
        let (name, value) = header(line)?;
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("upgrade") {
            upgrade |= tokens(text(value)?).any(|t| t.eq_ignore_ascii_case("websocket"));
        } else if is("connection") {
            connection_upgrade |= tokens(text(value)?).any(|t| t.eq_ignore_ascii_case("upgrade"));
        } else if is("sec-websocket-version") {
            let value = text(value)?;
            version.get_or_insert(value);
            version_13 |= tokens(value).any(|t| t == "13");
        } else if is("sec-websocket-key") {
            keys += 1;
            key = Some(text(value)?);
        } else if is("sec-websocket-protocol") {
            offered.extend(tokens(text(value)?));
        }
    }

    if method != "GET" {
        return Err(WsError::Method(method.to_owned()));
    }
    let request_path = target_path(target);
    if request_path != path {
        return Err(WsError::Path(request_path.to_owned()));
    }
    if !upgrade {
        return Err(WsError::NotUpgrade("no \"Upgrade: websocket\" header"));
    }
    if !connection_upgrade {
        return Err(WsError::NotUpgrade(
            "no \"upgrade\" token in the Connection header",
        ));
    }
    if !version_13 {
        return Err(WsError::Version(version.map(str::to_owned)));
    }
    let key = match key {
        Some(k) if keys == 1 && base64::decode(k).is_some_and(|raw| raw.len() == 16) => k,
        _ => return Err(WsError::Key),
    };
    let protocol = if offered.is_empty() {
        None
    } else {
        let mqtt = offered
            .iter()
            .find(|p| MQTT_PROTOCOLS.iter().any(|m| p.eq_ignore_ascii_case(m)));
        match mqtt {
            Some(p) => Some(*p),
            None => return Err(WsError::Subprotocol(offered.join(", "))),
        }
    };
    Ok(Upgrade { key, protocol })
}

/// The lines of `head` without their CRLF (the final blank line excluded). A bare CR or
/// LF is refused: request smuggling lives in such differences between parsers.
fn lines(head: &[u8]) -> Result<Vec<&[u8]>, WsError> {
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .ok_or(WsError::Malformed("request head not ended by a blank line"))?;
    let mut pieces = body.split(|&b| b == b'\n').peekable();
    let mut lines = Vec::new();
    while let Some(piece) = pieces.next() {
        let line = if pieces.peek().is_none() {
            Some(piece)
        } else {
            piece.strip_suffix(b"\r")
        };
        match line {
            Some(l) if !l.contains(&b'\r') => lines.push(l),
            _ => return Err(WsError::Malformed("line not ended by CRLF")),
        }
    }
    Ok(lines)
}

/// Method and request target of `METHOD SP target SP HTTP/1.1`.
fn request_line_parts(line: &[u8]) -> Result<(&str, &str), WsError> {
    let line =
        std::str::from_utf8(line).map_err(|_| WsError::Malformed("request line not UTF-8"))?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some("HTTP/1.1"), None)
            if !method.is_empty() && method.bytes().all(is_token) && !target.is_empty() =>
        {
            Ok((method, target))
        }
        (_, _, Some(version), None) if version.starts_with("HTTP/") => {
            Err(WsError::Malformed("HTTP version is not 1.1"))
        }
        _ => Err(WsError::Malformed("bad request line")),
    }
}

/// The path of a request target, without its query: origin form (`/mqtt?x=1`) or
/// absolute form (`http://host:8080/mqtt`).
fn target_path(target: &str) -> &str {
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// Name and value (without surrounding spaces and tabs) of a header line.
fn header(line: &[u8]) -> Result<(&[u8], &[u8]), WsError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(WsError::Malformed("header line without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_token) {
        // Also refuses obsolete line folding, which starts a line with a space.
        return Err(WsError::Malformed("bad header name"));
    }
    let value = &line[colon + 1..];
    let start = value
        .iter()
        .position(|b| !is_ows(*b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(*b))
        .map_or(start, |i| i + 1);
    Ok((name, &value[start..end]))
}

fn text(value: &[u8]) -> Result<&str, WsError> {
    std::str::from_utf8(value).map_err(|_| WsError::Malformed("header value not UTF-8"))
}

/// The non-empty, trimmed elements of a comma-separated header value.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
