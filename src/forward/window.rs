//! The in-flight window of one upstream link, and the cursors it implies.
//!
//! Pure bookkeeping, no I/O, so the cursor rule can be tested exhaustively. A link has
//! one lane per priority its rules use (`forward::lanes`), each with its own cursor: the
//! highest seq such that every record at or below it that was sent on that lane has been
//! acknowledged. The cursors are what gets persisted, so after a reconnect or a crash
//! each lane resends from `cursor + 1`: at most the window (plus what was acked since the
//! last persisted cursor) is sent twice, and nothing is skipped. Packet ids, shared by
//! all lanes of a connection, map back to the lane through the [`Span`].

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    seq: u64,
    acked: bool,
}

/// The seqs one upstream publish carries, all of one lane: one event (`first == last`),
/// or a packed batch of the events this lane sent from `first` to `last` (never a seq it
/// did not send: the window holds only those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub lane: usize,
    pub first: u64,
    pub last: u64,
}

impl Span {
    pub fn one(lane: usize, seq: u64) -> Span {
        Span {
            lane,
            first: seq,
            last: seq,
        }
    }
}

/// One lane's part of the window.
#[derive(Debug)]
struct Lane {
    /// Everything at or below this is acknowledged (or not this lane's).
    cursor: u64,
    /// Highest seq read from the store (sent or skipped as not this lane's).
    scanned: u64,
    /// Sent and not yet folded into the cursor, in seq order.
    inflight: VecDeque<Sent>,
    /// The last seq this lane reads: a live-first backlog ends at its split (u64::MAX:
    /// no end).
    end: u64,
    /// The lane whose events these are: itself, or for a backlog the lane it was split
    /// from.
    of: usize,
}

impl Lane {
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

#[derive(Debug)]
pub struct Window {
    /// The link's lanes (`mains` of them, highest priority first), then the backlogs
    /// split from them (`drain = "live_first"`), so that every live lane comes before
    /// every backlog.
    lanes: Vec<Lane>,
    mains: usize,
    /// Events in flight, all lanes together.
    len: usize,
    /// Handed to the client library, waiting to learn its packet id, in send order.
    awaiting_pkid: VecDeque<(Span, u8)>,
    by_pkid: HashMap<u16, Span>,
}

impl Window {
    /// A window of one lane at `cursor`.
    #[cfg(test)]
    pub fn new(cursor: u64) -> Window {
        Window::with_lanes(&[cursor])
    }

    /// A window with one lane per cursor, in the link's lane order.
    pub fn with_lanes(cursors: &[u64]) -> Window {
        Window {
            lanes: cursors
                .iter()
                .enumerate()
                .map(|(of, c)| Lane {
                    cursor: *c,
                    scanned: *c,
                    inflight: VecDeque::new(),
                    end: u64::MAX,
                    of,
                })
                .collect(),
            mains: cursors.len(),
            len: 0,
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
        }
    }

    pub fn cursor(&self, lane: usize) -> u64 {
        self.lanes.get(lane).map_or(0, |l| l.cursor)
    }

    /// What the store keeps for each of the link's lanes: its cursor (everything at or
    /// below it acknowledged), and its live-first (split, live cursor), or (0, 0).
    pub fn store_state(&self, lane: usize) -> (u64, (u64, u64)) {
        let main = self.cursor(lane);
        let backlog = self.lanes[self.mains..]
            .iter()
            .find(|b| b.of == lane && b.cursor < b.end);
        match backlog {
            Some(b) => (b.cursor, (b.end, main)),
            None => (main, (0, 0)),
        }
    }

    /// [`Window::store_state`]'s cursor of each of the link's lanes.
    pub fn cursors(&self) -> Vec<u64> {
        (0..self.mains).map(|l| self.store_state(l).0).collect()
    }

    /// Splits the backlog `cursor + 1 ..= split` of link lane `lane` (nothing of it in
    /// flight) off into a lane of its own, read after every live one, while `lane` goes
    /// on from `live` (>= split; more than it when resuming a split after a restart).
    pub fn split(&mut self, lane: usize, split: u64, live: u64) {
        let l = self.lane(lane);
        debug_assert!(l.inflight.is_empty() && l.cursor < split && split <= live);
        let cursor = l.cursor;
        l.cursor = live;
        l.scanned = live;
        self.lanes.push(Lane {
            cursor,
            scanned: cursor,
            inflight: VecDeque::new(),
            end: split,
            of: lane,
        });
    }

    /// True while `lane` has a backlog split off that is not yet acknowledged.
    pub fn is_split(&self, lane: usize) -> bool {
        self.store_state(lane).1 != (0, 0)
    }

    /// The link lane whose events `lane` carries.
    pub fn main_of(&self, lane: usize) -> usize {
        self.lanes.get(lane).map_or(0, |l| l.of)
    }

    /// The last seq `lane` reads.
    pub fn end(&self, lane: usize) -> u64 {
        self.lanes.get(lane).map_or(u64::MAX, |l| l.end)
    }

    pub fn scanned(&self, lane: usize) -> u64 {
        self.lanes.get(lane).map_or(u64::MAX, |l| l.scanned)
    }

    /// The first lane (the link's lanes come highest priority first, live before
    /// backlog) that has not read the store up to `committed` (or its end).
    pub fn behind(&self, committed: u64) -> Option<usize> {
        self.lanes
            .iter()
            .position(|l| l.scanned < committed.min(l.end))
    }

    /// Events in flight, all lanes together.
    pub fn len(&self) -> usize {
        self.len
    }

    fn lane(&mut self, lane: usize) -> &mut Lane {
        &mut self.lanes[lane]
    }

    /// `seq` of `lane` was handed to the client at `qos`. A lane's seqs must be pushed
    /// in increasing order.
    pub fn push(&mut self, lane: usize, seq: u64, qos: u8) {
        let l = self.lane(lane);
        debug_assert!(seq > l.scanned);
        l.inflight.push_back(Sent { seq, acked: false });
        l.scanned = seq;
        self.len += 1;
        self.awaiting_pkid.push_back((Span::one(lane, seq), qos));
    }

    /// The events `seqs` of `lane` (increasing, above its scan position) were handed to
    /// the client in one packed publish at `qos`.
    pub fn push_batch(&mut self, lane: usize, seqs: &[u64], qos: u8) {
        let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
            return;
        };
        let l = self.lane(lane);
        debug_assert!(*first > l.scanned);
        for seq in seqs {
            l.inflight.push_back(Sent {
                seq: *seq,
                acked: false,
            });
        }
        l.scanned = *last;
        self.len += seqs.len();
        self.awaiting_pkid.push_back((
            Span {
                lane,
                first: *first,
                last: *last,
            },
            qos,
        ));
    }

    /// The seqs in flight within `span` (a packed publish's events).
    pub fn seqs_in(&self, span: Span) -> Vec<u64> {
        let Some(l) = self.lanes.get(span.lane) else {
            return Vec::new();
        };
        let from = l.inflight.partition_point(|s| s.seq < span.first);
        l.inflight
            .iter()
            .skip(from)
            .take_while(|s| s.seq <= span.last)
            .map(|s| s.seq)
            .collect()
    }

    /// `seq` of `lane` was read and is done with without being sent (moved to the dead
    /// letters). A lane's seqs must be pushed in increasing order.
    pub fn settled(&mut self, lane: usize, seq: u64) {
        let l = self.lane(lane);
        debug_assert!(seq > l.scanned);
        l.inflight.push_back(Sent { seq, acked: true });
        l.scanned = seq;
        self.len += 1;
        self.fold(lane);
    }

    /// `lane` read the store up to `seq`; records not pushed were not for it.
    pub fn scanned_to(&mut self, lane: usize, seq: u64) {
        let l = self.lane(lane);
        if seq > l.scanned {
            l.scanned = seq;
        }
        self.fold(lane);
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
        let Some(l) = self.lanes.get_mut(span.lane) else {
            return;
        };
        let from = l.inflight.partition_point(|s| s.seq < span.first);
        for s in l.inflight.iter_mut().skip(from) {
            if s.seq > span.last {
                break;
            }
            s.acked = true;
        }
        self.fold(span.lane);
    }

    fn fold(&mut self, lane: usize) {
        let l = self.lane(lane);
        let before = l.inflight.len();
        l.fold();
        let folded = before - l.inflight.len();
        self.len -= folded;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_waits_for_the_oldest_ack() {
        let mut w = Window::new(10);
        for seq in [11, 12, 14] {
            w.push(0, seq, 1);
        }
        w.scanned_to(0, 15); // 13 and 15 were not ours
        for pkid in [1, 2, 3] {
            w.written(pkid);
        }
        assert_eq!(w.cursor(0), 10);
        assert!(w.acked(2));
        assert_eq!(w.cursor(0), 10);
        assert!(w.acked(1));
        assert_eq!(w.cursor(0), 13);
        assert!(w.acked(3));
        assert_eq!(w.cursor(0), 15);
        assert!(!w.acked(3));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn qos0_counts_when_written() {
        let mut w = Window::new(0);
        w.push(0, 1, 0);
        w.push(0, 2, 1);
        w.written(0);
        assert_eq!(w.cursor(0), 1);
        w.written(7);
        assert!(w.acked(7));
        assert_eq!((w.cursor(0), w.scanned(0), w.len()), (2, 2, 0));
    }

    #[test]
    fn a_refused_event_holds_the_cursor_until_resent_and_marked() {
        let mut w = Window::new(0);
        w.push(0, 1, 1);
        w.push(0, 2, 1);
        w.written(5);
        w.written(6);
        assert_eq!(w.answered(5), Some(Span::one(0, 1))); // refused
        assert!(w.acked(6));
        assert_eq!(w.cursor(0), 0);
        w.resend(Span::one(0, 1), 1);
        w.written(7);
        assert_eq!(w.answered(7), Some(Span::one(0, 1))); // refused again: dead-lettered
        assert_eq!(w.cursor(0), 0);
        w.mark(Span::one(0, 1));
        assert_eq!((w.cursor(0), w.len()), (2, 0));
        assert_eq!(w.answered(7), None);
    }

    #[test]
    fn nothing_in_flight_follows_the_scan() {
        let mut w = Window::new(5);
        w.scanned_to(0, 9);
        assert_eq!(w.cursor(0), 9);
        w.scanned_to(0, 3);
        assert_eq!(w.cursor(0), 9);
    }

    #[test]
    fn a_packed_publish_acknowledges_all_its_events_at_once() {
        let mut w = Window::new(0);
        w.push_batch(0, &[1, 2, 4], 1); // 3 was not ours
        w.push(0, 5, 1);
        w.push_batch(0, &[6, 7], 1);
        w.scanned_to(0, 8);
        for pkid in [1, 2, 3] {
            w.written(pkid);
        }
        let first = Span {
            lane: 0,
            first: 1,
            last: 4,
        };
        assert_eq!(w.seqs_in(first), vec![1, 2, 4]);
        assert!(w.acked(3));
        assert_eq!(w.cursor(0), 0, "the batch 6..=7 waits for 1..=5");
        assert!(w.acked(1));
        assert_eq!(w.cursor(0), 4);
        assert!(w.acked(2));
        assert_eq!((w.cursor(0), w.len()), (8, 0));
    }

    #[test]
    fn lanes_keep_their_own_cursors_and_share_packet_ids() {
        // Lane 0 (a higher priority) and lane 1 read the same log: seqs 1..=6, of which
        // 2 and 5 are lane 0's and 1, 3, 4 lane 1's (6 is neither's).
        let mut w = Window::with_lanes(&[0, 0]);
        assert_eq!(w.behind(6), Some(0));
        w.push(0, 2, 1);
        w.push(0, 5, 1);
        w.scanned_to(0, 6);
        assert_eq!(w.behind(6), Some(1));
        w.push(1, 1, 1);
        w.push_batch(1, &[3, 4], 1);
        w.scanned_to(1, 6);
        assert_eq!((w.behind(6), w.len()), (None, 5));
        for pkid in [10, 11, 12, 13] {
            w.written(pkid);
        }
        assert_eq!(w.cursors(), vec![1, 0]);
        assert!(w.acked(12)); // lane 1's seq 1
        assert_eq!(w.cursors(), vec![1, 2]);
        assert!(w.acked(10)); // lane 0's seq 2
        assert_eq!(w.cursors(), vec![4, 2]);
        assert!(w.acked(13)); // lane 1's batch 3..=4
        assert_eq!(w.cursors(), vec![4, 6]);
        assert!(w.acked(11));
        assert_eq!((w.cursors(), w.len()), (vec![6, 6], 0));
    }

    #[test]
    fn a_split_backlog_drains_behind_live_events_then_merges_back() {
        let mut w = Window::with_lanes(&[10]);
        w.split(0, 20, 20); // the backlog 11..=20 apart; live from 21 on
        assert_eq!(w.store_state(0), (10, (20, 20)));
        assert_eq!(w.behind(25), Some(0), "live first");
        w.push(0, 21, 1);
        w.scanned_to(0, 25);
        assert_eq!(w.behind(25), Some(1), "then the backlog");
        assert_eq!((w.main_of(1), w.end(1)), (0, 20));
        w.push(1, 11, 1);
        w.scanned_to(1, 20);
        assert_eq!(w.behind(25), None, "the backlog ends at its split");
        w.written(1);
        w.written(2);
        assert!(w.acked(1)); // live 21
        assert_eq!(w.store_state(0), (10, (20, 25)));
        assert_eq!(
            w.cursors(),
            vec![10],
            "the store keeps the backlog's cursor"
        );
        assert!(w.acked(2)); // backlog 11: 11..=20 all done
        assert_eq!(w.store_state(0), (25, (0, 0)));
        assert!(!w.is_split(0));
        // Resumed after a restart: live events up to 30 were acknowledged already.
        let mut w = Window::with_lanes(&[10]);
        w.split(0, 20, 30);
        assert_eq!((w.scanned(0), w.store_state(0)), (30, (10, (20, 30))));
    }
}
