//! An MQTT session's state, which outlives a connection when the session is persistent:
//! subscriptions, the outbox the router fills, our unacknowledged deliveries, and the
//! client's unreleased QoS 2 ids. Pure bookkeeping; the connection does the I/O.
//!
//! Hard caps: at most [`OUTBOUND_INFLIGHT`] unacknowledged deliveries (a `heapless` map,
//! no allocation on the delivery path, itself allocated at the session's first QoS > 0
//! delivery so an idle connection does not carry its 5 KiB) and at most `max_inflight`
//! unreleased QoS 2 ids.

use crate::router::{Deliveries, Delivery, Outbox};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Deliveries at QoS 1/2 awaiting the subscriber, per session. While full, the connection
/// stops taking from the outbox, which then fills and drops (counted).
pub const OUTBOUND_INFLIGHT: usize = 64;

/// Session expiry meaning "never" (MQTT 5: 0xFFFFFFFF), what a 3.1.1 `clean_session = 0`
/// CONNECT asks for. Only ever asked for: `Sessions` caps every expiry at
/// `mqtt.max_session_expiry`.
pub const NEVER: u32 = u32::MAX;

/// Where an outbound QoS > 0 delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// QoS 1 sent, waiting for PUBACK.
    Qos1Sent,
    /// QoS 2 sent, waiting for PUBREC.
    Qos2Sent,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery: Delivery,
    pub stage: Stage,
    /// Its row in the session's store queue (0: it came from memory); removed from the
    /// store once the client acknowledged it.
    pub qseq: u64,
}

/// Where a persistent session reads its queued QoS 1/2 deliveries back from the store
/// (`store/queue.rs`): rows past `after`, as in-flight slots allow.
#[derive(Debug)]
pub struct SpoolReader {
    pub client_id: Arc<str>,
    /// Told by the store writer when a row for this session was committed or refused.
    pub signal: Arc<crate::store::QueueSignal>,
    /// The last qseq read: rows up to it are in flight (or acknowledged).
    pub after: u64,
    /// Rows past `after` may exist: read when a slot is free.
    pub more: bool,
}

/// A subscription as the session remembers it (and persists it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOptions {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    /// MQTT 5 subscription identifier, 0 for none.
    pub sub_id: u32,
    /// `$share/<group>/` prefix removed from the filter, if it was a shared subscription.
    pub share: Option<String>,
}

pub struct SessionState {
    pub client_id: String,
    pub outbox: Arc<Outbox>,
    pub deliveries: Deliveries,
    /// Keyed by the filter as the client sent it (with any `$share/...` prefix).
    pub subs: HashMap<String, SubOptions>,
    /// Seconds the session outlives its connection: 0 (clean), else at most
    /// `mqtt.max_session_expiry`.
    pub expiry: u32,
    inflight: Inflight,
    next_pkid: u16,
    inbound_qos2: HashSet<u16>,
    /// [`SessionState::dropped`] when the session was parked, to report drops while
    /// offline.
    pub dropped_at_park: u64,
    /// The user whose session this is: `Some(None)` anonymous, `None` unknown (restored
    /// from a record written before owners were kept). Only its owner may resume it.
    pub owner: Option<Option<String>>,
    /// Set for a persistent session when there is a store: its QoS 1/2 deliveries wait
    /// there (the outbox sends them there) and are read back from there.
    pub spool: Option<SpoolReader>,
}

impl SessionState {
    pub fn new(
        client_id: String,
        outbox: Arc<Outbox>,
        deliveries: Deliveries,
        expiry: u32,
    ) -> SessionState {
        SessionState {
            client_id,
            outbox,
            deliveries,
            subs: HashMap::new(),
            expiry,
            inflight: Inflight::default(),
            next_pkid: 0,
            owner: None,
            inbound_qos2: HashSet::new(),
            dropped_at_park: 0,
            spool: None,
        }
    }

    /// Deliveries dropped so far: by its outbox, and by its store queue's bounds.
    pub fn dropped(&self) -> u64 {
        let refused = self.spool.as_ref().map_or(0, |s| {
            s.signal.refused.load(std::sync::atomic::Ordering::Relaxed)
        });
        self.outbox.dropped() + refused
    }

    /// The router identity of this session (stable across reconnects).
    pub fn id(&self) -> u64 {
        self.outbox.conn_id()
    }

    /// True while another QoS > 0 delivery may be sent, given the client's receive maximum.
    pub fn can_send(&self, receive_maximum: usize) -> bool {
        self.inflight.len() < OUTBOUND_INFLIGHT.min(receive_maximum)
    }

    /// How many more QoS > 0 deliveries may be sent now.
    pub fn room(&self, receive_maximum: usize) -> usize {
        OUTBOUND_INFLIGHT
            .min(receive_maximum)
            .saturating_sub(self.inflight.len())
    }

    /// Registers `delivery` (QoS 1 or 2) as in flight and returns its packet id, or gives
    /// the delivery back when the table is full.
    pub fn start(&mut self, delivery: Delivery) -> Result<u16, Delivery> {
        self.start_queued(delivery, 0)
    }

    /// [`SessionState::start`] for a delivery read from row `qseq` of the store queue.
    pub fn start_queued(&mut self, delivery: Delivery, qseq: u64) -> Result<u16, Delivery> {
        if self.inflight.len() >= OUTBOUND_INFLIGHT {
            return Err(delivery);
        }
        let pkid = loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && self.inflight.get_mut(self.next_pkid).is_none() {
                break self.next_pkid;
            }
        };
        let stage = if delivery.qos >= 2 {
            Stage::Qos2Sent
        } else {
            Stage::Qos1Sent
        };
        match self.inflight.table().insert(
            pkid,
            Outgoing {
                delivery,
                stage,
                qseq,
            },
        ) {
            Ok(_) => Ok(pkid),
            Err((_, o)) => Err(o.delivery),
        }
    }

    /// PUBACK from the client: `Some(qseq)` if we were waiting for it (the store queue
    /// row to remove, 0 for none).
    pub fn puback(&mut self, pkid: u16) -> Option<u64> {
        self.finish(pkid, Stage::Qos1Sent)
    }

    /// PUBREC from the client: `Some(qseq)` if a PUBREL must follow. The client has the
    /// message now, so its store queue row (qseq, 0 for none or already done) goes; only
    /// the release is left to finish.
    pub fn pubrec(&mut self, pkid: u16) -> Option<u64> {
        match self.inflight.get_mut(pkid) {
            Some(o) if o.stage == Stage::Qos2Sent || o.stage == Stage::Released => {
                o.stage = Stage::Released;
                Some(std::mem::take(&mut o.qseq))
            }
            _ => None,
        }
    }

    /// PUBCOMP from the client; false if we were not waiting for it.
    pub fn pubcomp(&mut self, pkid: u16) -> bool {
        self.finish(pkid, Stage::Released).is_some()
    }

    /// Forgets a delivery that was never sent (too large for the client): its store
    /// queue row to remove (0 for none).
    pub fn abandon(&mut self, pkid: u16) -> u64 {
        self.inflight.remove(pkid).map_or(0, |o| o.qseq)
    }

    fn finish(&mut self, pkid: u16, stage: Stage) -> Option<u64> {
        match self.inflight.get_mut(pkid) {
            Some(o) if o.stage == stage => self.inflight.remove(pkid).map(|o| o.qseq),
            _ => None,
        }
    }

    /// What to resend when the session resumes on a new connection, in the original order.
    pub fn resume(&self) -> Vec<(u16, Outgoing)> {
        match &self.inflight.0 {
            Some(t) => t.iter().map(|(k, v)| (*k, v.clone())).collect(),
            None => Vec::new(),
        }
    }

    /// A QoS 2 PUBLISH arrived: true if new (route and store it), false if it is a
    /// retransmission we already have. Err when the client exceeds `max` unreleased ids.
    pub fn qos2_received(&mut self, pkid: u16, max: usize) -> Result<bool, &'static str> {
        if self.inbound_qos2.contains(&pkid) {
            return Ok(false);
        }
        if self.inbound_qos2.len() >= max {
            return Err("too many unreleased QoS 2 publishes");
        }
        self.inbound_qos2.insert(pkid);
        Ok(true)
    }

    /// QoS 2 publishes received and not yet released: they count against Receive Maximum.
    pub fn unreleased_qos2(&self) -> usize {
        self.inbound_qos2.len()
    }

    /// PUBREL for `pkid`: the id may be reused by the client.
    pub fn qos2_released(&mut self, pkid: u16) {
        self.inbound_qos2.remove(&pkid);
    }

    /// The persistent part of the session record, for the store: expiry and owner. Its
    /// subscriptions are rows of their own ([`encode_sub`]).
    pub fn record(&self) -> Vec<u8> {
        let rec = SessionRecordV3 {
            expiry: self.expiry,
            owner: self.owner.clone(),
        };
        // Encoding plain owned data into a Vec cannot fail; an empty record would simply
        // not decode at restore time.
        postcard::to_extend(&rec, vec![SESSION_FORMAT_V3]).unwrap_or_default()
    }
}

/// The deliveries in flight, by packet id: a fixed-capacity table, allocated when the
/// session first sends a QoS > 0 delivery.
#[derive(Default)]
struct Inflight(Option<Box<heapless::FnvIndexMap<u16, Outgoing, OUTBOUND_INFLIGHT>>>);

impl Inflight {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |t| t.len())
    }

    fn table(&mut self) -> &mut heapless::FnvIndexMap<u16, Outgoing, OUTBOUND_INFLIGHT> {
        self.0.get_or_insert_with(Default::default)
    }

    fn get_mut(&mut self, pkid: u16) -> Option<&mut Outgoing> {
        self.0.as_mut()?.get_mut(&pkid)
    }

    fn remove(&mut self, pkid: u16) -> Option<Outgoing> {
        self.0.as_mut()?.remove(&pkid)
    }
}

const SESSION_FORMAT_V1: u8 = 1;
const SESSION_FORMAT_V2: u8 = 2;
const SESSION_FORMAT_V3: u8 = 3;
const SUB_FORMAT_V1: u8 = 1;

/// A session record as ferry wrote it before it kept owners; still read.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionRecordV1 {
    pub expiry: u32,
    pub subs: Vec<(String, SubOptions)>,
}

/// A session record with its subscriptions inside (every SUBSCRIBE rewrote it whole);
/// still read, and its subscriptions moved into rows at restore.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionRecordV2 {
    pub expiry: u32,
    pub subs: Vec<(String, SubOptions)>,
    /// As [`SessionState::owner`].
    pub owner: Option<Option<String>>,
}

/// What the store keeps of a session besides its subscription rows.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionRecordV3 {
    pub expiry: u32,
    /// As [`SessionState::owner`].
    pub owner: Option<Option<String>>,
}

/// One subscription row's value.
pub fn encode_sub(opts: &SubOptions) -> Vec<u8> {
    postcard::to_extend(opts, vec![SUB_FORMAT_V1]).unwrap_or_default()
}

pub fn decode_sub(bytes: &[u8]) -> Option<SubOptions> {
    match bytes.split_first() {
        Some((&SUB_FORMAT_V1, body)) => postcard::from_bytes(body).ok(),
        _ => None,
    }
}

/// Decodes a stored session record; None if it is not one this ferry understands. The
/// subscriptions are those inside an older (format 1 or 2) record; a format 3 record
/// has none (they are rows of their own).
pub fn decode_record(bytes: &[u8]) -> Option<SessionRecordV2> {
    match bytes.split_first() {
        Some((&SESSION_FORMAT_V3, body)) => {
            let v3: SessionRecordV3 = postcard::from_bytes(body).ok()?;
            Some(SessionRecordV2 {
                expiry: v3.expiry,
                subs: Vec::new(),
                owner: v3.owner,
            })
        }
        Some((&SESSION_FORMAT_V2, body)) => postcard::from_bytes(body).ok(),
        Some((&SESSION_FORMAT_V1, body)) => {
            let v1: SessionRecordV1 = postcard::from_bytes(body).ok()?;
            Some(SessionRecordV2 {
                expiry: v1.expiry,
                subs: v1.subs,
                owner: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Origin};
    use crate::metrics::Metrics;
    use bytes::Bytes;

    fn state() -> SessionState {
        let (outbox, rx) = Outbox::new(
            1,
            8,
            usize::MAX,
            crate::budget::MemoryPool::unlimited(),
            Arc::new(Metrics::default()),
        );
        SessionState::new("c".into(), outbox, rx, NEVER)
    }

    fn delivery(qos: u8) -> Delivery {
        Delivery::new(
            Arc::new(Event::new(
                "t".into(),
                Bytes::new(),
                qos,
                false,
                Origin::Mqtt,
            )),
            qos,
        )
    }

    #[test]
    fn qos1_and_qos2_flows() {
        let mut s = state();
        let a = s.start(delivery(1)).unwrap();
        let b = s.start(delivery(2)).unwrap();
        assert_eq!((a, b), (1, 2));
        assert!(!s.pubcomp(b), "PUBCOMP before PUBREC is ignored");
        assert_eq!(s.pubrec(b), Some(0));
        assert!(s.pubrec(b).is_some(), "a repeated PUBREC gets PUBREL again");
        assert!(s.puback(b).is_none());
        let resume: Vec<(u16, Stage)> = s.resume().iter().map(|(k, o)| (*k, o.stage)).collect();
        assert_eq!(resume, vec![(1, Stage::Qos1Sent), (2, Stage::Released)]);
        assert_eq!(s.puback(a), Some(0));
        assert!(s.pubcomp(b));
        assert!(s.resume().is_empty());
    }

    #[test]
    fn inflight_is_capped() {
        let mut s = state();
        for _ in 0..OUTBOUND_INFLIGHT {
            s.start(delivery(1)).unwrap();
        }
        assert!(!s.can_send(usize::MAX));
        assert!(s.start(delivery(1)).is_err());
        assert_eq!(s.puback(10), Some(0));
        assert!(s.can_send(usize::MAX));
        assert!(!s.can_send(10), "client receive maximum also caps");
    }

    #[test]
    fn qos2_dedup_and_limit() {
        let mut s = state();
        assert_eq!(s.qos2_received(5, 2), Ok(true));
        assert_eq!(s.qos2_received(5, 2), Ok(false));
        assert_eq!(s.qos2_received(6, 2), Ok(true));
        assert!(s.qos2_received(7, 2).is_err());
        s.qos2_released(5);
        assert_eq!(s.qos2_received(5, 2), Ok(true));
    }

    #[test]
    fn record_round_trip() {
        let mut s = state();
        let opts = SubOptions {
            qos: 1,
            no_local: true,
            retain_as_published: false,
            retain_handling: 2,
            sub_id: 7,
            share: None,
        };
        s.subs.insert("a/+".into(), opts.clone());
        s.owner = Some(Some("alice".into()));
        let record = s.record();
        assert!(
            record.len() < 16,
            "the record carries no subscriptions: {record:?}"
        );
        let rec = decode_record(&record).unwrap();
        assert_eq!(
            rec,
            SessionRecordV2 {
                expiry: NEVER,
                subs: Vec::new(),
                owner: Some(Some("alice".into())),
            }
        );
        assert_eq!(decode_sub(&encode_sub(&opts)), Some(opts.clone()));
        assert!(decode_record(&[9, 1]).is_none());
        assert!(decode_sub(&[9, 1]).is_none());
        // A format 2 record (subscriptions inside) still opens with them.
        let v2 = SessionRecordV2 {
            expiry: 30,
            subs: vec![("b/#".into(), opts.clone())],
            owner: Some(None),
        };
        let bytes = postcard::to_extend(&v2, vec![SESSION_FORMAT_V2]).unwrap();
        assert_eq!(decode_record(&bytes), Some(v2));
        // A record of an older ferry (format 1, no owner) still opens, owner unknown.
        let v1 = SessionRecordV1 {
            expiry: 60,
            subs: vec![("a/+".into(), opts.clone())],
        };
        let bytes = postcard::to_extend(&v1, vec![SESSION_FORMAT_V1]).unwrap();
        assert_eq!(bytes[0], 1, "the V1 layout is frozen");
        let rec = decode_record(&bytes).unwrap();
        assert_eq!((rec.expiry, rec.owner), (60, None));
        assert_eq!(rec.subs, vec![("a/+".into(), opts)]);
    }
}
