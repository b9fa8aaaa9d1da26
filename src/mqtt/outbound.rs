//! Deliveries to the client: QoS downgrade, packet ids, MQTT 5 properties (expiry
//! countdown, topic aliases, subscription identifiers) and the client's size limit.

use super::codec::{self, Packet, Publish, PublishProperties, QoS};
use super::connection::Conn;
use super::session::SessionState;
use crate::event::now_ms;
use crate::router::Delivery;

/// Bytes a topic alias property takes (identifier and u16).
const ALIAS_COST: usize = 3;

impl Conn {
    /// Sends one delivery from the outbox (or the local queue).
    pub(super) fn deliver(&mut self, d: Delivery, state: &mut SessionState) {
        state.outbox.taken(&d);
        self.send_delivery(d, state);
    }

    /// Sends retained-on-subscribe deliveries while inflight slots are free.
    pub(super) fn drain_local(&mut self, state: &mut SessionState) {
        while state.can_send(self.client_receive_max) {
            let Some(d) = self.local.pop_front() else {
                break;
            };
            self.send_delivery(d, state);
        }
    }

    fn send_delivery(&mut self, d: Delivery, state: &mut SessionState) {
        if d.event.remaining_secs(now_ms()) == Some(0) {
            self.ctx.hub.metrics.dropped_expired.inc();
            return;
        }
        if d.qos == 0 {
            self.write_publish(&d, 0, false);
            return;
        }
        let copy = d.clone();
        match state.start(d) {
            Ok(pkid) => {
                if !self.write_publish(&copy, pkid, false) {
                    state.abandon(pkid);
                }
            }
            Err(d) => {
                // Full: the caller checks `can_send` first, so this is a local retained
                // delivery racing the outbox; keep it for the next round.
                self.local.push_front(d);
            }
        }
    }

    /// Encodes a PUBLISH for `d` with packet id `pkid`; false when it is too large for
    /// the client and was discarded (counted) instead.
    pub(super) fn write_publish(&mut self, d: &Delivery, pkid: u16, dup: bool) -> bool {
        let event = &d.event;
        let qos = QoS::from_u8(d.qos.min(2)).unwrap_or(QoS::AtMostOnce);
        // `String::from`, not `to_string`: an `Arc<str>` would go through `Display`.
        let mut topic = String::from(&*event.topic);
        let mut new_alias = None;
        let properties = if self.protocol.is_v5() {
            let mut p = PublishProperties {
                payload_format: event.payload_format,
                message_expiry: event.remaining_secs(now_ms()),
                response_topic: event.response_topic.as_deref().map(String::from),
                correlation_data: event.correlation_data.clone(),
                user_properties: event.user_properties.clone(),
                subscription_identifiers: d.sub_ids.iter().copied().collect(),
                content_type: event.content_type.as_deref().map(String::from),
                topic_alias: None,
            };
            // An alias costs 3 bytes of property on every publish that carries it, and
            // saves the topic on each reuse: worth it only for longer topics.
            if self.client_alias_max > 0 && topic.len() > ALIAS_COST {
                let ours = self.aliases.as_ref().map(|a| &a.outbound);
                match ours.and_then(|o| o.get(&event.topic)) {
                    Some(alias) => {
                        p.topic_alias = Some(*alias);
                        topic.clear();
                    }
                    None if ours.map_or(0, |o| o.len()) < usize::from(self.client_alias_max) => {
                        p.topic_alias = Some(ours.map_or(0, |o| o.len()) as u16 + 1);
                        new_alias = p.topic_alias;
                    }
                    None => {}
                }
            }
            Some(Box::new(p))
        } else {
            None
        };
        let packet = Packet::Publish(Publish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain: d.retain,
            topic,
            pkid,
            payload: event.payload.clone(),
            properties,
        });
        if codec::encoded_len(&packet, self.protocol) > self.client_max_packet {
            // MQTT 5 section 3.1.2.11.4: too large for the client, so it is discarded.
            self.ctx.hub.metrics.dropped_too_large.inc();
            return false;
        }
        // The alias is defined only once the packet defining it is really sent; when its
        // topic does not fit the budget the publish goes out with the topic and no alias.
        let mut packet = packet;
        if let Some(alias) = new_alias {
            let cap = self.alias_bytes.pool().limit() / 8;
            if self
                .alias_bytes
                .charge(super::inbound::alias_weight(&event.topic), cap)
            {
                self.aliases
                    .get_or_insert_with(Default::default)
                    .outbound
                    .insert(event.topic.clone(), alias);
            } else if let Packet::Publish(p) = &mut packet {
                p.topic = String::from(&*event.topic);
                if let Some(props) = p.properties.as_mut() {
                    props.topic_alias = None;
                }
            }
        }
        self.encode(&packet);
        true
    }
}
