//! One MQTT connection: handshake, then the I/O loop around the codec and the session.
//!
//! Reads are decoded straight from the read buffer; everything a wake-up produces (acks,
//! deliveries) is gathered in one write buffer and written with a single syscall, which
//! with TCP_NODELAY gives low latency without a packet per ack.
//!
//! Backpressure: while `max_inflight` QoS > 0 publishes wait for their commit, a 3.1.1
//! connection stops reading its socket (MQTT 5 clients are told the limit as Receive
//! Maximum and are disconnected with 0x93 if they exceed it).

use super::acks::{PendingAck, first_durable};
use super::codec::{self, Packet, Protocol, reason};
use super::listener::MqttCtx;
use super::sessions::Opened;
use crate::budget::Account;
use crate::policy::Identity;
use crate::router::Delivery;
use crate::transport::Stream;
use crate::transport::listen::{Accepted, Transport};
use bytes::{Buf, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// A write that makes no progress for this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from the socket at a time (more when a packet is larger).
const READ_CHUNK: usize = 8 * 1024;

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum Close {
    /// The client sent DISCONNECT; `will` is true for MQTT 5 reason 0x04.
    Normal {
        will: bool,
    },
    Peer,
    Shutdown,
    TakenOver,
    /// A config reload removed the client's credentials, or every right it had on one of
    /// its subscriptions.
    Revoked,
    KeepAlive,
    /// A protocol violation: the MQTT 5 reason code to send, and the reason to log.
    Protocol(u8, String),
    Io(std::io::Error),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Normal { .. } => f.write_str("client sent DISCONNECT"),
            Close::Peer => f.write_str("connection closed by peer"),
            Close::Shutdown => f.write_str("server shutting down"),
            Close::TakenOver => {
                f.write_str("session taken over by a new connection with the same client id")
            }
            Close::Revoked => f.write_str("a config reload removed its credentials or rights"),
            Close::KeepAlive => f.write_str("keep-alive expired"),
            Close::Protocol(_, why) => write!(f, "protocol error: {why}"),
            Close::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl Close {
    pub(super) fn protocol(why: impl Into<String>) -> Close {
        Close::Protocol(reason::PROTOCOL_ERROR, why.into())
    }

    /// MQTT publishes the will unless the client said goodbye (or we are shutting down).
    pub(super) fn publishes_will(&self) -> bool {
        match self {
            Close::Normal { will } => *will,
            // Its rights are gone: nothing more is published in its name.
            Close::Shutdown | Close::Revoked => false,
            _ => true,
        }
    }

    /// The reason code of the DISCONNECT an MQTT 5 client is sent, if any.
    pub(super) fn disconnect_code(&self) -> Option<u8> {
        match self {
            Close::Shutdown => Some(reason::SERVER_SHUTTING_DOWN),
            Close::TakenOver => Some(reason::SESSION_TAKEN_OVER),
            Close::Revoked => Some(reason::NOT_AUTHORIZED),
            Close::KeepAlive => Some(reason::KEEP_ALIVE_TIMEOUT),
            Close::Protocol(code, _) => Some(*code),
            _ => None,
        }
    }
}

/// Per-connection state (the session's own state lives in [`SessionState`]).
pub(super) struct Conn {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub transport: Transport,
    /// Who the client is; set once CONNECT was authenticated.
    pub identity: Option<Identity>,
    /// The user its verified client certificate names, if any.
    pub cert_user: Option<String>,
    pub conn_id: u64,
    pub ctx: Arc<MqttCtx>,
    /// The hub's settings when it was accepted: its limits for its whole life (a
    /// reload's hold for the connections after it).
    pub config: Arc<crate::config::Config>,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub protocol: Protocol,
    /// Largest packet we accept.
    pub max_packet: usize,
    /// Largest packet the client accepts (MQTT 5), else unlimited.
    pub client_max_packet: usize,
    /// The client's Receive Maximum (MQTT 5), else 65535.
    pub client_receive_max: usize,
    /// The client's Topic Alias Maximum (MQTT 5): how many aliases we may assign.
    pub client_alias_max: u16,
    /// MQTT 5 topic aliases, made at the first one the connection uses.
    pub aliases: Option<Box<Aliases>>,
    /// The topics of both alias tables, charged to the budget's client-state share.
    pub alias_bytes: Account,
    /// Bytes of a packet still arriving beyond one read chunk, charged to the budget's
    /// half-read-packets share.
    rbuf_bytes: Account,
    /// Its place in the connections' share, admitted once CONNECT is accepted.
    pub charge: crate::transport::admission::ConnectionCharge,
    pub pending: VecDeque<PendingAck>,
    /// Deliveries generated here (retained on subscribe) waiting for an inflight slot.
    pub local: VecDeque<Delivery>,
    /// Store queue rows the client acknowledged, to remove (`mqtt/queued.rs`).
    pub acked: Vec<u64>,
    /// Boxed: most clients set none, and it would be part of every connection's task.
    pub will: Option<Box<codec::LastWill>>,
}

pub async fn serve(accepted: Accepted, ctx: Arc<MqttCtx>, mut shutdown: watch::Receiver<bool>) {
    let metrics = ctx.hub.metrics.clone();
    metrics.connections_mqtt.add(1);
    let by_transport = &metrics.connections_mqtt_by[accepted.transport as usize];
    by_transport.add(1);
    // The limits in force now hold for this connection's life (a reload changes them
    // for the connections after it).
    let settings = ctx.hub.settings.current();
    let alias_bytes = Account::new(ctx.hub.budget.state.clone());
    let rbuf_bytes = Account::new(ctx.hub.budget.packets.clone());
    let mut conn = Conn {
        stream: accepted.stream,
        peer: accepted.peer,
        transport: accepted.transport,
        identity: None,
        cert_user: accepted.cert_user,
        conn_id: ctx.hub.conn_id(),
        max_packet: settings.mqtt.max_packet_size.0 as usize,
        config: settings,
        ctx,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        protocol: Protocol::V311,
        client_max_packet: usize::MAX,
        client_receive_max: 65_535,
        client_alias_max: 0,
        aliases: None,
        alias_bytes,
        rbuf_bytes,
        charge: accepted.charge,
        pending: VecDeque::new(),
        local: VecDeque::new(),
        acked: Vec::new(),
        will: None,
    };
    let timeout = conn.config.mqtt.connect_timeout;
    let connect = tokio::select! {
        r = tokio::time::timeout(timeout, Box::pin(conn.read_connect())) => match r {
            Ok(r) => r,
            Err(_) => Err(Close::protocol("no CONNECT within connect_timeout")),
        },
        _ = shutdown.changed() => Err(Close::Shutdown),
    };
    match connect {
        Ok(c) => conn.session(c, shutdown).await,
        Err(close) => {
            if matches!(close, Close::Protocol(..)) {
                metrics.protocol_errors.inc();
            }
            if let Some(suppressed) = conn.ctx.hub.handshake_log.allow() {
                if looks_like_http(&conn.rbuf) {
                    // A browser, a health check or a WebSocket client at the wrong port.
                    tracing::info!(peer = %conn.peer, reason = %close, suppressed,
                        "an HTTP request on the MQTT port, closed (MQTT over WebSocket is mqtt.ws_listen, metrics and /health are metrics.listen)");
                } else {
                    tracing::info!(peer = %conn.peer, reason = %close, suppressed,
                        "MQTT connection closed before CONNECT (at most one such line a second; suppressed: how many were not logged)");
                }
            }
        }
    }
    if conn.transport != Transport::Tcp {
        // TLS close_notify, or the WebSocket close frame a protocol error queued.
        let close = tokio::time::timeout(Duration::from_secs(1), conn.stream.shutdown());
        let _ = Box::pin(close).await;
    }
    metrics.connections_mqtt_by[conn.transport as usize].add(-1);
    metrics.connections_mqtt.add(-1);
}

impl Conn {
    async fn read_connect(&mut self) -> Result<Box<codec::Connect>, Close> {
        loop {
            match codec::decode(&mut self.rbuf, None, self.max_packet) {
                Ok(Some(Packet::Connect(c))) => return Ok(c),
                Ok(Some(_)) => return Err(Close::protocol("first packet is not CONNECT")),
                Ok(None) => {}
                Err(codec::CodecError::UnsupportedProtocolLevel(level)) => {
                    // 3.1.1 section 3.1.2.2: answer with return code 1, then close.
                    let refuse = codec::ConnAck {
                        session_present: false,
                        code: 1,
                        properties: None,
                    };
                    let _ = self.send_now(&Packet::ConnAck(refuse)).await;
                    return Err(Close::protocol(format!(
                        "unsupported protocol level {level}"
                    )));
                }
                Err(e) => return Err(Close::Protocol(e.reason_code(), e.to_string())),
            }
            self.hold_rbuf()?;
            match self.stream.read_some(&mut self.rbuf, READ_CHUNK).await {
                Ok(0) => return Err(Close::Peer),
                Ok(_) => {}
                Err(e) => return Err(Close::Io(e)),
            }
        }
    }

    /// Charges the bytes of the packet still arriving, beyond one read chunk, to the
    /// budget's share for half-read packets; a packet that does not fit ends the
    /// connection (counted), so the share bounds them across all connections.
    fn hold_rbuf(&mut self) -> Result<(), Close> {
        if self
            .rbuf_bytes
            .hold(self.rbuf.len().saturating_sub(READ_CHUNK))
        {
            return Ok(());
        }
        self.ctx.hub.metrics.limits.packets.inc();
        if let Some(suppressed) = self.ctx.hub.limit_log.allow() {
            tracing::warn!(peer = %self.peer, arrived = self.rbuf.len(), suppressed,
                "MQTT connection closed: its half-read packet does not fit the memory budget ([limits] memory)");
        }
        Err(Close::Protocol(
            reason::QUOTA_EXCEEDED,
            "half-read packet over the memory budget".into(),
        ))
    }

    /// Answers CONNECT, runs the session, and cleans up after it. The start and the end
    /// run once per connection and are boxed: only the running session's state is part
    /// of every connection's task for its whole life (`mqtt/size_tests.rs`).
    async fn session(&mut self, connect: Box<codec::Connect>, mut shutdown: watch::Receiver<bool>) {
        let Some((mut started, refused)) = Box::pin(self.start(connect)).await else {
            return;
        };
        let close = match refused {
            Some(close) => close,
            None => {
                self.run(&mut started.opened, started.keep_alive, &mut shutdown)
                    .await
            }
        };
        Box::pin(self.end(started, close)).await;
    }

    async fn run(
        &mut self,
        opened: &mut Opened,
        keep_alive_secs: u16,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Close {
        let v5 = self.protocol.is_v5();
        let max_pending = usize::from(self.config.mqtt.max_inflight);
        // MQTT 3.1.1 section 3.1.2.10: one and a half keep-alive periods.
        let keep_alive = Duration::from_millis(u64::from(keep_alive_secs) * 1500);
        let mut deadline = Instant::now() + keep_alive;
        let state = &mut opened.state;
        loop {
            while v5 || self.pending.len() < max_pending {
                match codec::decode(&mut self.rbuf, Some(self.protocol), self.max_packet) {
                    Ok(Some(packet)) => {
                        deadline = Instant::now() + keep_alive;
                        if let Err(close) = self.refresh_identity() {
                            return close;
                        }
                        // Only PUBLISH is common enough to stay inline; the other
                        // packets' futures are boxed, so their state is not part of
                        // every connection's task.
                        let handled = match packet {
                            Packet::Publish(p) => self.publish(p, state).await,
                            other => Box::pin(self.handle(other, state)).await,
                        };
                        if let Err(close) = handled {
                            return close;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Close::Protocol(e.reason_code(), e.to_string()),
                }
            }
            if self.rbuf.is_empty() {
                // An idle connection holds no read buffer (see `Stream::read_some`).
                self.rbuf = BytesMut::new();
            }
            if let Err(close) = self.hold_rbuf() {
                return close;
            }
            self.drain_local(state);
            self.fill_from_queue(state);
            if !self.acked.is_empty() {
                // Boxed: only persistent sessions queue in the store, and the wait for
                // the writer would be part of every connection's task.
                Box::pin(self.remove_acked(state)).await;
            }
            if let Err(close) = self.flush_or_kicked(&opened.kick).await {
                return close;
            }
            let can_read = v5 || self.pending.len() < max_pending;
            let can_send = state.can_send(self.client_receive_max);
            // Woken when a row for this session was committed to its store queue.
            let queue_wake = state
                .spool
                .as_ref()
                .filter(|s| !s.more)
                .map(|s| s.signal.clone());
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Close::Shutdown,
                _ = opened.kick.notified() => return Close::TakenOver,
                done = first_durable(&mut self.pending), if !self.pending.is_empty() => {
                    if let Err(close) = self.ack_front(done, state).and_then(|()| self.ack_ready(state)) {
                        return close;
                    }
                }
                d = state.deliveries.recv(), if can_send && self.local.is_empty() => {
                    let Some(d) = d else {
                        return if state.deliveries.take_revoked() { Close::Revoked } else { Close::Shutdown };
                    };
                    self.deliver(d, state);
                    while state.can_send(self.client_receive_max) && self.wbuf.len() < 64 * 1024 {
                        match state.deliveries.try_recv() {
                            Ok(d) => self.deliver(d, state),
                            Err(_) => break,
                        }
                    }
                }
                _ = notified(queue_wake.as_ref().map(|s| &s.wake)), if queue_wake.is_some() => {
                    if let Some(spool) = state.spool.as_mut() {
                        spool.more = true;
                    }
                }
                r = self.stream.read_some(&mut self.rbuf, READ_CHUNK), if can_read => match r {
                    Ok(0) => return Close::Peer,
                    // No yield here: on the one event-loop thread (main.rs) connections
                    // run in the order their sockets turned readable, and what was read is
                    // handled at once. A yield would let a PUBLISH read later on another
                    // connection be routed before this SUBSCRIBE.
                    Ok(_) => {}
                    Err(e) => return Close::Io(e),
                },
                _ = tokio::time::sleep_until(deadline), if !keep_alive.is_zero() => return Close::KeepAlive,
            }
        }
    }

    /// After a config reload, the client's identity under the new policy (one atomic
    /// load when there was none); `Close::Revoked` when its credentials no longer hold.
    fn refresh_identity(&mut self) -> Result<(), Close> {
        let Some(who) = &self.identity else {
            return Ok(());
        };
        match self.ctx.hub.refresh(who) {
            Ok(None) => Ok(()),
            Ok(Some(now)) => {
                self.identity = Some(now);
                Ok(())
            }
            Err(crate::broker::Revoked) => Err(Close::Revoked),
        }
    }

    pub(super) fn encode(&mut self, packet: &Packet) {
        if let Err(e) = codec::encode(packet, self.protocol, &mut self.wbuf) {
            tracing::warn!(peer = %self.peer, error = %e, "cannot encode packet; skipped");
        }
    }

    pub(super) async fn send_now(&mut self, packet: &Packet) -> Result<(), Close> {
        self.encode(packet);
        self.flush().await
    }

    /// [`Conn::flush`], cut short when the session is taken over: a client that stopped
    /// reading would otherwise keep its session (and the connection taking it over,
    /// waiting for it) for up to [`WRITE_TIMEOUT`]. The write is polled first, so what
    /// the socket takes at once (acks of durable publishes) still goes out; a kick ends
    /// the flush only while it is blocked. A kick consumed here (its `Notify` permit is
    /// taken) is returned as [`Close::TakenOver`]; one that arrives as the write completes
    /// is handed on by the dropped `Notified` and seen by the loop's `select!`.
    /// Shutdown does not cut it short: pending acks are worth the wait, as before.
    async fn flush_or_kicked(&mut self, kick: &Notify) -> Result<(), Close> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            r = self.flush() => r,
            _ = kick.notified() => Err(Close::TakenOver),
        }
    }

    /// Writes the whole write buffer. Each written part leaves the buffer at once, so a
    /// flush that is cut short ([`Conn::flush_or_kicked`]) leaves exactly the unsent bytes:
    /// a DISCONNECT encoded after them still reaches the client whole.
    async fn flush(&mut self) -> Result<(), Close> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let burst = self.wbuf.capacity() > 16 * READ_CHUNK;
        let write = async {
            while !self.wbuf.is_empty() {
                let n = self.stream.write(&self.wbuf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.wbuf.advance(n);
            }
            // TLS and WebSocket may hold back the tail of a write until flushed.
            self.stream.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {
                if burst {
                    self.wbuf = BytesMut::new(); // a burst is over: give the memory back
                } else {
                    self.wbuf.clear();
                }
                Ok(())
            }
            Ok(Err(e)) => Err(Close::Io(e)),
            Err(_) => Err(Close::protocol("client stopped reading (write timeout)")),
        }
    }
}

/// MQTT 5 topic aliases of one connection: the client's (alias to topic) and ours (topic
/// to alias), their topics charged to the budget's client-state share.
#[derive(Default)]
pub struct Aliases {
    pub inbound: HashMap<u16, String>,
    pub outbound: HashMap<Arc<str>, u16>,
}

/// Resolves when `n` is notified (never without one).
async fn notified(n: Option<&Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// True when a connection's first bytes are an HTTP request line.
fn looks_like_http(first: &[u8]) -> bool {
    ["GET ", "POST ", "HEAD ", "PUT ", "OPTIONS ", "DELETE "]
        .iter()
        .any(|m| first.starts_with(m.as_bytes()))
}
