//! NATS message header blocks: `NATS/1.0[ status[ description]]\r\n`, then
//! `Key: Value\r\n` lines, then an empty line.
//!
//! Routing never needs to look inside headers (ferry forwards the raw block),
//! so this is for the places that do: status messages, storage metadata.

use bytes::{BufMut, BytesMut};

use super::errors::ProtoError;

const VERSION: &[u8] = b"NATS/1.0";
const CRLF: &[u8] = b"\r\n";
const END: &[u8] = b"\r\n\r\n";

/// A decoded header block. Keys keep their case and order; a key sent
/// several times appears several times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    pub status: Option<u16>,
    pub description: Option<String>,
    pub entries: Vec<(String, String)>,
}

/// The cheap structural check the parser applies to every HPUB: right
/// version prefix and terminated by an empty line exactly at the end.
pub fn check_block(block: &[u8]) -> Result<(), ProtoError> {
    if !block.starts_with(VERSION) {
        return Err(ProtoError::BadHeaderBlock("missing NATS/1.0 version line"));
    }
    if block.len() < VERSION.len() + CRLF.len() + CRLF.len() || !block.ends_with(END) {
        return Err(ProtoError::BadHeaderBlock(
            "header block does not end with an empty line at its announced length",
        ));
    }
    Ok(())
}

/// The block nats-server (before 2.12) sends for a request nobody answered,
/// and the form every client recognises: status 503, no description.
pub fn no_responders_block() -> &'static [u8] {
    b"NATS/1.0 503\r\n\r\n"
}

/// The block nats-server 2.12+ sends for no responders: status 503 plus a
/// `Nats-Subject` header naming the subject that had no responders.
pub fn encode_no_responders_block(subject: &[u8], out: &mut BytesMut) {
    out.put_slice(b"NATS/1.0 503\r\nNats-Subject: ");
    out.put_slice(subject);
    out.put_slice(b"\r\n\r\n");
}

impl Headers {
    /// Decodes a complete block.
    ///
    /// Lines must end in CRLF; a line starting with a space or tab continues
    /// the previous value (joined with one space, as Go's textproto does).
    /// Values are trimmed; keys must be non-empty and free of whitespace.
    pub fn parse(block: &[u8]) -> Result<Headers, ProtoError> {
        check_block(block)?;
        let text = std::str::from_utf8(block)
            .map_err(|_| ProtoError::BadHeaderBlock("header block is not UTF-8"))?;
        // check_block guarantees the END suffix, so this strip always works.
        let body = text.strip_suffix("\r\n\r\n").unwrap_or(text);
        // Every line, the status line too: a bare CR or LF cannot be encoded again.
        if body.split("\r\n").any(|line| line.contains(['\r', '\n'])) {
            return Err(ProtoError::BadHeaderBlock("stray CR or LF in header line"));
        }
        let mut lines = body.split("\r\n");
        let version_line = lines.next().unwrap_or("");
        let mut headers = Headers::default();
        parse_status(version_line, &mut headers)?;
        for line in lines {
            if line.starts_with([' ', '\t']) {
                let Some((_, value)) = headers.entries.last_mut() else {
                    return Err(ProtoError::BadHeaderBlock(
                        "continuation line without header",
                    ));
                };
                let more = line.trim();
                if !more.is_empty() {
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(more);
                }
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(ProtoError::BadHeaderBlock("header line without ':'"));
            };
            if !valid_key(key) {
                return Err(ProtoError::BadHeaderBlock("invalid header name"));
            }
            headers
                .entries
                .push((key.to_owned(), value.trim().to_owned()));
        }
        Ok(headers)
    }

    /// Values of `key`, compared case-insensitively like the clients do.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Appends the wire form. Rejects anything that would break the framing
    /// (CR/LF in any field, bad keys) instead of writing a corrupt block.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), ProtoError> {
        let bad = |s: &str| s.contains(['\r', '\n']);
        if self.status.is_some_and(|s| s > 999)
            || self.description.as_deref().is_some_and(bad)
            || self
                .entries
                .iter()
                .any(|(k, v)| !valid_key(k) || bad(v) || v.starts_with([' ', '\t']))
        {
            return Err(ProtoError::BadHeaderBlock("header field not encodable"));
        }
        out.put_slice(VERSION);
        if let Some(status) = self.status {
            out.put_u8(b' ');
            // nats-server and the clients expect exactly three digits.
            out.put_slice(format!("{status:03}").as_bytes());
            if let Some(d) = self.description.as_deref().filter(|d| !d.is_empty()) {
                out.put_u8(b' ');
                out.put_slice(d.as_bytes());
            }
        }
        out.put_slice(CRLF);
        for (k, v) in &self.entries {
            out.put_slice(k.as_bytes());
            out.put_slice(b": ");
            out.put_slice(v.as_bytes());
            out.put_slice(CRLF);
        }
        out.put_slice(CRLF);
        Ok(())
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Whether `key: value` can go into a header block unchanged. Metadata from MQTT user
/// properties may not (spaces in keys, line breaks in values); callers drop such pairs
/// rather than the whole block.
pub fn entry_encodable(key: &str, value: &str) -> bool {
    valid_key(key) && !value.contains(['\r', '\n']) && !value.starts_with([' ', '\t'])
}

/// `NATS/1.0`, `NATS/1.0 503`, `NATS/1.0 408 Request Timeout`.
fn parse_status(line: &str, headers: &mut Headers) -> Result<(), ProtoError> {
    let rest = line.get(VERSION.len()..).unwrap_or("");
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(ProtoError::BadHeaderBlock("garbage after NATS/1.0"));
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(());
    }
    let (code, description) = match rest.split_once([' ', '\t']) {
        Some((c, d)) => (c, d.trim()),
        None => (rest, ""),
    };
    if code.is_empty() || code.len() > 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtoError::BadHeaderBlock("status is not a 3-digit code"));
    }
    headers.status = code.parse().ok();
    if !description.is_empty() {
        headers.description = Some(description.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_headers_keep_case_order_and_repeats() {
        let h = Headers::parse(b"NATS/1.0\r\nFoo: bar\r\nfoo:  baz \r\nX-Id:1\r\n\r\n").unwrap();
        assert_eq!(h.status, None);
        assert_eq!(h.description, None);
        assert_eq!(
            h.entries,
            vec![
                ("Foo".to_owned(), "bar".to_owned()),
                ("foo".to_owned(), "baz".to_owned()),
                ("X-Id".to_owned(), "1".to_owned()),
            ]
        );
        assert_eq!(h.get_all("FOO").collect::<Vec<_>>(), vec!["bar", "baz"]);
    }

    #[test]
    fn status_lines() {
        let h = Headers::parse(b"NATS/1.0 503\r\n\r\n").unwrap();
        assert_eq!((h.status, h.description), (Some(503), None));
        let h = Headers::parse(b"NATS/1.0 408 Request Timeout\r\n\r\n").unwrap();
        assert_eq!(h.status, Some(408));
        assert_eq!(h.description.as_deref(), Some("Request Timeout"));
        let h = Headers::parse(b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Stream: 1024\r\n\r\n")
            .unwrap();
        assert_eq!(h.status, Some(100));
        assert_eq!(h.entries.len(), 1);
    }

    #[test]
    fn no_responders_forms() {
        let h = Headers::parse(no_responders_block()).unwrap();
        assert_eq!(h.status, Some(503));
        let mut out = BytesMut::new();
        encode_no_responders_block(b"svc.echo", &mut out);
        assert_eq!(&out[..], b"NATS/1.0 503\r\nNats-Subject: svc.echo\r\n\r\n");
        // nats-server computes this length as 32 + len(subject).
        assert_eq!(out.len(), 32 + "svc.echo".len());
        let h = Headers::parse(&out).unwrap();
        assert_eq!(h.get_all("nats-subject").next(), Some("svc.echo"));
    }

    #[test]
    fn continuation_lines_fold() {
        let h = Headers::parse(b"NATS/1.0\r\nK: a\r\n  b\r\n\r\n").unwrap();
        assert_eq!(h.entries, vec![("K".to_owned(), "a b".to_owned())]);
    }

    #[test]
    fn malformed_blocks() {
        for bad in [
            &b"NATS/1.1\r\n\r\n"[..],
            b"NATS/1.0\r\n",
            b"HTTP/1.0\r\n\r\n",
            b"NATS/1.0\r\nnocolon\r\n\r\n",
            b"NATS/1.0\r\n: empty key\r\n\r\n",
            b"NATS/1.0\r\nbad key: v\r\n\r\n",
            b"NATS/1.0 50x\r\n\r\n",
            b"NATS/1.0 5034\r\n\r\n",
            b"NATS/1.0\r\n cont first\r\n\r\n",
            b"NATS/1.0\r\nK: a\nb\r\n\r\n",
            b"NATS/1.0\r\nK: \xff\r\n\r\n",
        ] {
            assert!(
                matches!(Headers::parse(bad), Err(ProtoError::BadHeaderBlock(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Found by fuzz/ (nats_parser): a bare CR in the status description was accepted,
    /// giving a `Headers` that `encode` refuses.
    #[test]
    fn stray_cr_or_lf_in_status_line_is_rejected() {
        for bad in [
            &b"NATS/1.0 408 Request \rimeout\r\n\r\n"[..],
            b"NATS/1.0 408 Request\nTimeout\r\n\r\n",
            b"NATS/1.0\r 503\r\n\r\n",
        ] {
            assert_eq!(
                Headers::parse(bad),
                Err(ProtoError::BadHeaderBlock("stray CR or LF in header line")),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encode_round_trips() {
        let h = Headers {
            status: Some(408),
            description: Some("Request Timeout".into()),
            entries: vec![("A".into(), "1".into()), ("a".into(), "2".into())],
        };
        let mut out = BytesMut::new();
        h.encode(&mut out).unwrap();
        assert_eq!(
            &out[..],
            b"NATS/1.0 408 Request Timeout\r\nA: 1\r\na: 2\r\n\r\n"
        );
        assert_eq!(Headers::parse(&out).unwrap(), h);

        let mut out = BytesMut::new();
        Headers::default().encode(&mut out).unwrap();
        assert_eq!(&out[..], b"NATS/1.0\r\n\r\n");

        let bad = Headers {
            entries: vec![("K".into(), "x\r\nInjected: y".into())],
            ..Headers::default()
        };
        assert!(bad.encode(&mut BytesMut::new()).is_err());
    }
}
