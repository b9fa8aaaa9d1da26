//! The upstream MQTT client, over rumqttc's MQTT 3.1.1 or MQTT 5 implementation, behind
//! one small interface the link loop drives: connect, publish, and what happened.
//!
//! With MQTT 5 every forwarded event carries the user property `ferry-id` =
//! `<gateway id>-<store seq>`: unique per event and stable across resends, so the cloud
//! side can drop the duplicates a crash or reconnect may cause.

use crate::config::{UpstreamConfig, UpstreamProtocol};
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
    /// The upstream acknowledged `pkid`; `refused` holds a failure reason code (MQTT 5).
    Acked {
        pkid: u16,
        refused: Option<u8>,
    },
    Other,
}

/// The request side: cheap to share across awaits (the event loop is not `Sync`).
pub(super) enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The connection side, polled by the link loop.
pub(super) enum Connection {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// A fresh client for one connection attempt; `Err` is a reason to retry later (e.g. an
/// unreadable `ca_file`).
pub(super) fn connect(c: &UpstreamConfig) -> Result<(Client, Connection), String> {
    {
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(c.connect_timeout.as_secs().max(1));
        // The request channel holds at most one window, so publishing never waits on it.
        let cap = usize::from(c.inflight) + 16;
        match c.protocol {
            UpstreamProtocol::V311 => {
                let mut opts =
                    rumqttc::MqttOptions::new(c.client_id.clone(), c.url.host.clone(), c.url.port);
                opts.set_keep_alive(c.keep_alive);
                opts.set_clean_session(true);
                opts.set_inflight(c.inflight);
                opts.set_max_packet_size(1 << 20, V311_MAX_PACKET as usize);
                if let Some(u) = &c.username {
                    opts.set_credentials(u.clone(), c.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport(c)? {
                    opts.set_transport(t);
                }
                let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, cap);
                eventloop.set_network_options(net);
                Ok((Client::V4(client), Connection::V4(Box::new(eventloop))))
            }
            UpstreamProtocol::V5 => {
                let mut opts = rumqttc::v5::MqttOptions::new(
                    c.client_id.clone(),
                    c.url.host.clone(),
                    c.url.port,
                );
                opts.set_keep_alive(c.keep_alive);
                opts.set_clean_start(true);
                opts.set_outgoing_inflight_upper_limit(c.inflight);
                opts.set_max_packet_size(Some(1 << 20));
                if let Some(u) = &c.username {
                    opts.set_credentials(u.clone(), c.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport(c)? {
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
                        other => Some(pub_ack_code(other)),
                    };
                    Ok(LinkEvent::Acked {
                        pkid: a.pkid,
                        refused,
                    })
                }
                rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid)) => {
                    Ok(LinkEvent::Written(pkid))
                }
                _ => Ok(LinkEvent::Other),
            },
        }
    }
}

impl Client {
    /// Hands one event to the client (never waits: the channel holds a window).
    pub async fn publish(
        &self,
        topic: String,
        qos: u8,
        payload: Bytes,
        ferry_id: String,
    ) -> Result<(), String> {
        let result = match self {
            Client::V4(c) => {
                let qos = if qos == 0 {
                    rumqttc::QoS::AtMostOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                c.publish_bytes(topic, qos, false, payload).await
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
                return c
                    .publish_bytes_with_properties(topic, qos, false, payload, props)
                    .await
                    .map_err(|e| format!("client request failed: {e}"));
            }
        };
        result.map_err(|e| format!("client request failed: {e}"))
    }

    pub fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|_| ()),
            Client::V5(c) => c.try_disconnect().map_err(|_| ()),
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
fn transport(c: &UpstreamConfig) -> Result<Option<rumqttc::Transport>, String> {
    if !c.url.scheme.is_tls() {
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
fn transport(_c: &UpstreamConfig) -> Result<Option<rumqttc::Transport>, String> {
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
