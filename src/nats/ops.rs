//! PUB/HPUB, SUB and UNSUB on a connection: mapping between NATS subjects and the
//! canonical topic space, and the calls into the hub and router.

use super::connection::Conn;
use super::proto::{ProtoError, encode_err, encode_hmsg, encode_no_responders_block};
use super::session::Subscribed;
use crate::event::{Event, Origin};
use crate::router::Subscription;
use crate::topic::nats::subject_to_topic;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

impl Conn {
    /// PUB and HPUB. `props` are the decoded headers. Only the event and what the reply
    /// needs live across the hub's wait (this future is part of every connection's
    /// task): the checks and the event are made in [`Conn::admit_publish`].
    pub(super) async fn publish(
        &mut self,
        subject: Bytes,
        reply: Option<Bytes>,
        props: Vec<(String, String)>,
        payload: Bytes,
    ) {
        let Some((event, reply_topic)) =
            self.admit_publish(&subject, reply.as_deref(), props, payload)
        else {
            return;
        };
        let published = self.ctx.hub.publish(event, self.conn_id).await;
        self.ok();
        let (Some(reply), Some(reply_topic)) = (reply, reply_topic) else {
            return;
        };
        match published {
            Ok(p) => match p.durable {
                // The store is the responder: its PubAck answers the request.
                Some(durable) => self.expect_commit(reply_topic, durable),
                None if p.routed.delivered + p.routed.dropped == 0 => {
                    self.no_responders(&subject, &reply)
                }
                None => {}
            },
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "NATS request not stored");
                self.reply_failed(reply_topic, e.to_string());
            }
        }
    }

    /// The subject mapped to a topic, the ACL, and the event with its reply topic. None:
    /// dropped or refused here (answered as nats-server does).
    fn admit_publish(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        props: Vec<(String, String)>,
        payload: Bytes,
    ) -> Option<(Arc<Event>, Option<Arc<str>>)> {
        let mapped = subject_to_topic(subject).and_then(|topic| {
            let reply_topic = reply.map(subject_to_topic).transpose()?;
            Ok((topic, reply_topic))
        });
        let (topic, reply_topic) = match mapped {
            Ok(m) => m,
            Err(e) => {
                // nats-server only reports bad publish subjects in pedantic mode.
                tracing::debug!(peer = %self.peer, subject = %String::from_utf8_lossy(subject), reason = %e, "NATS publish dropped: subject has no topic form");
                if self.session.pedantic() {
                    self.soft_err(&ProtoError::InvalidPublishSubject);
                } else {
                    self.ok();
                }
                return None;
            }
        };
        let allowed = match &self.identity {
            Some(who) => self.ctx.hub.policy().may_publish(who, &topic),
            None => false,
        };
        if !allowed {
            // nats-server's words; the connection stays open.
            let line = format!(
                "Permissions Violation for Publish to \"{}\"",
                String::from_utf8_lossy(subject)
            );
            tracing::debug!(peer = %self.peer, %topic, "NATS publish refused by acl");
            encode_err(&line, &mut self.wbuf);
            return None;
        }
        let reply_topic: Option<Arc<str>> = reply_topic.map(Arc::from);
        let mut event = Event::new(topic.into(), payload, 0, false, Origin::Nats);
        event.user_properties = props;
        event.response_topic = reply_topic.clone();
        Some((Arc::new(event), reply_topic))
    }

    /// The 503 status nats-server writes straight to a requester nobody answered, on its
    /// own subscription matching the reply subject (nats-server 2.12 form).
    fn no_responders(&mut self, subject: &[u8], reply: &[u8]) {
        if !self.session.wants_no_responders() {
            return;
        }
        let Some(sid) = self.session.reply_sid(reply) else {
            return;
        };
        let mut block = BytesMut::new();
        encode_no_responders_block(subject, &mut block);
        encode_hmsg(reply, &sid, None, &block, b"", &mut self.wbuf);
    }

    pub(super) fn subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        match self.session.subscribe(subject, queue, sid) {
            Ok(Subscribed::New {
                slot,
                filter,
                group,
            }) => {
                let grant = match &self.identity {
                    Some(who) => self.ctx.hub.policy().subscribe(who, &filter),
                    None => crate::policy::Grant::Denied,
                };
                if grant.is_denied() {
                    self.session.unsubscribe(sid, None);
                    let subject = String::from_utf8_lossy(subject);
                    let line = match queue {
                        Some(q) => format!(
                            "Permissions Violation for Subscription to \"{subject}\" using queue \"{}\"",
                            String::from_utf8_lossy(q)
                        ),
                        None => format!("Permissions Violation for Subscription to \"{subject}\""),
                    };
                    tracing::debug!(peer = %self.peer, %filter, "NATS subscription refused by acl");
                    encode_err(&line, &mut self.wbuf);
                    return;
                }
                let made = self.ctx.hub.router.subscribe(
                    &filter,
                    Subscription {
                        outbox: self.outbox.clone(),
                        qos: 0,
                        key: slot,
                        tag: slot,
                        per_subscription: true,
                        no_local: !self.session.echo(),
                        retain_as_published: false,
                        group,
                        read: grant.guard(),
                        who: self
                            .identity
                            .clone()
                            .unwrap_or_else(crate::policy::Identity::nobody),
                    },
                );
                if made.is_err() {
                    self.session.unsubscribe(sid, None);
                    self.ctx.hub.metrics.limits.subscriptions.inc();
                    if let Some(suppressed) = self.ctx.hub.limit_log.allow() {
                        tracing::warn!(peer = %self.peer, %filter, suppressed,
                            "NATS SUB refused: the client's subscriptions would pass its part of the memory budget ([limits] memory)");
                    }
                    self.soft_err(&ProtoError::MaxSubscriptions);
                    return;
                }
                self.ok();
            }
            Ok(Subscribed::Existing) => self.ok(),
            Err(e) => self.soft_err(&e),
        }
    }

    pub(super) fn unsubscribe(&mut self, sid: &[u8], max: Option<u64>) {
        if let Some((filter, slot)) = self.session.unsubscribe(sid, max) {
            self.ctx.hub.router.unsubscribe(&filter, self.conn_id, slot);
        }
        self.ok();
    }
}
