//! Retained messages: the last retained publish per topic, bounded in count
//! (`mqtt.max_retained`) and in bytes (`mqtt.max_retained_bytes`, and never more than the
//! budget's retained share, [`crate::budget::Budget::retained`]), mirrored to the store
//! so a restart keeps them. The store holds exactly the set held here, so the byte limit
//! is its disk quota too.

use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::{RetainedChange, StoredEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// What one retained message counts against the byte limit: an upper bound of both what
/// it holds in memory ([`Event::weight`]: its fields and the event itself) and what it
/// takes in the store (its record, which repeats the topic, payload and user properties
/// with at most this many bytes of framing, plus the topic again as the key). One
/// number for both, so the one limit bounds the memory and the disk.
pub fn size(e: &Event) -> usize {
    /// Framing of a record besides its user properties: format byte, varint timestamp,
    /// length prefixes, qos / retain / origin, destination mask.
    const RECORD: usize = 40;
    /// Framing of one user property in a record: two length prefixes.
    const PROPERTY: usize = 10;
    e.weight() + e.topic.len() + RECORD + PROPERTY * e.user_properties.len()
}

/// Why a retained publish was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The configuration key of the limit it did not fit.
    pub key: &'static str,
    /// That limit (for the byte limit: the smaller of the key and the budget's share).
    pub max: usize,
    /// The message's [`size`].
    pub size: usize,
}

/// What [`Retained::update`] did.
pub struct Update {
    /// The change to persist, if the stored set changed.
    pub change: Option<RetainedChange>,
    /// Set when the message was not kept (counted already; the caller logs it).
    pub refused: Option<Refused>,
}

#[derive(Default)]
struct Table {
    map: HashMap<Arc<str>, Arc<Event>>,
    /// Sum of [`size`] over `map`.
    bytes: usize,
    /// ferry's own `$SYS` messages (`broker/sys.rs`): apart from the clients' retained
    /// messages, so they take none of their room and are never stored. Bounded by what
    /// ferry publishes: 8 topics and 3 per upstream.
    status: HashMap<Arc<str>, Arc<Event>>,
}

pub struct Retained {
    table: RwLock<Table>,
    /// `mqtt.max_retained`; a reload may change it.
    max: AtomicUsize,
    /// `mqtt.max_retained_bytes`, never more than `share`; a reload may change it.
    max_bytes: AtomicUsize,
    /// The budget's share for retained messages.
    share: usize,
    metrics: Arc<Metrics>,
}

impl Retained {
    /// At most `share` bytes of messages together (the budget's share), and no messages
    /// at all until [`Retained::set_limits`].
    pub fn new(share: usize, metrics: Arc<Metrics>) -> Retained {
        Retained {
            table: RwLock::new(Table::default()),
            max: AtomicUsize::new(0),
            max_bytes: AtomicUsize::new(share),
            share,
            metrics,
        }
    }

    /// `mqtt.max_retained` messages and `mqtt.max_retained_bytes` (at most the budget's
    /// share): at start and at a reload. Lowered below what the table holds, it deletes
    /// nothing; new messages are refused until the table is under the limits.
    pub fn set_limits(&self, cfg: &crate::config::MqttConfig) {
        let bytes = usize::try_from(cfg.max_retained_bytes.0).unwrap_or(usize::MAX);
        self.max_bytes
            .store(bytes.min(self.share), Ordering::Release);
        self.max.store(cfg.max_retained, Ordering::Release);
    }

    /// The byte limit in force.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes.load(Ordering::Acquire)
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::Acquire)
    }

    /// Applies a publish with the RETAIN flag: an empty payload clears the topic, anything
    /// else replaces it. A replacement frees the old message's bytes first; when the new
    /// one then does not fit, the topic is left with none (the old one is no longer
    /// what the publisher says is current). A message that does not fit the count or
    /// the byte limit is not kept, and counted in `ferry_limit_refusals_total`.
    pub fn update(&self, event: &Arc<Event>) -> Update {
        let size = size(event);
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let old = t.map.remove(&event.topic);
        if let Some(old) = &old {
            t.bytes = t.bytes.saturating_sub(self::size(old));
        }
        let deleted = || RetainedChange::Delete(event.topic.clone());
        let update = if event.payload.is_empty() {
            Update {
                change: old.is_some().then(deleted),
                refused: None,
            }
        } else if old.is_none() && t.map.len() >= self.max() {
            Update {
                change: None,
                refused: Some(Refused {
                    key: "mqtt.max_retained",
                    max: self.max(),
                    size,
                }),
            }
        } else if t.bytes.saturating_add(size) > self.max_bytes() {
            Update {
                change: old.is_some().then(deleted),
                refused: Some(Refused {
                    key: "mqtt.max_retained_bytes",
                    max: self.max_bytes(),
                    size,
                }),
            }
        } else {
            t.map.insert(event.topic.clone(), event.clone());
            t.bytes += size;
            Update {
                change: Some(RetainedChange::Put(event.clone())),
                refused: None,
            }
        };
        if update.refused.is_some() {
            self.metrics.limits.retained.inc();
        }
        self.publish(&t);
        update
    }

    /// Retained messages whose topic matches `filter`, oldest topic first is not promised.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Event>> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        let status = t.status.values().filter(|_| filter.starts_with('$'));
        t.map
            .values()
            .chain(status)
            .filter(|e| crate::topic::matches(filter, &e.topic))
            .cloned()
            .collect()
    }

    /// Keeps a `$SYS` status message as its topic's retained one (see `Table::status`).
    pub fn set_status(&self, event: &Arc<Event>) {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        t.status.insert(event.topic.clone(), event.clone());
    }

    /// Loads what the store kept (at startup), in the order the messages were received,
    /// each only if it fits the limits as a live publish would: what the limits no longer
    /// allow (they were lowered) is left out, and its topics returned for the caller to
    /// delete from the store.
    pub fn restore(&self, mut events: Vec<StoredEvent>) -> Vec<Arc<str>> {
        events.sort_by(|a, b| (a.received_ms, &a.topic).cmp(&(b.received_ms, &b.topic)));
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let mut left_out = Vec::new();
        for s in events {
            let mut e = Event::new(
                s.topic.as_str().into(),
                s.payload,
                s.qos,
                true,
                crate::event::Origin::from_u8(s.origin),
            );
            e.received_ms = s.received_ms;
            e.user_properties = s.user_properties;
            let size = size(&e);
            let fits = t.map.len() < self.max() && t.bytes.saturating_add(size) <= self.max_bytes();
            if fits && !t.map.contains_key(&e.topic) {
                t.bytes += size;
                t.map.insert(e.topic.clone(), Arc::new(e));
            } else {
                left_out.push(e.topic);
            }
        }
        self.publish(&t);
        left_out
    }

    fn publish(&self, t: &Table) {
        self.metrics.retained.set(t.map.len() as i64);
        self.metrics.retained_bytes.set(t.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use bytes::Bytes;

    /// A table of at most `max` messages and `bytes` bytes.
    fn table(max: usize, bytes: usize, metrics: Arc<Metrics>) -> Retained {
        let r = Retained::new(bytes, metrics);
        r.set_limits(&crate::config::MqttConfig {
            max_retained: max,
            max_retained_bytes: crate::config::ByteSize(u64::MAX),
            ..Default::default()
        });
        r
    }

    fn ev(topic: &str, payload: &[u8]) -> Arc<Event> {
        Arc::new(Event::new(
            topic.into(),
            Bytes::copy_from_slice(payload),
            1,
            true,
            Origin::Mqtt,
        ))
    }

    fn put(r: &Retained, topic: &str, payload: &[u8]) -> Update {
        r.update(&ev(topic, payload))
    }

    fn is_put(u: &Update) -> bool {
        matches!(u.change, Some(RetainedChange::Put(_))) && u.refused.is_none()
    }

    fn is_delete(u: &Update) -> bool {
        matches!(u.change, Some(RetainedChange::Delete(_)))
    }

    fn topics(r: &Retained) -> Vec<String> {
        let mut got: Vec<String> = r
            .matching("#")
            .iter()
            .map(|e| e.topic.to_string())
            .collect();
        got.sort();
        got
    }

    #[test]
    fn set_clear_match_and_bound() {
        let r = table(2, usize::MAX, Arc::new(Metrics::default()));
        assert!(is_put(&put(&r, "a/1", b"x")));
        assert!(is_put(&put(&r, "a/2", b"y")));
        let full = put(&r, "a/3", b"z");
        assert!(full.change.is_none());
        assert_eq!(full.refused.map(|f| f.key), Some("mqtt.max_retained"));
        assert!(
            is_put(&put(&r, "a/1", b"x2")),
            "replacing is fine when full"
        );
        let mut got: Vec<String> = r
            .matching("a/+")
            .iter()
            .map(|e| e.topic.to_string())
            .collect();
        got.sort();
        assert_eq!(got, vec!["a/1", "a/2"]);
        assert!(is_delete(&put(&r, "a/1", b"")));
        let again = put(&r, "a/1", b"");
        assert!(again.change.is_none() && again.refused.is_none());
        assert_eq!(r.matching("#").len(), 1);
    }

    /// A reload lowers the count: what is held stays, and new topics are refused until
    /// the table is under the new limit; a raised limit takes new topics at once.
    #[test]
    fn lowered_limits_keep_what_is_held() {
        let r = table(3, usize::MAX, Arc::new(Metrics::default()));
        for t in ["a/1", "a/2", "a/3"] {
            assert!(is_put(&put(&r, t, b"x")));
        }
        let limits = |max| crate::config::MqttConfig {
            max_retained: max,
            max_retained_bytes: crate::config::ByteSize(u64::MAX),
            ..Default::default()
        };
        r.set_limits(&limits(1));
        assert_eq!(r.matching("#").len(), 3);
        assert_eq!(
            put(&r, "a/4", b"x").refused.map(|f| (f.key, f.max)),
            Some(("mqtt.max_retained", 1))
        );
        assert!(is_delete(&put(&r, "a/1", b"")));
        assert!(is_delete(&put(&r, "a/2", b"")));
        assert!(put(&r, "a/4", b"x").refused.is_some(), "one held, limit 1");
        r.set_limits(&limits(2));
        assert!(is_put(&put(&r, "a/4", b"x")));
    }

    /// The byte limit: what is held is the sum of the sizes of what is held; replacing
    /// frees the old message first, an empty payload frees it, and what does not fit is
    /// refused and counted (a refused replacement leaves the topic empty).
    #[test]
    fn bytes_are_accounted_on_put_replace_delete_and_refusal() {
        let metrics = Arc::new(Metrics::default());
        let kib = [7u8; 1024];
        let one = size(&ev("a/1", &kib));
        // Room for exactly three 1 KiB messages on topics of the same length.
        let r = table(100, 3 * one, metrics.clone());
        let held = || {
            (
                metrics.retained.get() as usize,
                metrics.retained_bytes.get() as usize,
            )
        };
        assert!(is_put(&put(&r, "a/1", &kib)));
        assert!(is_put(&put(&r, "a/2", &kib)));
        assert_eq!(held(), (2, 2 * one));

        // Replacing with the same size fits even when the rest is full.
        assert!(is_put(&put(&r, "a/3", &kib)));
        assert!(is_put(&put(&r, "a/3", &[9u8; 1024])));
        assert_eq!(held(), (3, 3 * one));

        // A new topic does not fit: refused, counted, nothing persisted.
        let refused = put(&r, "a/4", b"x");
        assert!(refused.change.is_none());
        let f = refused.refused.unwrap();
        assert_eq!((f.key, f.max), ("mqtt.max_retained_bytes", 3 * one));
        assert_eq!(f.size, size(&ev("a/4", b"x")));
        assert_eq!(metrics.limits.retained.get(), 1);
        assert_eq!(held(), (3, 3 * one));

        // A smaller replacement frees the difference, which then fits a small message.
        assert!(is_put(&put(&r, "a/1", b"small")));
        let small = size(&ev("a/1", b"small"));
        assert_eq!(held(), (3, 2 * one + small));
        assert!(is_put(&put(&r, "a/4", b"x")));
        let x = size(&ev("a/4", b"x"));
        assert_eq!(held(), (4, 2 * one + small + x));

        // A replacement that does not fit even with the old one freed: refused, and the
        // old one is deleted (in memory and, through the change, in the store).
        let too_big = put(&r, "a/2", &[1u8; 4096]);
        assert!(is_delete(&too_big));
        assert_eq!(
            too_big.refused.map(|f| f.key),
            Some("mqtt.max_retained_bytes")
        );
        assert_eq!(metrics.limits.retained.get(), 2);
        assert_eq!(topics(&r), ["a/1", "a/3", "a/4"]);
        assert_eq!(held(), (3, one + small + x));

        // An empty payload deletes and frees.
        assert!(is_delete(&put(&r, "a/3", b"")));
        assert_eq!(held(), (2, small + x));
        assert!(is_delete(&put(&r, "a/1", b"")));
        assert!(is_delete(&put(&r, "a/4", b"")));
        assert_eq!(held(), (0, 0));
        assert!(r.matching("#").is_empty());

        // All of it is free again.
        for t in ["a/1", "a/2", "a/3"] {
            assert!(is_put(&put(&r, t, &kib)));
        }
        assert_eq!(held(), (3, 3 * one));
        assert_eq!(metrics.limits.retained.get(), 2);
    }

    #[test]
    fn the_size_bounds_memory_and_the_stored_record() {
        let mut e = Event::new(
            "t".repeat(300).into(),
            Bytes::from_static(b"p"),
            1,
            true,
            Origin::Mqtt,
        );
        e.user_properties = (0..50).map(|i| (format!("k{i}"), String::new())).collect();
        let stored = crate::store::retained_cost(&e).unwrap();
        assert!(size(&e) >= stored as usize, "{} < {stored}", size(&e));
        assert!(size(&e) >= e.weight());
    }

    fn stored(topic: &str, payload: &[u8], received_ms: u64) -> StoredEvent {
        StoredEvent {
            seq: 0,
            received_ms,
            topic: topic.to_string(),
            payload: Bytes::copy_from_slice(payload),
            qos: 1,
            retain: true,
            origin: 0,
            dests: 0,
            user_properties: Vec::new(),
            routes: Default::default(),
        }
    }

    /// Lowered limits at startup: the oldest messages that fit are loaded, the rest are
    /// handed back to be deleted.
    #[test]
    fn restore_loads_only_what_fits_the_limits() {
        let metrics = Arc::new(Metrics::default());
        let one = size(&ev("b/1", &[0u8; 100]));
        let r = table(3, 2 * one, metrics.clone());
        let mut left_out = r.restore(vec![
            stored("b/3", &[0u8; 100], 3),
            stored("b/1", &[0u8; 100], 1),
            stored("b/2", &[0u8; 100], 2),
        ]);
        left_out.sort();
        assert_eq!(left_out, [Arc::<str>::from("b/3")]);
        assert_eq!(topics(&r), ["b/1", "b/2"]);
        assert_eq!(metrics.retained_bytes.get() as usize, 2 * one);

        let r = table(1, usize::MAX, metrics.clone());
        let left_out = r.restore(vec![stored("c/2", b"x", 2), stored("c/1", b"y", 1)]);
        assert_eq!(left_out, [Arc::<str>::from("c/2")]);
        assert_eq!(topics(&r), ["c/1"]);
        assert_eq!(metrics.retained.get(), 1);
    }
}
