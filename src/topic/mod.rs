//! MQTT topic names and filters: validation and the reference matcher.
//!
//! The router's trie is the fast path; [`matches`] is the plain, obviously-correct
//! matcher that the forwarding rules use (a handful of filters) and that the trie is
//! property-tested against.

pub mod nats;

/// The most levels a topic or filter may have. Bounds the recursion of the trie walk
/// and the fixed-capacity level split on the hot path.
pub const MAX_LEVELS: usize = 32;

/// Why a topic or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic contains a NUL character")]
    Nul,
    #[error("wildcards (+, #) are not allowed in a topic name")]
    WildcardInName,
    #[error("'#' must be the whole last level of a filter")]
    BadMultiLevel,
    #[error("'+' must be a whole level of a filter")]
    BadSingleLevel,
    #[error("more than {MAX_LEVELS} levels")]
    TooManyLevels,
}

/// Checks a topic name that a client publishes to.
pub fn validate_name(topic: &str) -> Result<(), TopicError> {
    name_levels(topic).map(|_| ())
}

/// [`validate_name`] that also gives the name's number of levels: one pass over its
/// bytes for both (it runs for every PUBLISH, whose level count is checked against
/// `mqtt.max_topic_levels` too).
pub fn name_levels(topic: &str) -> Result<usize, TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut nul = false;
    let mut wildcard = false;
    let mut slashes = 0usize;
    for &b in topic.as_bytes() {
        match b {
            0 => nul = true,
            b'+' | b'#' => wildcard = true,
            b'/' => slashes += 1,
            _ => {}
        }
    }
    if nul {
        return Err(TopicError::Nul);
    }
    if wildcard {
        return Err(TopicError::WildcardInName);
    }
    if slashes >= MAX_LEVELS {
        return Err(TopicError::TooManyLevels);
    }
    Ok(slashes + 1)
}

/// The levels of a topic or filter, as `str::split('/')` gives them (`""` has one empty
/// level, `"a/"` has `"a"` and `""`), found by a byte search: on the hot path (every
/// PUBLISH is split for the forwarding rules and the router) the generic `split`
/// costs several times as much.
pub fn levels(s: &str) -> Levels<'_> {
    Levels { rest: Some(s) }
}

/// The number of levels of `s` (one more than its slashes), MQTT topic or filter.
pub fn level_count(s: &str) -> usize {
    1 + s.bytes().filter(|&b| b == b'/').count()
}

/// The iterator of [`levels`].
#[derive(Clone)]
pub struct Levels<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Levels<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.bytes().position(|b| b == b'/') {
            // '/' is ASCII, so both sides are on character boundaries.
            Some(at) => {
                self.rest = rest.get(at + 1..);
                rest.get(..at)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Checks a subscription filter.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::Nul);
    }
    let mut levels = filter.split('/').peekable();
    let mut count = 0;
    while let Some(level) = levels.next() {
        count += 1;
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::BadMultiLevel);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::BadSingleLevel);
        }
    }
    if count > MAX_LEVELS {
        return Err(TopicError::TooManyLevels);
    }
    Ok(())
}

/// Does `filter` match `topic`? Topics starting with `$` are not matched by a wildcard
/// in the first level (MQTT 3.1.1 section 4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = levels(filter);
    let mut t = levels(topic);
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_validation() {
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/", "a//b", "$SYS/#"] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_filter("a/#/b"), Err(TopicError::BadMultiLevel));
        assert_eq!(validate_filter("a#"), Err(TopicError::BadMultiLevel));
        assert_eq!(validate_filter("a/b+"), Err(TopicError::BadSingleLevel));
        assert_eq!(validate_filter("a\0"), Err(TopicError::Nul));
    }

    #[test]
    fn levels_split_as_str_split_does() {
        for s in [
            "", "/", "a", "a/", "/a", "a/b", "a//b", "//", "é/ü/x", "$SYS/#", "a/+/c",
        ] {
            let ours: Vec<&str> = levels(s).collect();
            let std: Vec<&str> = s.split('/').collect();
            assert_eq!(ours, std, "{s:?}");
            assert_eq!(level_count(s), std.len(), "{s:?}");
        }
    }

    #[test]
    fn name_validation() {
        assert_eq!(validate_name("a/b"), Ok(()));
        assert_eq!(name_levels("a/b//"), Ok(4));
        assert_eq!(validate_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        let deep = vec!["x"; MAX_LEVELS + 1].join("/");
        assert_eq!(validate_name(&deep), Err(TopicError::TooManyLevels));
    }

    #[test]
    fn matching() {
        assert!(matches("sensors/#", "sensors/a/b"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("sensors/+/t", "sensors/x/t"));
        assert!(!matches("sensors/+/t", "sensors/x/y/t"));
        assert!(matches("+", "a"));
        assert!(!matches("+", "a/b"));
        assert!(matches("+/+", "/b"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }
}
