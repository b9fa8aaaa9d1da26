//! A session's start and end on its connection: CONNECT answered (authentication, the
//! session opened or taken over, CONNACK, what the last connection left unacknowledged
//! sent again), and after the run the session parked or ended, the will, and an MQTT 5
//! DISCONNECT saying why. Both run once per connection and are boxed by the caller
//! (`Conn::session`), so their state is not part of every connection's task.

use super::codec::{self, Packet, PubAck, reason};
use super::connection::{Close, Conn};
use super::session::{NEVER, SessionState};
use super::sessions::{OpenError, Opened};
use crate::policy::{AuthError, Credentials, Identity, Protocol as AuthProtocol};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The DISCONNECT ferry sends when it ends a connection is a courtesy: a client that does
/// not take it within this is not waited for (its session is already parked).
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// A session that CONNACK opened: what its run and its end need.
pub(super) struct Started {
    /// Boxed: it lives as long as the connection, off the task's state.
    pub opened: Box<Opened>,
    pub client_id: String,
    /// Seconds, as granted (MQTT 5 may get the server's).
    pub keep_alive: u16,
    pub sessions: Arc<super::sessions::Sessions>,
}

/// A client id for a client that sent none: random, so that it never names a session
/// that an earlier client (before a restart too) was given, as mosquitto's `auto-<uuid>`.
fn assigned_id(conn_id: u64) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness (never seen on Linux): time and connection still differ per
        // process start and client.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (u128::from(conn_id) << 64)).to_be_bytes();
    }
    let mut id = String::with_capacity(11 + 32);
    id.push_str("ferry-auto-");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

impl Conn {
    /// Authenticates the client, opens its session and sends CONNACK. None: refused
    /// (answered already); with a `Close`: CONNACK could not be sent.
    pub(super) async fn start(
        &mut self,
        mut connect: Box<codec::Connect>,
    ) -> Option<(Started, Option<Close>)> {
        self.protocol = connect.protocol;
        let v5 = self.protocol.is_v5();
        let p = &connect.properties;
        if let Some(m) = p.maximum_packet_size {
            self.client_max_packet = m as usize;
        }
        if let Some(r) = p.receive_maximum {
            self.client_receive_max = usize::from(r.max(1));
        }
        self.client_alias_max = if self.config.mqtt.outbound_topic_aliases {
            // Never more than we allow ourselves: each alias holds a topic.
            p.topic_alias_maximum
                .unwrap_or(0)
                .min(self.config.mqtt.max_topic_aliases)
        } else {
            0
        };

        let mut client_id = connect.client_id.clone();
        let mut assigned = None;
        if client_id.is_empty() {
            // 3.1.1 section 3.1.3.1: an empty id only with a clean session; MQTT 5 assigns one.
            if !connect.clean_start && !v5 {
                self.refuse(reason::v3::IDENTIFIER_REJECTED, &connect.client_id)
                    .await;
                return None;
            }
            client_id = assigned_id(self.conn_id);
            assigned = Some(client_id.clone());
        }
        let creds = Credentials {
            protocol: AuthProtocol::Mqtt,
            peer: self.peer.ip(),
            client_id: &client_id,
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
            token: None,
            cert_user: self.cert_user.as_deref(),
        };
        let identity = match Box::pin(self.ctx.hub.policy().authenticate(creds)).await {
            Ok(id) => id,
            Err(e) => {
                Box::pin(self.refuse_auth(e, &client_id, connect.username.as_deref())).await;
                return None;
            }
        };
        // What the client asks for; the session gets at most mqtt.max_session_expiry.
        let expiry = if v5 {
            p.session_expiry.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER
        };
        let sessions = self.ctx.sessions.clone();
        // Boxed, here and at `close`: these run once per connection, and unboxed their
        // state machines (tens of KiB) would be part of every connection's task for its
        // whole life.
        let owner = identity.user().map(str::to_string);
        let mut opened = match Box::pin(sessions.open(
            &client_id,
            connect.clean_start,
            expiry,
            self.conn_id,
            owner,
        ))
        .await
        {
            Ok(o) => Box::new(o), // off the task: it lives as long as the connection
            Err(OpenError::NotOwner) => {
                self.ctx.hub.policy().refused_takeover(AuthProtocol::Mqtt);
                Box::pin(self.refuse_auth(
                    AuthError::ClientIdInUse,
                    &client_id,
                    connect.username.as_deref(),
                ))
                .await;
                return None;
            }
            Err(OpenError::TooManySessions) => {
                if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Refused) {
                    tracing::warn!(peer = %self.peer, %client_id, max = self.config.mqtt.max_sessions, suppressed, "MQTT CONNECT refused: mqtt.max_sessions reached, every persistent session online");
                }
                let code = if v5 {
                    reason::QUOTA_EXCEEDED
                } else {
                    reason::v3::SERVER_UNAVAILABLE
                };
                Box::pin(self.refuse(code, &client_id)).await;
                return None;
            }
        };
        self.will = connect.will.take().map(Box::new);
        self.identity = Some(identity);
        self.charge.admit();
        let max_ka = u16::try_from(self.config.mqtt.max_keep_alive.as_secs()).unwrap_or(u16::MAX);
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        if v5 && (keep_alive == 0 || keep_alive > max_ka) && max_ka < u16::MAX {
            keep_alive = max_ka;
            server_keep_alive = Some(max_ka);
        }
        let mut connack = self.connack(opened.present, assigned);
        if let Some(p) = connack.properties.as_mut() {
            p.server_keep_alive = server_keep_alive;
            // MQTT 5 section 3.2.2.3.2: the server tells the client the expiry it uses
            // when it is not the one asked for (capped at mqtt.max_session_expiry).
            if opened.state.expiry != expiry {
                p.session_expiry = Some(opened.state.expiry);
            }
        }
        if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Connected) {
            tracing::info!(peer = %self.peer, %client_id, user = %self.identity.as_ref().and_then(Identity::user).unwrap_or(""),
                transport = self.transport.as_str(), protocol = ?self.protocol, keep_alive = connect.keep_alive,
                clean = connect.clean_start, session_present = opened.present, suppressed, "MQTT client connected");
        }
        let refused = match self.send_now(&Packet::ConnAck(connack)).await {
            Ok(()) => {
                self.resume(&mut opened.state);
                None
            }
            Err(close) => Some(close),
        };
        let started = Started {
            opened,
            client_id,
            keep_alive,
            sessions,
        };
        Some((started, refused))
    }

    /// After the session: the acks still to remove, the session parked or ended, the
    /// will, and an MQTT 5 DISCONNECT saying why.
    pub(super) async fn end(&mut self, started: Started, close: Close) {
        let Started {
            opened,
            client_id,
            sessions,
            ..
        } = started;
        let v5 = self.protocol.is_v5();
        if matches!(close, Close::Protocol(..)) {
            self.ctx.hub.metrics.protocol_errors.inc();
        }
        if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Disconnected) {
            tracing::info!(peer = %self.peer, %client_id, reason = %close, suppressed, "MQTT client disconnected");
        }
        let will = if close.publishes_will() {
            self.will.take()
        } else {
            None
        };
        let expiry = opened.state.expiry;
        // Acks read with the packet that ended the connection (a PUBACK then DISCONNECT).
        self.remove_acked(&opened.state).await;
        // The session before the goodbye: a connection taking it over waits for it to be
        // parked, and must not wait on our DISCONNECT to a client that stopped reading.
        let owned = Box::pin(sessions.close(*opened, self.conn_id)).await;
        match (will, self.identity.clone()) {
            // Replaced after it failed to hand the session over: the session goes on
            // on the new connection, so it has not ended and its will is not due.
            (Some(_), Some(_)) if !owned => {
                tracing::info!(peer = %self.peer, %client_id, "will not published: the session went on on another connection");
            }
            (Some(will), Some(who)) => {
                let ctx = self.ctx.clone();
                super::will::publish(ctx, client_id, who, self.conn_id, *will, expiry);
            }
            _ => {}
        }
        if let (true, Some(code)) = (v5, close.disconnect_code()) {
            let d = Packet::Disconnect(codec::Disconnect {
                reason: code,
                properties: None,
            });
            if let Ok(Ok(())) = tokio::time::timeout(GOODBYE_TIMEOUT, self.send_now(&d)).await {
                Box::pin(self.linger()).await;
            }
        }
    }

    /// After a server DISCONNECT: send FIN and read (discarding) until the client closes,
    /// for at most a second. Closing with unread input would reset the connection and
    /// could destroy the DISCONNECT before the client reads it.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let drain = async {
            let mut sink = vec![0u8; 4096]; // on the heap: not part of every task's state
            while let Ok(n) = self.stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }

    /// Resends what the previous connection left unacknowledged (DUP set; PUBREL for
    /// deliveries already past PUBREC), in the original order.
    fn resume(&mut self, state: &mut SessionState) {
        if let Some(spool) = state.spool.as_mut() {
            spool.more = true;
        }
        for (pkid, out) in state.resume() {
            match out.stage {
                super::session::Stage::Released => self.encode(&Packet::PubRel(PubAck::new(pkid))),
                _ => {
                    // Too large for the client as it connected this time: discarded.
                    if !self.write_publish(&out.delivery, pkid, true) {
                        self.acked.push(state.abandon(pkid));
                    }
                }
            }
        }
    }
}
