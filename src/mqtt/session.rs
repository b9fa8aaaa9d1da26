//! The MQTT session state machine, free of I/O: CONNECT acceptance, packet ids for our
//! outbound QoS 1 deliveries, and the inbound QoS 2 table.
//!
//! Both tables have hard caps: a client cannot make us hold more than
//! [`OUTBOUND_INFLIGHT`] unacked deliveries or `max_inflight` unreleased QoS 2 ids.

use super::codec::{ConnAck, Connect, Protocol};
use std::collections::HashSet;

/// Deliveries at QoS 1 awaiting the subscriber's PUBACK, per connection. While full, the
/// connection stops taking from its outbox, which then fills and drops (counted).
pub const OUTBOUND_INFLIGHT: usize = 64;

/// CONNACK return codes used so far (3.1.1 numbering).
pub mod connack {
    pub const ACCEPTED: u8 = 0;
    pub const IDENTIFIER_REJECTED: u8 = 2;
}

#[derive(Debug)]
pub struct Session {
    pub client_id: String,
    pub protocol: Protocol,
    pub keep_alive: u16,
    next_pkid: u16,
    outbound: heapless::FnvIndexSet<u16, OUTBOUND_INFLIGHT>,
    inbound_qos2: HashSet<u16>,
    max_inflight: usize,
}

/// Accepts or refuses a CONNECT. `assigned` is the id to use when the client sent none.
pub fn accept(connect: &Connect, assigned: &str, max_inflight: usize) -> Result<Session, ConnAck> {
    let mut client_id = connect.client_id.clone();
    if client_id.is_empty() {
        // 3.1.1 section 3.1.3.1: an empty id is allowed only with a clean session.
        if !connect.clean_start && connect.protocol != Protocol::V5 {
            let code = connack::IDENTIFIER_REJECTED;
            return Err(ConnAck {
                session_present: false,
                code,
                properties: None,
            });
        }
        client_id = assigned.to_string();
    }
    Ok(Session {
        client_id,
        protocol: connect.protocol,
        keep_alive: connect.keep_alive,
        next_pkid: 0,
        outbound: heapless::FnvIndexSet::new(),
        inbound_qos2: HashSet::new(),
        max_inflight: max_inflight.max(1),
    })
}

impl Session {
    /// True while another QoS 1 delivery may be sent.
    pub fn can_send(&self) -> bool {
        self.outbound.len() < OUTBOUND_INFLIGHT
    }

    /// A free packet id for an outbound QoS > 0 delivery, or None when the table is full.
    pub fn alloc_pkid(&mut self) -> Option<u16> {
        if !self.can_send() {
            return None;
        }
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid == 0 {
                continue;
            }
            if !self.outbound.contains(&self.next_pkid) {
                return self
                    .outbound
                    .insert(self.next_pkid)
                    .ok()
                    .map(|_| self.next_pkid);
            }
        }
    }

    /// The subscriber acknowledged `pkid`; false if we were not waiting for it.
    pub fn acked(&mut self, pkid: u16) -> bool {
        self.outbound.remove(&pkid)
    }

    /// A QoS 2 PUBLISH arrived. Returns true if it is new (route and store it), false if
    /// it is a retransmission of one we already have (just PUBREC again). Err when the
    /// client has more unreleased QoS 2 ids than allowed.
    pub fn qos2_received(&mut self, pkid: u16) -> Result<bool, &'static str> {
        if self.inbound_qos2.contains(&pkid) {
            return Ok(false);
        }
        if self.inbound_qos2.len() >= self.max_inflight {
            return Err("too many unreleased QoS 2 publishes");
        }
        self.inbound_qos2.insert(pkid);
        Ok(true)
    }

    /// PUBREL for `pkid`: the id may be reused by the client.
    pub fn qos2_released(&mut self, pkid: u16) {
        self.inbound_qos2.remove(&pkid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::ConnectProperties;

    fn connect(id: &str, clean: bool) -> Connect {
        Connect {
            protocol: Protocol::V311,
            client_id: id.into(),
            clean_start: clean,
            keep_alive: 30,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    #[test]
    fn empty_client_id_needs_clean_session() {
        assert_eq!(
            accept(&connect("", true), "auto-1", 10).unwrap().client_id,
            "auto-1"
        );
        let refused = accept(&connect("", false), "auto-1", 10).unwrap_err();
        assert_eq!(refused.code, connack::IDENTIFIER_REJECTED);
        assert_eq!(
            accept(&connect("dev", false), "x", 10).unwrap().client_id,
            "dev"
        );
    }

    #[test]
    fn pkids_are_unique_and_capped() {
        let mut s = accept(&connect("d", true), "", 10).unwrap();
        let ids: Vec<u16> = (0..OUTBOUND_INFLIGHT)
            .map(|_| s.alloc_pkid().unwrap())
            .collect();
        assert_eq!(ids[0], 1);
        assert!(s.alloc_pkid().is_none());
        assert!(s.acked(ids[3]));
        assert!(!s.acked(ids[3]));
        assert!(s.alloc_pkid().is_some());
    }

    #[test]
    fn qos2_dedup_and_limit() {
        let mut s = accept(&connect("d", true), "", 2).unwrap();
        assert_eq!(s.qos2_received(5), Ok(true));
        assert_eq!(s.qos2_received(5), Ok(false));
        assert_eq!(s.qos2_received(6), Ok(true));
        assert!(s.qos2_received(7).is_err());
        s.qos2_released(5);
        assert_eq!(s.qos2_received(5), Ok(true));
    }
}
