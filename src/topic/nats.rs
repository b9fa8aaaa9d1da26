//! NATS subject <-> canonical (MQTT) topic mapping, so both protocols share one topic
//! space (docs/topic-mapping.md has the full table).
//!
//! The rules are nats-server's own MQTT bridge (`mqttToNATSSubjectConversion` /
//! `natsSubjectToMQTTTopic` in server/mqtt.go), applied level by level:
//!
//! | MQTT level          | NATS token                    |
//! |---------------------|-------------------------------|
//! | `a`                 | `a`                           |
//! | `` (empty)          | `/`                           |
//! | `a.b` (`.` inside)  | `a//b` (each `.` becomes `//`)|
//! | `+` (filter)        | `*`                           |
//! | `#` (filter, last)  | `>`                           |
//!
//! nats-server's reverse conversion is lossy for subjects it never produced (a lone `/`
//! is silently dropped); ferry is stricter and refuses them, so the mapping is a
//! bijection between the subjects and topics it accepts: `subject_to_topic` then
//! `topic_to_subject` gives back the same bytes, and the other way round.

use super::{MAX_LEVELS, TopicError, validate_filter, validate_name};

/// Why a subject or topic has no counterpart in the other protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("subject is not UTF-8")]
    NotUtf8,
    #[error("empty token or level")]
    EmptyToken,
    #[error("whitespace cannot appear in a NATS subject")]
    Whitespace,
    #[error("'*' and '>' are NATS wildcards, not allowed here")]
    NatsWildcard,
    #[error("'+' and '#' are MQTT wildcards, not allowed here")]
    MqttWildcard,
    #[error("'/' in a NATS token must be the whole token or come in pairs")]
    LoneSlash,
    #[error("'>' must be the last token")]
    FwcNotLast,
    #[error(transparent)]
    Topic(#[from] TopicError),
}

/// Bytes nats-server refuses in subjects (they would split the control line).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// One NATS token of a literal subject -> one MQTT level, appended to `out`.
fn push_level(token: &[u8], out: &mut String) -> Result<(), MapError> {
    match token {
        b"" => return Err(MapError::EmptyToken),
        b"/" => return Ok(()),
        b"*" | b">" => return Err(MapError::NatsWildcard),
        _ => {}
    }
    let text = std::str::from_utf8(token).map_err(|_| MapError::NotUtf8)?;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '/' => match chars.next() {
                Some('/') => out.push('.'),
                _ => return Err(MapError::LoneSlash),
            },
            '+' | '#' => return Err(MapError::MqttWildcard),
            c if c.is_ascii() && is_space(c as u8) => return Err(MapError::Whitespace),
            c => out.push(c),
        }
    }
    Ok(())
}

/// Maps the tokens of `subject`, `wildcards` deciding whether `*`/`>` become `+`/`#`.
fn subject_to_mqtt(subject: &[u8], wildcards: bool) -> Result<String, MapError> {
    if subject.is_empty() {
        return Err(TopicError::Empty.into());
    }
    let mut out = String::with_capacity(subject.len());
    let mut tokens = subject.split(|&b| b == b'.').peekable();
    let mut levels = 0;
    while let Some(token) = tokens.next() {
        levels += 1;
        if levels > MAX_LEVELS {
            return Err(TopicError::TooManyLevels.into());
        }
        if levels > 1 {
            out.push('/');
        }
        match token {
            b"*" if wildcards => out.push('+'),
            b">" if wildcards => {
                if tokens.peek().is_some() {
                    return Err(MapError::FwcNotLast);
                }
                out.push('#');
            }
            _ => push_level(token, &mut out)?,
        }
    }
    Ok(out)
}

/// A NATS subject a message is published to (or a reply subject) -> MQTT topic name.
pub fn subject_to_topic(subject: &[u8]) -> Result<String, MapError> {
    let topic = subject_to_mqtt(subject, false)?;
    validate_name(&topic)?;
    Ok(topic)
}

/// A NATS subscription subject (wildcards allowed) -> MQTT topic filter.
pub fn subject_to_filter(subject: &[u8]) -> Result<String, MapError> {
    let filter = subject_to_mqtt(subject, true)?;
    validate_filter(&filter)?;
    Ok(filter)
}

/// One MQTT level -> one NATS token, appended to `out`.
fn push_token(level: &str, out: &mut String) -> Result<(), MapError> {
    match level {
        "" => {
            out.push('/');
            return Ok(());
        }
        "*" | ">" => return Err(MapError::NatsWildcard),
        _ => {}
    }
    for c in level.chars() {
        match c {
            '.' => out.push_str("//"),
            '+' | '#' => return Err(MapError::MqttWildcard),
            c if c.is_ascii() && is_space(c as u8) => return Err(MapError::Whitespace),
            c => out.push(c),
        }
    }
    Ok(())
}

/// An MQTT topic name (an event's canonical topic) -> the NATS subject subscribers see.
pub fn topic_to_subject(topic: &str) -> Result<String, MapError> {
    if topic.is_empty() {
        return Err(TopicError::Empty.into());
    }
    let mut out = String::with_capacity(topic.len() + 4);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_token(level, &mut out)?;
    }
    Ok(out)
}

/// An MQTT topic filter -> NATS subscription subject (`+` -> `*`, `#` -> `>`).
pub fn filter_to_subject(filter: &str) -> Result<String, MapError> {
    validate_filter(filter)?;
    let mut out = String::with_capacity(filter.len() + 4);
    for (i, level) in filter.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        match level {
            "+" => out.push('*'),
            "#" => out.push('>'),
            _ => push_token(level, &mut out)?,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<String, MapError> {
        subject_to_topic(s.as_bytes())
    }

    #[test]
    fn plain_levels() {
        assert_eq!(t("sensors.temp.1").unwrap(), "sensors/temp/1");
        assert_eq!(
            topic_to_subject("sensors/temp/1").unwrap(),
            "sensors.temp.1"
        );
        assert_eq!(t("_INBOX.abc.7").unwrap(), "_INBOX/abc/7");
        assert_eq!(t("$SYS.x").unwrap(), "$SYS/x");
        assert_eq!(t("foo*.>bar").unwrap(), "foo*/>bar");
    }

    /// The vectors nats-server's conversion produces (server/mqtt.go), both ways.
    #[test]
    fn nats_server_vectors() {
        for (mqtt, nats) in [
            ("foo", "foo"),
            ("foo/bar", "foo.bar"),
            ("/foo", "/.foo"),
            ("foo/", "foo./"),
            ("foo//bar", "foo./.bar"),
            ("foo///bar", "foo././.bar"),
            ("/", "/./"),
            ("//", "/././"),
            ("foo.bar", "foo//bar"),
            ("foo.bar/baz", "foo//bar.baz"),
            ("a/./b", "a.//.b"),
            ("./a", "//.a"),
            ("a./", "a//./"),
            ("/.", "/.//"),
            ("a..b", "a////b"),
        ] {
            assert_eq!(topic_to_subject(mqtt).unwrap(), nats, "{mqtt} -> NATS");
            assert_eq!(t(nats).unwrap(), mqtt, "{nats} -> MQTT");
        }
    }

    #[test]
    fn filters() {
        for (nats, mqtt) in [
            ("sensors.*.1", "sensors/+/1"),
            ("sensors.>", "sensors/#"),
            (">", "#"),
            ("*", "+"),
            ("*./.>", "+//#"),
            ("a//b.*", "a.b/+"),
        ] {
            assert_eq!(subject_to_filter(nats.as_bytes()).unwrap(), mqtt);
            assert_eq!(filter_to_subject(mqtt).unwrap(), nats);
        }
        assert_eq!(subject_to_filter(b"a.>.b"), Err(MapError::FwcNotLast));
        assert_eq!(subject_to_filter(b"a..b"), Err(MapError::EmptyToken));
        assert_eq!(subject_to_filter(b"a.b+"), Err(MapError::MqttWildcard));
    }

    #[test]
    fn unmappable_subjects() {
        assert_eq!(t(""), Err(MapError::Topic(TopicError::Empty)));
        assert_eq!(t("a..b"), Err(MapError::EmptyToken));
        assert_eq!(t("a."), Err(MapError::EmptyToken));
        assert_eq!(t("a.*"), Err(MapError::NatsWildcard));
        assert_eq!(t(">"), Err(MapError::NatsWildcard));
        assert_eq!(t("a+b"), Err(MapError::MqttWildcard));
        assert_eq!(t("a.#"), Err(MapError::MqttWildcard));
        assert_eq!(t("a/b"), Err(MapError::LoneSlash));
        assert_eq!(t("///"), Err(MapError::LoneSlash));
        assert_eq!(t("/"), Err(MapError::Topic(TopicError::Empty)));
        assert_eq!(t("a b"), Err(MapError::Whitespace));
        assert_eq!(t("a\0b"), Err(MapError::Topic(TopicError::Nul)));
        assert_eq!(subject_to_topic(b"a.\xff"), Err(MapError::NotUtf8));
        let deep = vec!["x"; MAX_LEVELS + 1].join(".");
        assert_eq!(t(&deep), Err(MapError::Topic(TopicError::TooManyLevels)));
        assert!(t(&vec!["x"; MAX_LEVELS].join(".")).is_ok());
    }

    #[test]
    fn unmappable_topics() {
        assert_eq!(topic_to_subject("a/*"), Err(MapError::NatsWildcard));
        assert_eq!(topic_to_subject(">/a"), Err(MapError::NatsWildcard));
        assert_eq!(topic_to_subject("a b"), Err(MapError::Whitespace));
        assert_eq!(topic_to_subject("a/\tb"), Err(MapError::Whitespace));
        assert_eq!(
            topic_to_subject(""),
            Err(MapError::Topic(TopicError::Empty))
        );
        // Literal '*' inside a longer level is fine for NATS too.
        assert_eq!(topic_to_subject("a*/b>").unwrap(), "a*.b>");
    }

    #[test]
    fn round_trip_is_exact() {
        // Every topic built from these levels maps to NATS and back unchanged.
        let levels = ["", "a", ".", "a.b", "..", "x-y_z", "$SYS", "ü"];
        for a in levels {
            for b in levels {
                for c in levels {
                    let topic = format!("{a}/{b}/{c}");
                    let subject = topic_to_subject(&topic).unwrap();
                    assert_eq!(t(&subject).unwrap(), topic, "via {subject}");
                }
            }
        }
        assert_eq!(crate::topic::level_count("a//b"), 3);
        assert_eq!(crate::topic::level_count("a"), 1);
    }
}
