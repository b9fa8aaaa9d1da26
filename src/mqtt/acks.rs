//! Acknowledging the client's QoS 1 and 2 publishes: in the order they arrived (MQTT 4.6),
//! each once its event is durable when a forwarding rule stored it, and all those of one
//! store commit in one write.

use super::codec::{Packet, PubAck, reason};
use super::connection::{Close, Conn};
use super::session::SessionState;
use crate::broker::Durable;
use crate::store::StoreError;
use std::collections::VecDeque;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AckKind {
    PubAck,
    PubRec,
}

/// An ack owed to the client, in the order its PUBLISHes arrived (MQTT 4.6).
pub(super) struct PendingAck {
    pub kind: AckKind,
    pub pkid: u16,
    pub reason: u8,
    pub durable: Option<Durable>,
}

impl Conn {
    /// Encodes every further ack that is already due, so the acks of one commit leave in
    /// one write instead of one write each.
    pub(super) fn ack_ready(&mut self, state: &mut SessionState) -> Result<(), Close> {
        while let Some(front) = self.pending.front_mut() {
            let done = match front.durable.as_mut() {
                None => Ok(0),
                Some(durable) => match durable.try_done() {
                    Some(result) => result,
                    None => return Ok(()),
                },
            };
            self.ack_front(done, state)?;
        }
        Ok(())
    }

    /// Sends the oldest owed ack once its event is durable.
    ///
    /// A QoS 2 publish that is refused (PUBREC >= 0x80, or a 3.1.1 connection closed
    /// instead of acked) ends its flow: its packet id is released here, so that the
    /// client's next publish with that id is a new message, not a duplicate to drop.
    pub(super) fn ack_front(
        &mut self,
        done: Result<u64, StoreError>,
        state: &mut SessionState,
    ) -> Result<(), Close> {
        let Some(ack) = self.pending.pop_front() else {
            return Ok(());
        };
        let release = |state: &mut SessionState| {
            if ack.kind == AckKind::PubRec {
                state.qos2_released(ack.pkid);
            }
        };
        let reason = match done {
            Ok(_) => ack.reason,
            Err(StoreError::Full) if self.protocol.is_v5() => {
                tracing::debug!(peer = %self.peer, "event refused: store full");
                reason::QUOTA_EXCEEDED
            }
            // MQTT 5 can say so; a 3.1.1 client only learns by losing the connection, and
            // then resends the unacknowledged publish.
            Err(e) if self.protocol.is_v5() => {
                tracing::warn!(peer = %self.peer, error = %e, "event not stored");
                reason::UNSPECIFIED_ERROR
            }
            Err(e) => {
                release(state);
                return Err(Close::Protocol(
                    reason::UNSPECIFIED_ERROR,
                    format!("event not stored ({e}); closing so the client retries"),
                ));
            }
        };
        if reason >= 0x80 {
            release(state);
        }
        let a = PubAck {
            pkid: ack.pkid,
            reason,
            properties: None,
        };
        let packet = match ack.kind {
            AckKind::PubAck => Packet::PubAck(a),
            AckKind::PubRec => Packet::PubRec(a),
        };
        self.encode(&packet);
        Ok(())
    }
}

/// Resolves when the oldest owed ack may be sent: at once if it needed no commit.
pub(super) async fn first_durable(pending: &mut VecDeque<PendingAck>) -> Result<u64, StoreError> {
    match pending.front_mut().and_then(|p| p.durable.as_mut()) {
        Some(durable) => durable.await,
        None => Ok(0),
    }
}
