//! Checks for MQTT topic filters and forwarding topic templates.
//!
//! Done at load time so a bad rule is a startup error with a line number,
//! not a silently dead route at run time.

/// MQTT strings are length-prefixed with a u16.
const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a filter is not a valid MQTT topic filter (MQTT 3.1.1 §4.7).
pub(crate) fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("expected a non-empty MQTT topic filter like \"sensors/#\"".into());
    }
    if filter.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "filter is {} bytes: expected at most {MAX_TOPIC_BYTES}",
            filter.len()
        ));
    }
    if filter.contains('\0') {
        return Err("filter contains U+0000, which MQTT forbids".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len().saturating_sub(1);
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(format!(
                "invalid filter {filter:?}: '#' must be a whole level and the last one, like \"sensors/#\""
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "invalid filter {filter:?}: '+' must be a whole level, like \"sensors/+/temp\""
            ));
        }
    }
    Ok(())
}

/// The placeholder replaced by the local topic in a forwarding template.
pub const TOPIC_PLACEHOLDER: &str = "{topic}";

/// Why `template` is not a usable upstream topic template.
///
/// The local topic substituted for `{topic}` is a publish topic and so never
/// holds wildcards; checking the literal parts is therefore enough to
/// guarantee the rendered topic has none either.
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err("expected a non-empty topic template like \"site1/{topic}\"".into());
    }
    if template.contains('\0') {
        return Err("topic template contains U+0000, which MQTT forbids".into());
    }
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        let (literal, tail) = rest.split_at(open);
        check_literal(template, literal)?;
        if tail.starts_with('}') {
            return Err(format!(
                "topic template {template:?}: unmatched '}}': the only placeholder is {{topic}}"
            ));
        }
        let Some(close) = tail.find('}') else {
            return Err(format!(
                "topic template {template:?}: unclosed '{{': the only placeholder is {{topic}}"
            ));
        };
        let (placeholder, after) = tail.split_at(close + 1);
        if placeholder != TOPIC_PLACEHOLDER {
            return Err(format!(
                "topic template {template:?}: unknown placeholder {placeholder:?}: the only placeholder is {{topic}}"
            ));
        }
        rest = after;
    }
    check_literal(template, rest)
}

fn check_literal(template: &str, literal: &str) -> Result<(), String> {
    if literal.contains(['+', '#']) {
        return Err(format!(
            "topic template {template:?} contains '+' or '#': expected a topic without wildcards"
        ));
    }
    Ok(())
}

/// Renders a (validated) template for one local topic.
pub(crate) fn render(template: Option<&str>, local_topic: &str) -> String {
    match template {
        Some(t) => t.replace(TOPIC_PLACEHOLDER, local_topic),
        None => local_topic.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for good in [
            "#", "+", "a/b", "a/+/c", "a/#", "+/+/#", "/", "a//b", "$SYS/#",
        ] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "#/a", "a/b#", "a+/b", "a/+b", "a\0b"] {
            assert!(check_filter(bad).is_err(), "{bad:?}");
        }
        assert!(check_filter(&"a".repeat(65_536)).is_err());
    }

    #[test]
    fn templates() {
        for good in [
            "{topic}",
            "site1/{topic}",
            "x/{topic}/y/{topic}",
            "fixed/topic",
        ] {
            assert_eq!(check_template(good), Ok(()), "{good}");
        }
        let err = |t: &str| check_template(t).unwrap_err();
        assert!(err("").contains("non-empty"));
        assert!(err("a/{name}").contains("unknown placeholder \"{name}\""));
        assert!(err("a/{topic").contains("unclosed '{'"));
        assert!(err("a/topic}").contains("unmatched '}'"));
        assert!(err("a/+/{topic}").contains("'+' or '#'"));
        assert!(err("{topic}/#").contains("'+' or '#'"));
        assert!(err("{TOPIC}").contains("unknown placeholder"));
    }

    #[test]
    fn renders() {
        assert_eq!(render(None, "a/b"), "a/b");
        assert_eq!(render(Some("s1/{topic}"), "a/b"), "s1/a/b");
        assert_eq!(render(Some("fixed"), "a/b"), "fixed");
    }
}
