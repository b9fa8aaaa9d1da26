//! The protocol state of one NATS connection, without I/O: CONNECT options, the sid
//! table, auto-unsubscribe counts and the PING/PONG bookkeeping.
//!
//! Each subscription gets a slot number, which is its router key and delivery tag.
//! Invariant: slots are never reused within a connection, so a delivery queued for a
//! subscription that has since been removed finds no slot and is dropped, instead of
//! reaching a later subscription that happens to reuse the sid.

use super::proto::{ConnectOptions, ProtoError, subject_matches, valid_subscribe_subject};
use crate::topic::level_count;
use crate::topic::nats::subject_to_filter;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// One live subscription.
#[derive(Debug, Clone)]
pub struct SubEntry {
    pub sid: Bytes,
    /// As the client sent it (NATS form).
    pub subject: Bytes,
    /// The canonical (MQTT) filter it is registered under in the router.
    pub filter: Arc<str>,
    pub queue: Option<Bytes>,
    /// Auto-unsubscribe after this many deliveries in total.
    pub max: Option<u64>,
    pub delivered: u64,
    /// For filters ending in `#`: its level count. MQTT `a/#` also matches `a` itself,
    /// NATS `a.>` does not, so a topic with fewer levels than the filter is skipped.
    fwc_levels: Option<usize>,
}

/// What `subscribe` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscription: register `filter` in the router under `slot`.
    New {
        slot: u64,
        filter: Arc<str>,
        group: Option<Arc<str>>,
    },
    /// The sid was already in use; nats-server keeps the existing subscription.
    Existing,
}

/// What to do with a delivery for `slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deliver {
    /// Write it with this sid; if `remove` is set the subscription just reached its
    /// max and must be taken out of the router.
    Yes {
        sid: Bytes,
        remove: Option<(Arc<str>, u64)>,
    },
    /// The subscription is gone, or NATS semantics say it does not match.
    No,
}

/// The ping timer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingAction {
    /// The client was heard from within the interval: no PING needed.
    Skip,
    Send,
    /// Too many PINGs unanswered: `-ERR 'Stale Connection'` and close.
    Stale,
}

#[derive(Debug)]
pub struct Session {
    pub opts: ConnectOptions,
    pub connected: bool,
    /// Headers are on when the client asked for them (ferry always offers them).
    pub headers: bool,
    sids: HashMap<Bytes, u64>,
    slots: HashMap<u64, SubEntry>,
    next_slot: u64,
    max_subs: usize,
    pings_out: u32,
    max_pings_out: u32,
}

impl Session {
    pub fn new(max_subs: usize, max_pings_out: u32) -> Session {
        Session {
            opts: ConnectOptions::default(),
            connected: false,
            headers: false,
            sids: HashMap::new(),
            slots: HashMap::new(),
            next_slot: 1,
            max_subs,
            pings_out: 0,
            max_pings_out,
        }
    }

    /// Applies a CONNECT (a repeated one replaces the options, as in nats-server).
    pub fn connect(&mut self, opts: ConnectOptions) -> Result<(), ProtoError> {
        opts.validate(true)?;
        self.headers = opts.headers;
        self.opts = opts;
        self.connected = true;
        Ok(())
    }

    pub fn echo(&self) -> bool {
        self.opts.echo
    }

    pub fn verbose(&self) -> bool {
        self.opts.verbose
    }

    pub fn pedantic(&self) -> bool {
        self.opts.pedantic
    }

    /// Whether this client wants a 503 when its request reaches nobody.
    pub fn wants_no_responders(&self) -> bool {
        self.opts.no_responders && self.headers
    }

    pub fn subscription_count(&self) -> usize {
        self.slots.len()
    }

    pub fn subscribe(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) -> Result<Subscribed, ProtoError> {
        if !valid_subscribe_subject(subject) {
            return Err(ProtoError::InvalidSubject);
        }
        let filter: Arc<str> = subject_to_filter(subject)
            .map_err(|_| ProtoError::InvalidSubject)?
            .into();
        if self.sids.contains_key(sid) {
            return Ok(Subscribed::Existing);
        }
        if self.slots.len() >= self.max_subs {
            return Err(ProtoError::MaxSubscriptions);
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        // NATS queue groups are per subject and must never merge with MQTT shared
        // subscriptions: the group name carries a prefix and the filter.
        let group =
            queue.map(|q| Arc::from(format!("nats:{} {filter}", String::from_utf8_lossy(q))));
        let sid = Bytes::copy_from_slice(sid);
        self.sids.insert(sid.clone(), slot);
        self.slots.insert(
            slot,
            SubEntry {
                sid,
                subject: Bytes::copy_from_slice(subject),
                fwc_levels: filter.ends_with('#').then(|| level_count(&filter)),
                filter: filter.clone(),
                queue: queue.map(Bytes::copy_from_slice),
                max: None,
                delivered: 0,
            },
        );
        Ok(Subscribed::New {
            slot,
            filter,
            group,
        })
    }

    /// UNSUB: with `max` n > 0 not yet reached, arms auto-unsubscribe and returns None;
    /// otherwise removes the subscription now and returns what the router must drop.
    /// An unknown sid is ignored, as in nats-server.
    pub fn unsubscribe(&mut self, sid: &[u8], max: Option<u64>) -> Option<(Arc<str>, u64)> {
        let slot = *self.sids.get(sid)?;
        let entry = self.slots.get_mut(&slot)?;
        match max {
            Some(n) if n > entry.delivered => {
                entry.max = Some(n);
                None
            }
            _ => self.remove(slot),
        }
    }

    fn remove(&mut self, slot: u64) -> Option<(Arc<str>, u64)> {
        let entry = self.slots.remove(&slot)?;
        self.sids.remove(&entry.sid);
        Some((entry.filter, slot))
    }

    /// Accounts one delivery to `slot` of an event whose canonical topic has `levels`
    /// levels.
    pub fn deliver(&mut self, slot: u64, levels: usize) -> Deliver {
        let Some(entry) = self.slots.get_mut(&slot) else {
            return Deliver::No;
        };
        if entry.fwc_levels.is_some_and(|n| levels < n) {
            return Deliver::No;
        }
        entry.delivered += 1;
        let sid = entry.sid.clone();
        let done = entry.max.is_some_and(|m| entry.delivered >= m);
        let remove = if done { self.remove(slot) } else { None };
        Deliver::Yes { sid, remove }
    }

    /// The sid of a plain (non-queue) subscription of this client matching `reply`,
    /// where nats-server sends the no-responders status.
    pub fn reply_sid(&self, reply: &[u8]) -> Option<Bytes> {
        // The oldest match, so the choice does not depend on hash order.
        self.slots
            .iter()
            .filter(|(_, e)| e.queue.is_none() && subject_matches(&e.subject, reply))
            .min_by_key(|(slot, _)| **slot)
            .map(|(_, e)| e.sid.clone())
    }

    /// Every subscription's router registration, for cleanup when the connection ends.
    pub fn registrations(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.slots.iter().map(|(slot, e)| (&*e.filter, *slot))
    }

    /// The ping timer fired. `heard_recently`: the client sent something within the
    /// interval (nats-server then skips the PING).
    pub fn ping_due(&mut self, heard_recently: bool) -> PingAction {
        if heard_recently {
            return PingAction::Skip;
        }
        if self.pings_out + 1 > self.max_pings_out {
            return PingAction::Stale;
        }
        self.pings_out += 1;
        PingAction::Send
    }

    pub fn pong(&mut self) {
        self.pings_out = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_slot(s: Subscribed) -> (u64, Arc<str>, Option<Arc<str>>) {
        match s {
            Subscribed::New {
                slot,
                filter,
                group,
            } => (slot, filter, group),
            Subscribed::Existing => panic!("expected a new subscription"),
        }
    }

    #[test]
    fn subscribe_maps_and_namespaces_groups() {
        let mut s = Session::new(10, 2);
        let (slot, filter, group) = new_slot(s.subscribe(b"sensors.*.1", None, b"1").unwrap());
        assert_eq!((slot, &*filter, group), (1, "sensors/+/1", None));
        let (slot, filter, group) =
            new_slot(s.subscribe(b"jobs.>", Some(b"workers"), b"2").unwrap());
        assert_eq!(slot, 2);
        assert_eq!(&*filter, "jobs/#");
        assert_eq!(group.as_deref(), Some("nats:workers jobs/#"));
        // Same sid again: kept, nothing new.
        assert_eq!(
            s.subscribe(b"other", None, b"1").unwrap(),
            Subscribed::Existing
        );
        assert_eq!(s.subscription_count(), 2);
    }

    #[test]
    fn bad_subjects_and_limit() {
        let mut s = Session::new(1, 2);
        assert_eq!(
            s.subscribe(b"a..b", None, b"1"),
            Err(ProtoError::InvalidSubject)
        );
        assert_eq!(
            s.subscribe(b"a.>.b", None, b"1"),
            Err(ProtoError::InvalidSubject)
        );
        assert_eq!(
            s.subscribe(b"a+b", None, b"1"),
            Err(ProtoError::InvalidSubject)
        );
        assert_eq!(
            s.subscribe(b"a/b", None, b"1"),
            Err(ProtoError::InvalidSubject)
        );
        s.subscribe(b"a", None, b"1").unwrap();
        assert_eq!(
            s.subscribe(b"b", None, b"2"),
            Err(ProtoError::MaxSubscriptions)
        );
    }

    #[test]
    fn auto_unsubscribe_after_max() {
        let mut s = Session::new(10, 2);
        let (slot, _, _) = new_slot(s.subscribe(b"a", None, b"9").unwrap());
        assert_eq!(s.unsubscribe(b"9", Some(2)), None);
        assert_eq!(
            s.deliver(slot, 1),
            Deliver::Yes {
                sid: Bytes::from_static(b"9"),
                remove: None
            }
        );
        assert_eq!(
            s.deliver(slot, 1),
            Deliver::Yes {
                sid: Bytes::from_static(b"9"),
                remove: Some((Arc::from("a"), slot))
            }
        );
        assert_eq!(s.deliver(slot, 1), Deliver::No);
        assert_eq!(s.subscription_count(), 0);
        // The sid may be used again, under a fresh slot.
        let (again, _, _) = new_slot(s.subscribe(b"a", None, b"9").unwrap());
        assert_ne!(again, slot);
    }

    #[test]
    fn unsubscribe_now_and_max_already_reached() {
        let mut s = Session::new(10, 2);
        let (slot, _, _) = new_slot(s.subscribe(b"a", None, b"1").unwrap());
        assert!(matches!(s.deliver(slot, 1), Deliver::Yes { .. }));
        // max 1 with 1 delivered: removed at once (nats-server: max <= delivered).
        assert_eq!(s.unsubscribe(b"1", Some(1)), Some((Arc::from("a"), slot)));
        assert_eq!(s.unsubscribe(b"1", None), None);
        let (slot, _, _) = new_slot(s.subscribe(b"b", None, b"2").unwrap());
        assert_eq!(s.unsubscribe(b"2", Some(0)), Some((Arc::from("b"), slot)));
    }

    #[test]
    fn full_wildcard_needs_one_more_level() {
        let mut s = Session::new(10, 2);
        let (slot, _, _) = new_slot(s.subscribe(b"sensors.>", None, b"1").unwrap());
        assert_eq!(s.deliver(slot, 1), Deliver::No);
        assert!(matches!(s.deliver(slot, 2), Deliver::Yes { .. }));
    }

    #[test]
    fn reply_sid_prefers_plain_subscriptions() {
        let mut s = Session::new(10, 2);
        s.subscribe(b"_INBOX.x.*", Some(b"q"), b"1").unwrap();
        assert_eq!(s.reply_sid(b"_INBOX.x.1"), None);
        s.subscribe(b"_INBOX.x.*", None, b"2").unwrap();
        assert_eq!(s.reply_sid(b"_INBOX.x.1").as_deref(), Some(&b"2"[..]));
        assert_eq!(s.reply_sid(b"_INBOX.y.1"), None);
    }

    #[test]
    fn connect_rules() {
        let mut s = Session::new(10, 2);
        assert!(s.verbose() && s.echo() && !s.connected);
        let bad = ConnectOptions::from_json(br#"{"no_responders":true}"#).unwrap();
        assert_eq!(s.connect(bad), Err(ProtoError::NoRespondersRequiresHeaders));
        let ok = ConnectOptions::from_json(
            br#"{"verbose":false,"echo":false,"headers":true,"no_responders":true}"#,
        )
        .unwrap();
        s.connect(ok).unwrap();
        assert!(s.connected && !s.verbose() && !s.echo() && s.wants_no_responders());
    }

    #[test]
    fn pings() {
        let mut s = Session::new(10, 2);
        assert_eq!(s.ping_due(true), PingAction::Skip);
        assert_eq!(s.ping_due(false), PingAction::Send);
        assert_eq!(s.ping_due(false), PingAction::Send);
        assert_eq!(s.ping_due(false), PingAction::Stale);
        s.pong();
        assert_eq!(s.ping_due(false), PingAction::Send);
    }
}
