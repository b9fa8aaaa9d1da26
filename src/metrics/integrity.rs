//! What the store set aside: records moved to the quarantine because they were damaged,
//! and events upstreams refused, moved to the dead-letter table. Both tables have a disk
//! quota; what their quota pushed out is counted too, so nothing leaves unseen.

use super::{Counter, Gauge};
use std::collections::BTreeMap;
use std::fmt::Write;
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

    pub(super) fn render(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP ferry_store_quarantined Damaged records moved to the store's quarantine table.\n\
             # TYPE ferry_store_quarantined gauge\n\
             ferry_store_quarantined {}\n\
             # HELP ferry_store_quarantine_dropped_total Quarantine entries dropped (oldest first) to stay within store.quarantine_max_bytes.\n\
             # TYPE ferry_store_quarantine_dropped_total counter\n\
             ferry_store_quarantine_dropped_total {}\n\
             # HELP ferry_store_dead_letters Events in the dead-letter table (refused by an upstream max_attempts times).\n\
             # TYPE ferry_store_dead_letters gauge\n\
             ferry_store_dead_letters {}\n\
             # HELP ferry_store_dead_letter_bytes Bytes the dead-letter table is counted for against store.dead_letter_max_bytes.\n\
             # TYPE ferry_store_dead_letter_bytes gauge\n\
             ferry_store_dead_letter_bytes {}\n\
             # HELP ferry_store_dead_letters_dropped_total Dead letters dropped (oldest first) to stay within store.dead_letter_max_bytes.\n\
             # TYPE ferry_store_dead_letters_dropped_total counter\n\
             ferry_store_dead_letters_dropped_total {}\n\
             # HELP ferry_upstream_dead_letters_total Events moved to the dead-letter table, by upstream and reason.\n\
             # TYPE ferry_upstream_dead_letters_total counter",
            self.quarantined.get(),
            self.quarantine_dropped.get(),
            self.dead_letters.get(),
            self.dead_letter_bytes.get(),
            self.dead_letters_dropped.get(),
        );
        let moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        for ((upstream, reason), n) in moved.iter() {
            let _ = writeln!(
                s,
                "ferry_upstream_dead_letters_total{{upstream=\"{upstream}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
}
