//! Turning a router delivery into MSG/HMSG bytes for one NATS client, without I/O.
//!
//! The event's canonical topic and response topic are mapped back to NATS subjects here;
//! events whose topic has no NATS form are skipped (the caller logs them).

use super::proto::{Headers, encode_hmsg, encode_msg, entry_encodable};
use super::session::{Deliver, Session};
use crate::event::Event;
use crate::router::Delivery;
use crate::topic::level_count;
use crate::topic::nats::{MapError, topic_to_subject};
use bytes::BytesMut;
use std::sync::Arc;

/// What became of one delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Encoded. `remove`: the subscription reached its max; drop it from the router.
    Yes { remove: Option<(Arc<str>, u64)> },
    /// Not for this client any more (unsubscribed, or `>` semantics).
    Skipped,
    /// The topic cannot be expressed as a NATS subject.
    Unmappable(MapError),
}

/// Encodes `d` into `out` if the session still wants it.
pub fn encode(session: &mut Session, d: &Delivery, out: &mut BytesMut) -> Written {
    let event = &d.event;
    let subject = match topic_to_subject(&event.topic) {
        Ok(s) => s,
        Err(e) => return Written::Unmappable(e),
    };
    let (sid, remove) = match session.deliver(d.tag, level_count(&event.topic)) {
        Deliver::Yes { sid, remove } => (sid, remove),
        Deliver::No => return Written::Skipped,
    };
    // A response topic without NATS form is left out: the message still arrives, it
    // just cannot be answered from NATS.
    let reply = event
        .response_topic
        .as_deref()
        .and_then(|t| topic_to_subject(t).ok());
    let reply = reply.as_deref().map(str::as_bytes);
    match header_block(session, event) {
        Some(block) => encode_hmsg(subject.as_bytes(), &sid, reply, &block, &event.payload, out),
        None => encode_msg(subject.as_bytes(), &sid, reply, &event.payload, out),
    }
    Written::Yes { remove }
}

/// The event's metadata as a NATS header block, for clients that negotiated headers.
/// Pairs that cannot be encoded (possible for MQTT user properties) are left out.
fn header_block(session: &Session, event: &Event) -> Option<BytesMut> {
    if !session.headers || event.user_properties.is_empty() {
        return None;
    }
    let entries: Vec<(String, String)> = event
        .user_properties
        .iter()
        .filter(|(k, v)| entry_encodable(k, v))
        .cloned()
        .collect();
    if entries.is_empty() {
        return None;
    }
    let headers = Headers {
        status: None,
        description: None,
        entries,
    };
    let mut block = BytesMut::new();
    headers.encode(&mut block).ok()?;
    Some(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use crate::nats::proto::ConnectOptions;
    use bytes::Bytes;

    fn delivery(topic: &str, tag: u64, props: &[(&str, &str)], reply: Option<&str>) -> Delivery {
        let mut e = Event::new(
            topic.into(),
            Bytes::from_static(b"hi"),
            0,
            false,
            Origin::Mqtt,
        );
        e.user_properties = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.response_topic = reply.map(Arc::from);
        let mut d = Delivery::new(Arc::new(e), 0);
        d.tag = tag;
        d
    }

    fn session(headers: bool) -> Session {
        let mut s = Session::new(10, 2);
        let opts = ConnectOptions {
            headers,
            ..ConnectOptions::default()
        };
        s.connect(opts).unwrap();
        s.subscribe(b"sensors.>", None, b"7").unwrap();
        s
    }

    #[test]
    fn msg_with_mapped_subject_and_reply() {
        let mut s = session(false);
        let mut out = BytesMut::new();
        let d = delivery("sensors/a.b/1", 1, &[("k", "v")], Some("_INBOX/x/1"));
        assert_eq!(encode(&mut s, &d, &mut out), Written::Yes { remove: None });
        assert_eq!(&out[..], b"MSG sensors.a//b.1 7 _INBOX.x.1 2\r\nhi\r\n");
    }

    #[test]
    fn hmsg_when_headers_negotiated() {
        let mut s = session(true);
        let mut out = BytesMut::new();
        let d = delivery(
            "sensors/t",
            1,
            &[("A", "1"), ("bad key", "x"), ("B", "2")],
            None,
        );
        encode(&mut s, &d, &mut out);
        assert_eq!(
            &out[..],
            b"HMSG sensors.t 7 24 26\r\nNATS/1.0\r\nA: 1\r\nB: 2\r\n\r\nhi\r\n"
        );
    }

    #[test]
    fn unmappable_and_skipped() {
        let mut s = session(false);
        let mut out = BytesMut::new();
        let d = delivery("sensors/*", 1, &[], None);
        assert_eq!(
            encode(&mut s, &d, &mut out),
            Written::Unmappable(MapError::NatsWildcard)
        );
        // `sensors.>` does not match `sensors` itself, though MQTT `sensors/#` does.
        assert_eq!(
            encode(&mut s, &delivery("sensors", 1, &[], None), &mut out),
            Written::Skipped
        );
        assert_eq!(
            encode(&mut s, &delivery("sensors/x", 99, &[], None), &mut out),
            Written::Skipped
        );
        assert!(out.is_empty());
    }
}
