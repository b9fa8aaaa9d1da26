//! Local delivery figures: how often publishers were held back for subscribers past
//! their high-water mark, and how often that wait ran out (`crate::broker::Hub` keeps
//! them).

use super::Counter;
use super::registry::{Family, Kind};

#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    /// Publishes that waited for a subscriber's queue to drain.
    pub stalls: Counter,
    /// Waits that ran out (`limits.publisher_stall`) with the queue still past its mark.
    pub stall_timeouts: Counter,
}

impl DeliveryMetrics {
    pub(super) const FAMILIES: &[Family<DeliveryMetrics>] = &[
        Family {
            name: "ferry_publisher_stalls_total",
            help: "Publishes held back while a subscriber they fed was past half its queue.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.stalls.get()),
        },
        Family {
            name: "ferry_publisher_stall_timeouts_total",
            help: "Publisher stalls that ran out (limits.publisher_stall) with the subscriber still behind.",
            kind: Kind::Counter,
            samples: |m, s| s.value(m.stall_timeouts.get()),
        },
    ];
}
