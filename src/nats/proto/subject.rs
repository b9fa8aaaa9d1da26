//! Subject syntax, following nats-server's rules (sublist.go).
//!
//! Tokens are separated by `.` and must be non-empty. `*` and `>` are
//! wildcards only when they are a whole token (`foo*` is a literal token),
//! and `>` must be the last token. Whitespace (space, tab, CR, LF, FF) is
//! never allowed; the parser splits arguments on space/tab already.
//!
//! What nats-server does with these (and what ferry should copy):
//! - SUB: always checked (`Sublist.Insert`); a bad subject gets
//!   `-ERR 'Invalid Subject'` and the connection stays open.
//! - PUB/HPUB: checked only when the client set `pedantic`; then it sends
//!   `-ERR 'Invalid Publish Subject'` (connection stays open). nats-server
//!   still tries to deliver such a message; a broker that routes by pattern
//!   should rather drop it, since a publish to `a.*` must not act as a
//!   wildcard. Non-pedantic: drop silently.
//! - Reply subjects are not syntax-checked by nats-server; clients use them
//!   as literal inboxes.

/// Bytes nats-server rejects inside a subject token.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// A subject a message may be published to: valid and without wildcards.
pub fn valid_publish_subject(subject: &[u8]) -> bool {
    !subject.is_empty()
        && subject
            .split(|&b| b == b'.')
            .all(|t| !t.is_empty() && t != b"*" && t != b">" && !t.iter().any(|&b| is_space(b)))
}

/// A subject a client may subscribe to: wildcards allowed as whole tokens,
/// `>` only as the last token.
pub fn valid_subscribe_subject(subject: &[u8]) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut after_fwc = false;
    for t in subject.split(|&b| b == b'.') {
        if t.is_empty() || after_fwc || t.iter().any(|&b| is_space(b)) {
            return false;
        }
        after_fwc = t == b">";
    }
    true
}

/// Does the subscription subject `pattern` match the literal `subject`? nats-server's
/// sublist semantics: `*` matches one token, a final `>` one or more.
pub fn subject_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut p = pattern.split(|&b| b == b'.');
    let mut s = subject.split(|&b| b == b'.');
    loop {
        match (p.next(), s.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects() {
        for ok in [
            "foo",
            "foo.bar",
            "a.b.c.d",
            "foo*",
            "*foo.>bar",
            "$JS.API.INFO",
            "_INBOX.x9",
        ] {
            assert!(valid_publish_subject(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "foo.",
            ".foo",
            "foo..bar",
            "*",
            ">",
            "foo.*",
            "foo.>",
            "*.foo",
            "foo bar",
            "foo\tbar",
            "foo\rbar",
            "foo\x0cbar",
        ] {
            assert!(!valid_publish_subject(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        assert!(subject_matches(b"foo.*", b"foo.bar"));
        assert!(!subject_matches(b"foo.*", b"foo.bar.baz"));
        assert!(subject_matches(b"foo.>", b"foo.bar.baz"));
        assert!(!subject_matches(b"foo.>", b"foo"));
        assert!(subject_matches(b"_INBOX.x.*", b"_INBOX.x.1"));
        assert!(subject_matches(b">", b"a"));
        assert!(!subject_matches(b"a.b", b"a"));
        assert!(subject_matches(b"a.b", b"a.b"));
    }

    #[test]
    fn subscribe_subjects() {
        for ok in [
            "foo",
            "*",
            ">",
            "foo.*",
            "foo.>",
            "*.*.>",
            "foo.*.bar",
            "foo*.>",
            "a.>b.c",
        ] {
            assert!(valid_subscribe_subject(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "foo.",
            ".foo",
            "foo..bar",
            ">.foo",
            "foo.>.bar",
            "foo.>.>",
            "foo bar",
            "foo.\t",
            "a.\x0c",
        ] {
            assert!(!valid_subscribe_subject(bad.as_bytes()), "{bad:?}");
        }
    }
}
