//! Local delivery figures: how often publishers were held back for subscribers past
//! their high-water mark, and how often that wait ran out (`crate::broker::Hub` keeps
//! them).

use super::Counter;
use std::fmt::Write;

#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    /// Publishes that waited for a subscriber's queue to drain.
    pub stalls: Counter,
    /// Waits that ran out (`limits.publisher_stall`) with the queue still past its mark.
    pub stall_timeouts: Counter,
}

impl DeliveryMetrics {
    pub(super) fn render(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP ferry_publisher_stalls_total Publishes held back while a subscriber they fed was past half its queue.\n\
             # TYPE ferry_publisher_stalls_total counter\nferry_publisher_stalls_total {}\n\
             # HELP ferry_publisher_stall_timeouts_total Publisher stalls that ran out (limits.publisher_stall) with the subscriber still behind.\n\
             # TYPE ferry_publisher_stall_timeouts_total counter\nferry_publisher_stall_timeouts_total {}",
            self.stalls.get(),
            self.stall_timeouts.get()
        );
    }
}
