//! The answer to CONNECT: CONNACK accepting the client (with the MQTT 5 properties that
//! tell it ferry's limits), or refusing it with the reason code of its protocol.

use super::codec::{self, Packet, reason};
use super::connection::Conn;
use crate::policy::AuthError;

impl Conn {
    /// A CONNECT whose credentials (or client id) the policy refused: CONNACK with the
    /// reason, then close. The password is never logged.
    pub(super) async fn refuse_auth(&mut self, e: AuthError, client_id: &str, user: Option<&str>) {
        let code = if self.protocol.is_v5() {
            e.mqtt5_code()
        } else {
            e.mqtt3_code()
        };
        if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Refused) {
            tracing::info!(peer = %self.peer, client_id, user = %user.unwrap_or(""), reason = %e, code, suppressed, "MQTT CONNECT refused");
        }
        self.send_refusal(code).await;
    }

    pub(super) async fn refuse(&mut self, code: u8, client_id: &str) {
        if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Refused) {
            tracing::info!(peer = %self.peer, client_id, code, suppressed, "MQTT CONNECT refused");
        }
        let code = if self.protocol.is_v5() && code < 0x80 {
            reason::CLIENT_IDENTIFIER_NOT_VALID
        } else {
            code
        };
        self.send_refusal(code).await;
    }

    /// CONNACK with a failure code (the caller then closes the connection).
    async fn send_refusal(&mut self, code: u8) {
        let _ = self
            .send_now(&Packet::ConnAck(codec::ConnAck {
                session_present: false,
                code,
                properties: None,
            }))
            .await;
    }

    pub(super) fn connack(&self, present: bool, assigned: Option<String>) -> codec::ConnAck {
        let cfg = &self.config.mqtt;
        let properties = self.protocol.is_v5().then(|| {
            Box::new(codec::ConnAckProperties {
                receive_maximum: Some(cfg.max_inflight),
                maximum_packet_size: Some(u32::try_from(self.max_packet).unwrap_or(u32::MAX)),
                topic_alias_maximum: Some(cfg.max_topic_aliases),
                assigned_client_id: assigned,
                retain_available: Some(1),
                wildcard_available: Some(1),
                subscription_identifiers_available: Some(1),
                shared_subscription_available: Some(1),
                ..Default::default()
            })
        });
        codec::ConnAck {
            session_present: present,
            code: reason::SUCCESS,
            properties,
        }
    }
}
