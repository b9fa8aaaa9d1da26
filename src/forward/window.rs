//! The in-flight window of one upstream link, and the cursor it implies.
//!
//! Pure bookkeeping, no I/O, so the cursor rule can be tested exhaustively:
//! the cursor is the highest seq such that every record at or below it that was sent
//! on this link has been acknowledged. It is what gets persisted, so after a reconnect or
//! a crash the link resends from `cursor + 1`: at most the window (plus what was acked
//! since the last persisted cursor) is sent twice, and nothing is skipped.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    seq: u64,
    acked: bool,
}

/// The seqs one upstream publish carries: one event (`first == last`), or a packed batch
/// of the events this link sent from `first` to `last` (never a seq it did not send: the
/// window holds only those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: u64,
    pub last: u64,
}

impl Span {
    pub fn one(seq: u64) -> Span {
        Span {
            first: seq,
            last: seq,
        }
    }
}

#[derive(Debug)]
pub struct Window {
    /// Everything at or below this is acknowledged (or not ours).
    cursor: u64,
    /// Highest seq read from the store (sent or skipped as not ours).
    scanned: u64,
    /// Sent and not yet folded into the cursor, in seq order.
    inflight: VecDeque<Sent>,
    /// Handed to the client library, waiting to learn its packet id, in send order.
    awaiting_pkid: VecDeque<(Span, u8)>,
    by_pkid: HashMap<u16, Span>,
}

impl Window {
    pub fn new(cursor: u64) -> Window {
        Window {
            cursor,
            scanned: cursor,
            inflight: VecDeque::new(),
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
        }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// `seq` was handed to the client at `qos`. Seqs must be pushed in increasing order.
    pub fn push(&mut self, seq: u64, qos: u8) {
        debug_assert!(seq > self.scanned);
        self.inflight.push_back(Sent { seq, acked: false });
        self.awaiting_pkid.push_back((Span::one(seq), qos));
        self.scanned = seq;
    }

    /// The events `seqs` (increasing, above the scan position) were handed to the client
    /// in one packed publish at `qos`.
    pub fn push_batch(&mut self, seqs: &[u64], qos: u8) {
        let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
            return;
        };
        debug_assert!(*first > self.scanned);
        for seq in seqs {
            self.inflight.push_back(Sent {
                seq: *seq,
                acked: false,
            });
        }
        self.awaiting_pkid.push_back((
            Span {
                first: *first,
                last: *last,
            },
            qos,
        ));
        self.scanned = *last;
    }

    /// The seqs in flight within `span` (a packed publish's events).
    pub fn seqs_in(&self, span: Span) -> Vec<u64> {
        let from = self.inflight.partition_point(|s| s.seq < span.first);
        self.inflight
            .iter()
            .skip(from)
            .take_while(|s| s.seq <= span.last)
            .map(|s| s.seq)
            .collect()
    }

    /// `seq` was read and is done with without being sent (moved to the dead letters).
    /// Seqs must be pushed in increasing order.
    pub fn settled(&mut self, seq: u64) {
        debug_assert!(seq > self.scanned);
        self.inflight.push_back(Sent { seq, acked: true });
        self.scanned = seq;
        self.fold();
    }

    /// The store was read up to `seq`; records not pushed were not for this link.
    pub fn scanned_to(&mut self, seq: u64) {
        if seq > self.scanned {
            self.scanned = seq;
        }
        self.fold();
    }

    /// The client wrote the next publish with packet id `pkid` (0 for QoS 0, which
    /// counts as delivered once written).
    pub fn written(&mut self, pkid: u16) {
        let Some((span, qos)) = self.awaiting_pkid.pop_front() else {
            return;
        };
        if qos == 0 {
            self.mark(span);
        } else {
            self.by_pkid.insert(pkid, span);
        }
    }

    /// The upstream acknowledged `pkid`. Returns false for an id we do not know.
    #[cfg(test)]
    pub fn acked(&mut self, pkid: u16) -> bool {
        match self.answered(pkid) {
            Some(span) => {
                self.mark(span);
                true
            }
            None => false,
        }
    }

    /// The upstream answered `pkid` (an acknowledgement that may be a refusal): the span
    /// it was for, which stays in flight until [`Window::mark`] (delivered, or set aside
    /// as a dead letter) or [`Window::resend`]. None for an id we do not know.
    pub fn answered(&mut self, pkid: u16) -> Option<Span> {
        self.by_pkid.remove(&pkid)
    }

    /// `span`, in flight and answered, was handed to the client again at `qos`.
    pub fn resend(&mut self, span: Span, qos: u8) {
        self.awaiting_pkid.push_back((span, qos));
    }

    /// Every event of `span` is done with: acknowledged, or moved to the dead letters.
    pub fn mark(&mut self, span: Span) {
        let from = self.inflight.partition_point(|s| s.seq < span.first);
        for s in self.inflight.iter_mut().skip(from) {
            if s.seq > span.last {
                break;
            }
            s.acked = true;
        }
        self.fold();
    }

    fn fold(&mut self) {
        while let Some(front) = self.inflight.front() {
            if !front.acked {
                break;
            }
            self.cursor = front.seq;
            self.inflight.pop_front();
        }
        self.cursor = match self.inflight.front() {
            Some(front) => front.seq - 1,
            None => self.scanned,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_waits_for_the_oldest_ack() {
        let mut w = Window::new(10);
        for seq in [11, 12, 14] {
            w.push(seq, 1);
        }
        w.scanned_to(15); // 13 and 15 were not ours
        for pkid in [1, 2, 3] {
            w.written(pkid);
        }
        assert_eq!(w.cursor(), 10);
        assert!(w.acked(2));
        assert_eq!(w.cursor(), 10);
        assert!(w.acked(1));
        assert_eq!(w.cursor(), 13);
        assert!(w.acked(3));
        assert_eq!(w.cursor(), 15);
        assert!(!w.acked(3));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn qos0_counts_when_written() {
        let mut w = Window::new(0);
        w.push(1, 0);
        w.push(2, 1);
        w.written(0);
        assert_eq!(w.cursor(), 1);
        w.written(7);
        assert!(w.acked(7));
        assert_eq!((w.cursor(), w.scanned(), w.len()), (2, 2, 0));
    }

    #[test]
    fn a_refused_event_holds_the_cursor_until_resent_and_marked() {
        let mut w = Window::new(0);
        w.push(1, 1);
        w.push(2, 1);
        w.written(5);
        w.written(6);
        assert_eq!(w.answered(5), Some(Span::one(1))); // refused
        assert!(w.acked(6));
        assert_eq!(w.cursor(), 0);
        w.resend(Span::one(1), 1);
        w.written(7);
        assert_eq!(w.answered(7), Some(Span::one(1))); // refused again: dead-lettered
        assert_eq!(w.cursor(), 0);
        w.mark(Span::one(1));
        assert_eq!((w.cursor(), w.len()), (2, 0));
        assert_eq!(w.answered(7), None);
    }

    #[test]
    fn nothing_in_flight_follows_the_scan() {
        let mut w = Window::new(5);
        w.scanned_to(9);
        assert_eq!(w.cursor(), 9);
        w.scanned_to(3);
        assert_eq!(w.cursor(), 9);
    }

    #[test]
    fn a_packed_publish_acknowledges_all_its_events_at_once() {
        let mut w = Window::new(0);
        w.push_batch(&[1, 2, 4], 1); // 3 was not ours
        w.push(5, 1);
        w.push_batch(&[6, 7], 1);
        w.scanned_to(8);
        for pkid in [1, 2, 3] {
            w.written(pkid);
        }
        let first = Span { first: 1, last: 4 };
        assert_eq!(w.seqs_in(first), vec![1, 2, 4]);
        assert!(w.acked(3));
        assert_eq!(w.cursor(), 0, "the batch 6..=7 waits for 1..=5");
        assert!(w.acked(1));
        assert_eq!(w.cursor(), 4);
        assert!(w.acked(2));
        assert_eq!((w.cursor(), w.len()), (8, 0));
    }
}
