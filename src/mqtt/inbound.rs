//! What the client sends, after CONNECT: publishes, subscriptions, acks, DISCONNECT.

use super::acks::{AckKind, PendingAck};
use super::codec::{self, Packet, PubAck, Publish, reason};
use super::connection::{Close, Conn};
use super::session::{SessionState, SubOptions};
use super::sessions;
use crate::event::{Event, Origin, now_ms};
use crate::policy::ReadGuard;
use crate::router::{Delivery, Outbox};
use crate::topic;
use std::sync::Arc;

impl Conn {
    pub(super) async fn handle(
        &mut self,
        packet: Packet,
        state: &mut SessionState,
    ) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => self.publish(p, state).await?,
            Packet::PubAck(a) => {
                if let Some(qseq) = state.puback(a.pkid) {
                    self.acked.push(qseq);
                }
            }
            Packet::PubRec(r) => {
                if let Some(qseq) = state.pubrec(r.pkid) {
                    self.acked.push(qseq);
                    self.encode(&Packet::PubRel(PubAck::new(r.pkid)));
                } else if self.protocol.is_v5() {
                    let mut rel = PubAck::new(r.pkid);
                    rel.reason = reason::PACKET_IDENTIFIER_NOT_FOUND;
                    self.encode(&Packet::PubRel(rel));
                }
            }
            Packet::PubComp(c) => {
                state.pubcomp(c.pkid);
            }
            Packet::PubRel(r) => {
                state.qos2_released(r.pkid);
                self.encode(&Packet::PubComp(PubAck::new(r.pkid)));
            }
            Packet::Subscribe(s) => self.subscribe(s, state).await,
            Packet::Unsubscribe(u) => self.unsubscribe(u, state).await,
            Packet::PingReq => self.encode(&Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(expiry) = d.properties.as_ref().and_then(|p| p.session_expiry) {
                    // MQTT 5 section 3.14.2.2.2: a session that was to end with the
                    // connection may not be extended at DISCONNECT.
                    if state.expiry == 0 && expiry != 0 {
                        return Err(Close::protocol(
                            "session expiry set at DISCONNECT after CONNECT asked for none",
                        ));
                    }
                    state.expiry = self.ctx.sessions.granted_expiry(expiry);
                }
                return Err(Close::Normal {
                    will: d.reason == reason::DISCONNECT_WITH_WILL_MESSAGE,
                });
            }
            Packet::Connect(_) => return Err(Close::protocol("second CONNECT on one connection")),
            Packet::Auth(_) => {
                return Err(Close::Protocol(
                    reason::BAD_AUTHENTICATION_METHOD,
                    "AUTH is not supported".into(),
                ));
            }
            _ => {
                return Err(Close::protocol(
                    "server-to-client packet sent by the client",
                ));
            }
        }
        Ok(())
    }

    /// A PUBLISH from the client: checked, then handed to the hub. Only the event and
    /// what its acknowledgement needs live across the wait (this future is part of every
    /// connection's task): the packet is taken apart in [`Conn::admit_publish`].
    pub(super) async fn publish(
        &mut self,
        p: Publish,
        state: &mut SessionState,
    ) -> Result<(), Close> {
        let Some((event, pkid, kind)) = self.admit_publish(p, state)? else {
            return Ok(());
        };
        let qos = event.qos;
        let published = self.ctx.hub.publish(event, state.id()).await.map_err(|e| {
            Close::Protocol(reason::UNSPECIFIED_ERROR, format!("store unavailable: {e}"))
        })?;
        if qos > 0 {
            let no_match = self.protocol.is_v5()
                && published.routed.delivered == 0
                && published.durable.is_none();
            let code = if no_match {
                reason::NO_MATCHING_SUBSCRIBERS
            } else {
                0
            };
            self.pending.push_back(PendingAck {
                kind,
                pkid,
                reason: code,
                durable: published.durable,
            });
        }
        Ok(())
    }

    /// The checks a PUBLISH passes before the hub sees it (topic, alias, levels, Receive
    /// Maximum, QoS 2 duplicates, the ACL), and its event. None: handled here (a refusal
    /// or a QoS 2 retransmission, acknowledged as it must be).
    fn admit_publish(
        &mut self,
        p: Publish,
        state: &mut SessionState,
    ) -> Result<Option<(Arc<Event>, u16, AckKind)>, Close> {
        let max_levels = self.config.mqtt.max_topic_levels;
        let max_inflight = usize::from(self.config.mqtt.max_inflight);
        let qos = p.qos as u8;
        let props = p.properties.map(|b| *b).unwrap_or_default();
        let topic = self.resolve_alias(p.topic, props.topic_alias)?;
        let levels = match topic::name_levels(&topic) {
            Ok(n) => n,
            Err(e) => {
                return Err(Close::Protocol(
                    reason::TOPIC_NAME_INVALID,
                    format!("PUBLISH to {topic:?}: {e}"),
                ));
            }
        };
        if levels > max_levels {
            return Err(Close::Protocol(
                reason::TOPIC_NAME_INVALID,
                format!("PUBLISH to {topic:?}: more than mqtt.max_topic_levels levels"),
            ));
        }
        let kind = if qos == 2 {
            AckKind::PubRec
        } else {
            AckKind::PubAck
        };
        if qos > 0
            && self.protocol.is_v5()
            && self
                .pending
                .iter()
                .filter(|a| a.kind == AckKind::PubAck)
                .count()
                + state.unreleased_qos2()
                >= max_inflight
        {
            return Err(Close::Protocol(
                reason::RECEIVE_MAXIMUM_EXCEEDED,
                "more QoS>0 publishes in flight than Receive Maximum".into(),
            ));
        }
        if qos == 2
            && !state
                .qos2_received(p.pkid, max_inflight)
                .map_err(Close::protocol)?
        {
            // A retransmission of a QoS 2 publish we already took: acknowledge it again.
            self.pending.push_back(PendingAck {
                kind,
                pkid: p.pkid,
                reason: 0,
                durable: None,
            });
            return Ok(None);
        }
        let allowed = match &self.identity {
            Some(who) => self.ctx.hub.policy().may_publish(who, &topic),
            None => false,
        };
        if !allowed {
            if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Denied) {
                tracing::info!(peer = %self.peer, client_id = %state.client_id, %topic, suppressed, "PUBLISH refused by acl");
            }
            if qos > 0 {
                let code = if self.protocol.is_v5() {
                    reason::NOT_AUTHORIZED
                } else {
                    0
                };
                self.pending.push_back(PendingAck {
                    kind,
                    pkid: p.pkid,
                    reason: code,
                    durable: None,
                });
            }
            return Ok(None);
        }
        let mut event = Event::new(topic.into(), p.payload, qos, p.retain, Origin::Mqtt);
        event.user_properties = props.user_properties;
        event.response_topic = props.response_topic.map(|t| Arc::from(t.as_str()));
        event.correlation_data = props.correlation_data;
        event.content_type = props.content_type.map(|t| Arc::from(t.as_str()));
        event.payload_format = props.payload_format;
        event.expires_ms = props.message_expiry.map(|s| now_ms() + u64::from(s) * 1000);
        Ok(Some((Arc::new(event), p.pkid, kind)))
    }

    /// MQTT 5 topic aliases from the client: a topic with an alias (re)defines it; an
    /// empty topic uses it. The topics are charged to the budget's client-state share
    /// (one connection at most an eighth of it): an alias that does not fit ends the
    /// connection with DISCONNECT 0x97 (counted).
    fn resolve_alias(&mut self, topic: String, alias: Option<u16>) -> Result<String, Close> {
        let Some(alias) = alias else { return Ok(topic) };
        if alias == 0 || alias > self.config.mqtt.max_topic_aliases {
            return Err(Close::Protocol(
                reason::TOPIC_ALIAS_INVALID,
                format!("topic alias {alias} out of range"),
            ));
        }
        if topic.is_empty() {
            let known = self.aliases.as_ref().and_then(|a| a.inbound.get(&alias));
            return known.cloned().ok_or_else(|| {
                Close::protocol(format!("topic alias {alias} used before it was set"))
            });
        }
        let cap = self.alias_bytes.pool().limit() / 8;
        if !self.alias_bytes.charge(alias_weight(&topic), cap) {
            self.ctx.hub.metrics.limits.aliases.inc();
            if let Some(suppressed) = self.ctx.hub.limit_log.allow() {
                tracing::warn!(peer = %self.peer, alias, suppressed,
                    "MQTT connection closed: its topic aliases would pass its part of the memory budget ([limits] memory)");
            }
            return Err(Close::Protocol(
                reason::QUOTA_EXCEEDED,
                "topic aliases over the memory budget".into(),
            ));
        }
        let aliases = self.aliases.get_or_insert_with(Default::default);
        if let Some(old) = aliases.inbound.insert(alias, topic.clone()) {
            self.alias_bytes.refund(alias_weight(&old));
        }
        Ok(topic)
    }

    async fn subscribe(&mut self, s: codec::Subscribe, state: &mut SessionState) {
        let config = self.config.clone();
        let cfg = &config.mqtt;
        let v5 = self.protocol.is_v5();
        let sub_id = s
            .properties
            .as_ref()
            .and_then(|p| p.subscription_identifier)
            .unwrap_or(0);
        let mut codes = Vec::with_capacity(s.filters.len());
        for f in s.filters {
            let (share, inner) = split_share(&f.filter);
            let valid = share.is_none_or(|g| !g.is_empty() && !g.contains(['+', '#', '/']))
                && topic::validate_filter(inner).is_ok()
                && inner.split('/').count() <= cfg.max_topic_levels
                && !(share.is_some() && f.no_local);
            let fresh = !state.subs.contains_key(&f.filter);
            let grant = match (&self.identity, valid) {
                (Some(who), true) => self.ctx.hub.policy().subscribe(who, inner),
                _ => crate::policy::Grant::Denied,
            };
            let code = if !valid {
                if v5 {
                    reason::TOPIC_FILTER_INVALID
                } else {
                    reason::v3::SUBACK_FAILURE
                }
            } else if grant.is_denied() {
                if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Denied) {
                    tracing::info!(peer = %self.peer, client_id = %state.client_id, filter = %f.filter, suppressed, "SUBSCRIBE refused by acl");
                }
                if v5 {
                    reason::NOT_AUTHORIZED
                } else {
                    reason::v3::SUBACK_FAILURE
                }
            } else if fresh && state.subs.len() >= cfg.max_subscriptions {
                if v5 {
                    reason::QUOTA_EXCEEDED
                } else {
                    reason::v3::SUBACK_FAILURE
                }
            } else {
                let opts = SubOptions {
                    qos: f.qos as u8,
                    no_local: f.no_local,
                    retain_as_published: f.retain_as_published,
                    retain_handling: f.retain_handling,
                    sub_id,
                    share: share.map(str::to_string),
                };
                let guard = grant.guard();
                let (qos, retain_handling) = (opts.qos, opts.retain_handling);
                let who = self
                    .identity
                    .clone()
                    .unwrap_or_else(crate::policy::Identity::nobody);
                if sessions::subscribe(&self.ctx.hub, state, &f.filter, &opts, &who, guard.clone())
                    .is_err()
                {
                    self.ctx.hub.metrics.limits.subscriptions.inc();
                    if let Some(suppressed) = self.ctx.hub.limit_log.allow() {
                        tracing::warn!(peer = %self.peer, client_id = %state.client_id, suppressed,
                            "SUBSCRIBE refused: the client's subscriptions would pass its part of the memory budget ([limits] memory)");
                    }
                    codes.push(if v5 {
                        reason::QUOTA_EXCEEDED
                    } else {
                        reason::v3::SUBACK_FAILURE
                    });
                    continue;
                }
                // Retained messages: not for shared subscriptions; retain handling 1 only
                // for a new subscription, 2 never (MQTT 5 section 3.3.1.3).
                let send_retained =
                    share.is_none() && (retain_handling == 0 || (retain_handling == 1 && fresh));
                if send_retained {
                    self.queue_retained(&state.outbox, inner, &opts, guard.as_ref());
                }
                self.ctx
                    .sessions
                    .persist_subscription(state, &f.filter, Some(&opts))
                    .await;
                state.subs.insert(f.filter.clone(), opts);
                qos
            };
            codes.push(code);
        }
        self.encode(&Packet::SubAck(codec::SubAck {
            pkid: s.pkid,
            codes,
            properties: None,
        }));
    }

    /// Queues the retained messages `filter` matches, through the session's outbox so
    /// they count against its queue limits and the memory budget like any delivery
    /// (what does not fit is dropped and counted there). A persistent session whose
    /// deliveries go to the store takes its QoS 1/2 ones in the connection's local
    /// queue instead: they are the retained set's, sent again at the next SUBSCRIBE,
    /// not publishes anyone was acknowledged for.
    fn queue_retained(
        &mut self,
        outbox: &Outbox,
        filter: &str,
        opts: &SubOptions,
        guard: Option<&ReadGuard>,
    ) {
        for event in self.ctx.hub.retained.matching(filter) {
            if guard.is_some_and(|g| !g.may_read(&event.topic)) {
                continue;
            }
            let mut d = Delivery::new(event.clone(), opts.qos.min(event.qos));
            d.retain = true;
            if opts.sub_id != 0 {
                let _ = d.sub_ids.push(opts.sub_id);
            }
            if d.qos > 0 && outbox.spool().is_some() {
                self.local.push_back(d);
                continue;
            }
            // This connection drains its own outbox: never a reason to wait.
            let _ = outbox.offer(d);
        }
    }

    async fn unsubscribe(&mut self, u: codec::Unsubscribe, state: &mut SessionState) {
        let mut codes = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            let existed = match state.subs.remove(f) {
                Some(opts) => {
                    let (router_filter, key) = sessions::router_key(f, &opts);
                    self.ctx
                        .hub
                        .router
                        .unsubscribe(router_filter, state.id(), key);
                    self.ctx.sessions.persist_subscription(state, f, None).await;
                    true
                }
                None => false,
            };
            codes.push(if existed {
                reason::SUCCESS
            } else {
                reason::NO_SUBSCRIPTION_EXISTED
            });
        }
        self.encode(&Packet::UnsubAck(codec::UnsubAck {
            pkid: u.pkid,
            codes,
            properties: None,
        }));
    }
}

/// Splits `$share/<group>/<filter>` into the group and the filter.
fn split_share(filter: &str) -> (Option<&str>, &str) {
    match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, inner)) => (Some(group), inner),
            None => (Some(""), ""),
        },
        None => (None, filter),
    }
}

/// Bytes one topic alias holds: its topic and the table entry.
pub(super) fn alias_weight(topic: &str) -> usize {
    topic.len() + 64
}

#[cfg(test)]
mod tests {
    use super::split_share;

    #[test]
    fn share_prefix() {
        assert_eq!(split_share("$share/g/a/+"), (Some("g"), "a/+"));
        assert_eq!(split_share("a/b"), (None, "a/b"));
        assert_eq!(split_share("$share/g"), (Some(""), ""));
    }
}
