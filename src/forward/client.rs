//! The upstream client behind one small interface the link loop drives: connect, prepare
//! and publish, and what happened. MQTT 3.1.1 and 5 over rumqttc; NATS and JetStream over
//! ferry's own client ([`super::nats`]).
//!
//! Every forwarded event carries an idempotency key `<gateway id>-<store seq>`, unique
//! per event and stable across resends, so the cloud side can drop the duplicates a crash
//! or reconnect may cause: the MQTT 5 user property `ferry-id`, or the `Nats-Msg-Id`
//! header that JetStream de-duplicates by.

use super::nats;
use crate::config::{UpstreamConfig, UpstreamProtocol, UpstreamUrl};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as v5p;
use rumqttc::{NetworkOptions, Outgoing};

/// The largest packet ferry writes to an MQTT 3.1.1 upstream (that protocol has no way
/// for a server to say what it takes).
const V311_MAX_PACKET: u32 = 256 << 20;

/// Bytes of the PUBLISH packet that forwards `payload_len` bytes on `topic` at QoS 1 with
/// the `ferry-id` property `ferry_id` (MQTT 5; a 3.1.1 packet is smaller): fixed header,
/// topic, packet id, properties, payload.
pub(super) fn publish_size(topic: &str, payload_len: usize, ferry_id: &str) -> usize {
    let varint = |n: usize| match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    // User property: identifier byte, then two length-prefixed strings.
    let props = 1 + 2 + "ferry-id".len() + 2 + ferry_id.len();
    let len = 2 + topic.len() + 2 + varint(props) + props + payload_len;
    1 + varint(len) + len
}

/// What the client reports.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LinkEvent {
    /// CONNACK accepted; `max_packet` is the largest packet the upstream takes (MQTT 5
    /// servers may say; rumqttc refuses to write a larger one and drops the link).
    Connected {
        max_packet: Option<u32>,
    },
    /// The next publish handed over was written with this packet id (0 for QoS 0).
    Written(u16),
    /// The upstream answered `pkid`: stored (`duplicate`: JetStream had it already), or
    /// `refused` (MQTT 5 reason code >= 0x80, a JetStream API error).
    Acked {
        pkid: u16,
        refused: Option<Refusal>,
        duplicate: bool,
    },
    Other,
}

/// Why the upstream refused one event, for the log, the metrics and the dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// Short and stable (a metric label): "0x87", "js-10077".
    pub reason: String,
    pub detail: String,
}

impl Refusal {
    fn puback(code: u8) -> Refusal {
        Refusal {
            reason: format!("{code:#04x}"),
            detail: format!("PUBACK reason code {code:#04x} ({})", reason_name(code)),
        }
    }
}

/// One event ready to hand to the client, in the upstream protocol's terms.
pub(super) enum Prepared {
    Mqtt {
        topic: String,
        qos: u8,
        payload: Bytes,
        ferry_id: String,
    },
    Nats {
        subject: String,
        headers: bytes::BytesMut,
        payload: Bytes,
    },
}

impl Prepared {
    /// What the upstream's maximum packet (MQTT) or payload (NATS: headers included)
    /// size is compared with.
    pub fn size(&self) -> usize {
        match self {
            Prepared::Mqtt {
                topic,
                payload,
                ferry_id,
                ..
            } => publish_size(topic, payload.len(), ferry_id),
            Prepared::Nats {
                headers, payload, ..
            } => headers.len() + payload.len(),
        }
    }
}

/// The request side: cheap to share across awaits (the event loop is not `Sync`).
pub(super) enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
    Nats(nats::Client),
}

/// The connection side, polled by the link loop.
pub(super) enum Connection {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
    Nats(nats::Connection),
}

/// A fresh client for one connection attempt to `url` (one of the upstream's `urls`);
/// `Err` is a reason to retry later (e.g. an unreadable `ca_file`).
pub(super) fn connect(
    c: &UpstreamConfig,
    url: &UpstreamUrl,
) -> Result<(Client, Connection), String> {
    if c.protocol.is_nats() {
        let (client, conn) = nats::connect(c, url);
        return Ok((Client::Nats(client), Connection::Nats(conn)));
    }
    {
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(c.connect_timeout.as_secs().max(1));
        // The request channel holds at most one window, so publishing never waits on it.
        let cap = usize::from(c.inflight) + 16;
        match c.protocol {
            UpstreamProtocol::V311 => {
                let mut opts =
                    rumqttc::MqttOptions::new(c.client_id.clone(), url.host.clone(), url.port);
                opts.set_keep_alive(c.keep_alive);
                opts.set_clean_session(true);
                opts.set_inflight(c.inflight);
                opts.set_max_packet_size(1 << 20, V311_MAX_PACKET as usize);
                if let Some(u) = &c.username {
                    opts.set_credentials(u.clone(), c.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport(c, url)? {
                    opts.set_transport(t);
                }
                let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, cap);
                eventloop.set_network_options(net);
                Ok((Client::V4(client), Connection::V4(Box::new(eventloop))))
            }
            UpstreamProtocol::V5 | UpstreamProtocol::JetStream | UpstreamProtocol::NatsCore => {
                let mut opts =
                    rumqttc::v5::MqttOptions::new(c.client_id.clone(), url.host.clone(), url.port);
                opts.set_keep_alive(c.keep_alive);
                opts.set_clean_start(true);
                opts.set_outgoing_inflight_upper_limit(c.inflight);
                opts.set_max_packet_size(Some(1 << 20));
                if let Some(u) = &c.username {
                    opts.set_credentials(u.clone(), c.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport(c, url)? {
                    opts.set_transport(t);
                }
                opts.set_network_options(net);
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(opts, cap);
                Ok((Client::V5(client), Connection::V5(Box::new(eventloop))))
            }
        }
    }
}

impl Connection {
    /// Drives the connection; cancel-safe enough to sit in a `select!` (rumqttc keeps
    /// its own buffers across polls).
    pub async fn poll(&mut self) -> Result<LinkEvent, String> {
        match self {
            Connection::V4(el) => match el.poll().await.map_err(|e| e.to_string())? {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => {
                    if ack.code == rumqttc::ConnectReturnCode::Success {
                        Ok(LinkEvent::Connected {
                            max_packet: Some(V311_MAX_PACKET),
                        })
                    } else {
                        Err(format!("connection refused: {:?}", ack.code))
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a)) => Ok(LinkEvent::Acked {
                    pkid: a.pkid,
                    refused: None,
                    duplicate: false,
                }),
                rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => Ok(LinkEvent::Written(pkid)),
                _ => Ok(LinkEvent::Other),
            },
            Connection::V5(el) => match el.poll().await.map_err(|e| e.to_string())? {
                rumqttc::v5::Event::Incoming(v5p::Packet::ConnAck(ack)) => {
                    if ack.code == v5p::ConnectReturnCode::Success {
                        let max_packet = ack.properties.as_ref().and_then(|p| p.max_packet_size);
                        Ok(LinkEvent::Connected { max_packet })
                    } else {
                        Err(format!("connection refused: {:?}", ack.code))
                    }
                }
                rumqttc::v5::Event::Incoming(v5p::Packet::PubAck(a)) => {
                    let refused = match a.reason {
                        v5p::PubAckReason::Success | v5p::PubAckReason::NoMatchingSubscribers => {
                            None
                        }
                        other => Some(Refusal::puback(pub_ack_code(other))),
                    };
                    Ok(LinkEvent::Acked {
                        pkid: a.pkid,
                        refused,
                        duplicate: false,
                    })
                }
                rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid)) => {
                    Ok(LinkEvent::Written(pkid))
                }
                _ => Ok(LinkEvent::Other),
            },
            Connection::Nats(c) => c.poll().await,
        }
    }
}

impl Client {
    /// `event`'s remote form for this upstream; for NATS the topic becomes a subject as
    /// ferry's NATS listener maps it (`Err`: it has no NATS form).
    pub fn prepare(
        &self,
        topic: String,
        qos: u8,
        payload: Bytes,
        ferry_id: String,
        user_properties: &[(String, String)],
    ) -> Result<Prepared, crate::topic::nats::MapError> {
        match self {
            Client::Nats(_) => Ok(Prepared::Nats {
                subject: crate::topic::nats::topic_to_subject(&topic)?,
                headers: nats::headers(&ferry_id, user_properties),
                payload,
            }),
            Client::V4(_) | Client::V5(_) => Ok(Prepared::Mqtt {
                topic,
                qos,
                payload,
                ferry_id,
            }),
        }
    }

    /// Hands one event to the client (never waits: the channel holds a window). The
    /// QoS it travels at: core NATS and JetStream publishes are acknowledged (1).
    pub async fn publish(&self, event: Prepared) -> Result<u8, String> {
        let (topic, qos, payload, ferry_id) = match event {
            Prepared::Mqtt {
                topic,
                qos,
                payload,
                ferry_id,
            } => (topic, qos, payload, ferry_id),
            Prepared::Nats {
                subject,
                headers,
                payload,
            } => {
                let Client::Nats(c) = self else {
                    return Err("a NATS publish prepared for an MQTT upstream".into());
                };
                c.publish(subject, headers, payload).await?;
                return Ok(1);
            }
        };
        let result = match self {
            Client::Nats(_) => return Err("an MQTT publish prepared for a NATS upstream".into()),
            Client::V4(c) => {
                let qos = if qos == 0 {
                    rumqttc::QoS::AtMostOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                c.publish_bytes(topic, qos, false, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                let qos = if qos == 0 {
                    rumqttc::v5::mqttbytes::QoS::AtMostOnce
                } else {
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce
                };
                let props = v5p::PublishProperties {
                    user_properties: vec![("ferry-id".into(), ferry_id)],
                    ..Default::default()
                };
                c.publish_bytes_with_properties(topic, qos, false, payload, props)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        result.map_err(|e| format!("client request failed: {e}"))?;
        Ok(qos)
    }

    pub fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|_| ()),
            Client::V5(c) => c.try_disconnect().map_err(|_| ()),
            Client::Nats(c) => {
                c.disconnect();
                Ok(())
            }
        };
    }
}

/// The name MQTT 5 gives a PUBACK reason code, for logs and dead letters.
pub(super) fn reason_name(code: u8) -> &'static str {
    match code {
        0x80 => "unspecified error",
        0x83 => "implementation specific error",
        0x87 => "not authorized",
        0x90 => "topic name invalid",
        0x91 => "packet identifier in use",
        0x97 => "quota exceeded",
        0x99 => "payload format invalid",
        _ => "unknown reason",
    }
}

fn pub_ack_code(r: v5p::PubAckReason) -> u8 {
    match r {
        v5p::PubAckReason::Success => 0x00,
        v5p::PubAckReason::NoMatchingSubscribers => 0x10,
        v5p::PubAckReason::UnspecifiedError => 0x80,
        v5p::PubAckReason::ImplementationSpecificError => 0x83,
        v5p::PubAckReason::NotAuthorized => 0x87,
        v5p::PubAckReason::TopicNameInvalid => 0x90,
        v5p::PubAckReason::PacketIdentifierInUse => 0x91,
        v5p::PubAckReason::QuotaExceeded => 0x97,
        v5p::PubAckReason::PayloadFormatInvalid => 0x99,
    }
}

#[cfg(feature = "tls")]
fn transport(c: &UpstreamConfig, url: &UpstreamUrl) -> Result<Option<rumqttc::Transport>, String> {
    if !url.scheme.is_tls() {
        return Ok(None);
    }
    let identity = c.cert_file.as_deref().zip(c.key_file.as_deref());
    let tls = super::tls::client_config(super::tls::ClientTls {
        ca_file: c.ca_file.as_deref(),
        identity,
        alpn: &c.alpn,
    })
    .map_err(|e| e.to_string())?;
    Ok(Some(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls),
    )))
}

#[cfg(not(feature = "tls"))]
fn transport(
    _c: &UpstreamConfig,
    _url: &UpstreamUrl,
) -> Result<Option<rumqttc::Transport>, String> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ferry's own count must match what rumqttc will check against the upstream's
    /// maximum packet size, or an event that fits would be dead-lettered (or one that does
    /// not would drop the link at every resend).
    #[test]
    fn publish_size_is_what_rumqttc_writes() {
        for (topic_len, payload_len) in [(1, 0), (9, 100), (200, 16_000), (3, 2_000_000)] {
            let topic = "t".repeat(topic_len);
            let id = "gateway-7-123456789";
            let mut p = v5p::Publish::new(
                topic.clone(),
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                vec![0u8; payload_len],
                Some(v5p::PublishProperties {
                    user_properties: vec![("ferry-id".into(), id.into())],
                    ..Default::default()
                }),
            );
            p.pkid = 1;
            assert_eq!(
                publish_size(&topic, payload_len, id),
                p.size(),
                "{topic_len} {payload_len}"
            );
        }
    }
}
