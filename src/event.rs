//! The event: one published message as it flows through ferry, whatever protocol brought it.
//!
//! Events are shared (`Arc<Event>`) between the router's fan-out, the store writer and the
//! sessions that deliver them, so a payload is never copied after it leaves the read buffer.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which listener accepted an event. Kept in the store so an operator can tell where a
/// forwarded event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Mqtt,
    Nats,
}

impl Origin {
    pub fn as_u8(self) -> u8 {
        match self {
            Origin::Mqtt => 0,
            Origin::Nats => 1,
        }
    }

    pub fn from_u8(v: u8) -> Origin {
        if v == 1 { Origin::Nats } else { Origin::Mqtt }
    }
}

/// A published message in ferry's canonical form.
///
/// `topic` is always the MQTT form (levels separated by `/`): NATS subjects are mapped
/// into it on ingest, so one trie and one set of forwarding filters serve both protocols.
#[derive(Clone, Debug)]
pub struct Event {
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// The QoS the publisher used (0, 1 or 2); deliveries are downgraded per subscription.
    pub qos: u8,
    pub retain: bool,
    pub origin: Origin,
    /// Wall-clock milliseconds since the Unix epoch when ferry accepted the event.
    pub received_ms: u64,
    /// Key/value metadata: MQTT 5 user properties or NATS headers. Empty for most events,
    /// so it costs one empty Vec.
    pub user_properties: Vec<(String, String)>,
    /// Where replies go, in canonical (MQTT) form: the NATS reply subject or the MQTT 5
    /// response topic. Subscribers see it translated into their own protocol.
    pub response_topic: Option<Arc<str>>,
    /// MQTT 5 correlation data, passed through untouched.
    pub correlation_data: Option<Bytes>,
    /// MQTT 5 content type and payload format indicator, passed through.
    pub content_type: Option<Arc<str>>,
    pub payload_format: Option<u8>,
    /// Wall-clock ms after which the event must not be delivered (MQTT 5 message expiry).
    pub expires_ms: Option<u64>,
}

impl Event {
    pub fn new(topic: Arc<str>, payload: Bytes, qos: u8, retain: bool, origin: Origin) -> Event {
        Event {
            topic,
            payload,
            qos,
            retain,
            origin,
            received_ms: now_ms(),
            user_properties: Vec::new(),
            response_topic: None,
            correlation_data: None,
            content_type: None,
            payload_format: None,
            expires_ms: None,
        }
    }

    /// Bytes this event holds on the heap, for budgets and metrics.
    pub fn weight(&self) -> usize {
        self.topic.len()
            + self.payload.len()
            + self
                .user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + self.response_topic.as_ref().map_or(0, |t| t.len())
            + self.correlation_data.as_ref().map_or(0, |c| c.len())
            + 96
    }
}

impl Event {
    /// Seconds of life left at `now_ms` (rounded up), None when it never expires,
    /// Some(0) when it has expired.
    pub fn remaining_secs(&self, now: u64) -> Option<u32> {
        self.expires_ms.map(|t| {
            let ms = t.saturating_sub(now);
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
