//! What the store set aside: records moved to the quarantine because they were damaged,
//! and events upstreams refused, moved to the dead-letter table. Both tables have a disk
//! quota; what their quota pushed out is counted too, so nothing leaves unseen.

use super::registry::{Family, Kind};
use super::{Counter, Gauge};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct IntegrityMetrics {
    /// Entries in the quarantine table.
    pub quarantined: Gauge,
    /// Quarantine entries dropped, oldest first, to stay within `store.quarantine_max_bytes`.
    pub quarantine_dropped: Counter,
    /// Rows in the dead-letter table and the bytes they are counted for.
    pub dead_letters: Gauge,
    pub dead_letter_bytes: Gauge,
    /// Dead letters dropped, oldest first, to stay within `store.dead_letter_max_bytes`.
    pub dead_letters_dropped: Counter,
    /// Events moved to the dead-letter table, by (upstream, reason). Bounded: upstreams
    /// are at most 64 and reasons are the few MQTT reason codes plus "too_large".
    moved: Mutex<BTreeMap<(String, String), u64>>,
}

impl IntegrityMetrics {
    /// One event of `upstream` was dead-lettered for `reason`.
    pub fn dead_lettered(&self, upstream: &str, reason: &str) {
        let mut moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        *moved
            .entry((upstream.to_string(), reason.to_string()))
            .or_default() += 1;
    }

    /// Events of `upstream` dead-lettered so far, every reason together.
    pub fn dead_lettered_total(&self, upstream: &str) -> u64 {
        let moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        moved
            .iter()
            .filter(|((u, _), _)| u == upstream)
            .map(|(_, n)| n)
            .sum()
    }

    pub(super) const FAMILIES: &[Family<IntegrityMetrics>] = &[
        Family {
            name: "ferry_store_quarantined",
            help: "Damaged records moved to the store's quarantine table.",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.quarantined.get()),
        },
        Family {
            name: "ferry_store_quarantine_dropped_total",
            help: "Quarantine entries dropped (oldest first) to stay within store.quarantine_max_bytes.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.quarantine_dropped.get()),
        },
        Family {
            name: "ferry_store_dead_letters",
            help: "Events in the dead-letter table (refused by an upstream max_attempts times).",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.dead_letters.get()),
        },
        Family {
            name: "ferry_store_dead_letter_bytes",
            help: "Bytes the dead-letter table is counted for against store.dead_letter_max_bytes.",
            kind: Kind::Gauge,
            samples: |m, s| s.value(m.dead_letter_bytes.get()),
        },
        Family {
            name: "ferry_store_dead_letters_dropped_total",
            help: "Dead letters dropped (oldest first) to stay within store.dead_letter_max_bytes.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.dead_letters_dropped.get()),
        },
        Family {
            name: "ferry_upstream_dead_letters_total",
            help: "Events moved to the dead-letter table, by upstream and reason.",
            kind: Kind::Counter,
            samples: |m, s| {
                let moved = m.moved.lock().unwrap_or_else(|e| e.into_inner());
                for ((upstream, reason), n) in moved.iter() {
                    s.labeled(&[("upstream", upstream), ("reason", reason)], n);
                }
            },
        },
    ];
}
