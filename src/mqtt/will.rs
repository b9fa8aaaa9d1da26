//! Will messages: published when a connection ends without a clean DISCONNECT, after the
//! MQTT 5 will delay, unless the session was resumed meanwhile (MQTT 5 section 3.1.3.2.2).

use super::codec::LastWill;
use super::listener::MqttCtx;
use crate::event::{Event, Origin, now_ms};
use crate::policy::Identity;
use std::sync::Arc;
use std::time::Duration;

/// Publishes `will` of the connection `conn_id` of `client_id`, now or after its delay
/// (capped by the session's expiry, since the will is due when the session ends).
pub fn publish(
    ctx: Arc<MqttCtx>,
    client_id: String,
    who: Identity,
    conn_id: u64,
    will: LastWill,
    session_expiry: u32,
) {
    let delay = will.properties.will_delay.unwrap_or(0).min(session_expiry);
    let mut event = Event::new(
        will.topic.as_str().into(),
        will.payload,
        will.qos as u8,
        will.retain,
        Origin::Mqtt,
    );
    let p = will.properties;
    event.user_properties = p.user_properties;
    event.response_topic = p.response_topic.map(|t| Arc::from(t.as_str()));
    event.correlation_data = p.correlation_data;
    event.content_type = p.content_type.map(|t| Arc::from(t.as_str()));
    event.payload_format = p.payload_format;
    event.expires_ms = p.message_expiry.map(|s| now_ms() + u64::from(s) * 1000);
    tokio::spawn(async move {
        if delay > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
            if ctx.sessions.resumed_since(&client_id, conn_id) {
                return;
            }
        }
        if !ctx.hub.policy().may_publish(&who, &event.topic) {
            if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Denied) {
                tracing::info!(%client_id, topic = %event.topic, suppressed, "will refused by acl");
            }
            return;
        }
        if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Disconnected) {
            tracing::info!(%client_id, topic = %event.topic, suppressed, "publishing will");
        }
        if let Err(e) = ctx.hub.publish(Arc::new(event), conn_id).await {
            tracing::warn!(%client_id, error = %e, "will not stored");
        }
    });
}
