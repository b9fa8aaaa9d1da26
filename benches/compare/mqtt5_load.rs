//! A direct MQTT 5 publisher (rumqttc v5) sending what ferry's MQTT 5 upstream link
//! sends: QoS 1, `inflight` in flight, each publish with one user property
//! `ferry-id` = `<id>-<seq>`. It is the like-for-like peer of ferry's drain.

use crate::payload;
use anyhow::{Result, bail};
use rumqttc::NetworkOptions;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::time::{Duration, Instant};

/// Publishes `n` messages of `size` bytes to `topic` and returns once all were acked.
pub async fn publish(
    port: u16,
    id: &str,
    topic: &str,
    inflight: u16,
    size: usize,
    n: u64,
) -> Result<()> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_max_packet_size(Some(1 << 20));
    o.set_outgoing_inflight_upper_limit(inflight);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    let (client, mut el) = AsyncClient::new(o, usize::from(inflight) + 16);
    let (topic, id) = (topic.to_string(), id.to_string());
    let sender = tokio::spawn(async move {
        for seq in 0..n {
            let props = PublishProperties {
                user_properties: vec![("ferry-id".into(), format!("{id}-{seq}"))],
                ..Default::default()
            };
            let body = payload::make(seq, size);
            if client
                .publish_bytes_with_properties(topic.clone(), QoS::AtLeastOnce, false, body, props)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(30) + Duration::from_millis(n);
    let mut acked = 0u64;
    while acked < n {
        if Instant::now() >= end {
            sender.abort();
            bail!("MQTT 5 publisher: only {acked} of {n} acked in time");
        }
        match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                sender.abort();
                bail!("MQTT 5 publisher: {e}");
            }
            Err(_) => {
                sender.abort();
                bail!("MQTT 5 publisher: stalled at {acked} of {n}");
            }
        }
    }
    sender.abort();
    Ok(())
}
