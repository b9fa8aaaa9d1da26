//! Topic name and topic filter syntax (spec 4.7).
//!
//! The codec enforces topic *name* rules itself (PUBLISH and will topics),
//! because a bad name makes the packet unusable. Topic *filters* are only
//! checked for UTF-8 during decode: MQTT 5 answers a bad filter per filter
//! in SUBACK (0x8F), so the session calls [`valid_topic_filter`].

use super::error::CodecError;

/// A topic name one can publish to: non-empty, no wildcards, no U+0000.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// A topic filter one can subscribe to: non-empty, no U+0000, `+` only as a
/// whole level, `#` only as the whole last level. Shared subscriptions
/// (`$share/<name>/<filter>`) need a non-empty name without wildcards and a
/// valid filter after it.
#[allow(dead_code)] // API for the session; unused by the binary so far
pub fn valid_topic_filter(filter: &str) -> bool {
    if let Some(rest) = filter.strip_prefix("$share/") {
        return match rest.split_once('/') {
            Some((name, inner)) if !name.is_empty() => {
                !name.contains(['+', '#']) && valid_plain_filter(inner)
            }
            _ => false,
        };
    }
    valid_plain_filter(filter)
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "#" => levels.peek().is_none(),
            "+" => true,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// PUBLISH topic check. MQTT 5 allows an empty topic when a topic alias
/// stands in for it; whether the alias is known is the session's business.
pub(crate) fn check_publish_topic(topic: &str, has_alias: bool) -> Result<(), CodecError> {
    if (topic.is_empty() && has_alias) || valid_topic_name(topic) {
        Ok(())
    } else {
        Err(CodecError::InvalidTopic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_topic_name("a/b"));
        assert!(valid_topic_name("/"));
        assert!(valid_topic_name("$SYS/x"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/+"));
        assert!(!valid_topic_name("a/#"));
        assert!(!valid_topic_name("a\0b"));
        assert!(check_publish_topic("", true).is_ok());
        assert_eq!(
            check_publish_topic("", false),
            Err(CodecError::InvalidTopic)
        );
        assert_eq!(
            check_publish_topic("+", true),
            Err(CodecError::InvalidTopic)
        );
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "a//b",
            "$share/g/a/#",
            "$share/g/#",
        ] {
            assert!(valid_topic_filter(ok), "{ok}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "a+/b",
            "#/",
            "a\0",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
        ] {
            assert!(!valid_topic_filter(bad), "{bad}");
        }
    }
}
