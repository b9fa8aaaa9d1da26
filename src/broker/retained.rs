//! Retained messages: the last retained publish per topic, bounded by `mqtt.max_retained`,
//! mirrored to the store so a restart keeps them.

use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::{StateChange, StoredEvent};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub struct Retained {
    map: RwLock<HashMap<Arc<str>, Arc<Event>>>,
    max: usize,
    metrics: Arc<Metrics>,
}

impl Retained {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Retained {
        Retained {
            map: RwLock::new(HashMap::new()),
            max,
            metrics,
        }
    }

    /// Applies a publish with the RETAIN flag: an empty payload clears the topic, anything
    /// else replaces it. Returns the change to persist, or None when nothing changed
    /// (clearing an absent topic) or the table is full (logged and counted).
    pub fn update(&self, event: &Arc<Event>) -> Option<StateChange> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let change = if event.payload.is_empty() {
            map.remove(&event.topic)?;
            StateChange::DeleteRetained {
                topic: event.topic.clone(),
            }
        } else {
            if !map.contains_key(&event.topic) && map.len() >= self.max {
                self.metrics.retained_refused.inc();
                tracing::warn!(topic = %event.topic, max = self.max, "retained message not kept: mqtt.max_retained reached");
                return None;
            }
            map.insert(event.topic.clone(), event.clone());
            StateChange::PutRetained {
                event: event.clone(),
            }
        };
        self.metrics.retained.set(map.len() as i64);
        Some(change)
    }

    /// Retained messages whose topic matches `filter`, oldest topic first is not promised.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Event>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|e| crate::topic::matches(filter, &e.topic))
            .cloned()
            .collect()
    }

    /// Loads what the store kept (at startup).
    pub fn restore(&self, events: Vec<StoredEvent>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
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
            map.insert(e.topic.clone(), Arc::new(e));
        }
        self.metrics.retained.set(map.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use bytes::Bytes;

    fn ev(topic: &str, payload: &'static [u8]) -> Arc<Event> {
        Arc::new(Event::new(
            topic.into(),
            Bytes::from_static(payload),
            1,
            true,
            Origin::Mqtt,
        ))
    }

    #[test]
    fn set_clear_match_and_bound() {
        let r = Retained::new(2, Arc::new(Metrics::default()));
        assert!(matches!(
            r.update(&ev("a/1", b"x")),
            Some(StateChange::PutRetained { .. })
        ));
        assert!(matches!(
            r.update(&ev("a/2", b"y")),
            Some(StateChange::PutRetained { .. })
        ));
        assert!(r.update(&ev("a/3", b"z")).is_none(), "full");
        assert!(
            matches!(
                r.update(&ev("a/1", b"x2")),
                Some(StateChange::PutRetained { .. })
            ),
            "replacing is fine when full"
        );
        let mut got: Vec<String> = r
            .matching("a/+")
            .iter()
            .map(|e| e.topic.to_string())
            .collect();
        got.sort();
        assert_eq!(got, vec!["a/1", "a/2"]);
        assert!(matches!(
            r.update(&ev("a/1", b"")),
            Some(StateChange::DeleteRetained { .. })
        ));
        assert!(r.update(&ev("a/1", b"")).is_none());
        assert_eq!(r.matching("#").len(), 1);
    }
}
