//! One MQTT connection: the I/O loop around the codec and the session.
//!
//! Reads are decoded straight from the read buffer; everything a wake-up produces (acks,
//! deliveries) is gathered in one write buffer and written with a single syscall, which
//! with TCP_NODELAY gives low latency without a packet per ack.
//!
//! Backpressure: while `max_inflight` QoS > 0 publishes wait for their commit, the
//! connection stops reading its socket, so a fast publisher is slowed by the store and
//! nobody else is.

use super::codec::{self, Packet, Protocol, PubAck, QoS};
use super::listener::MqttCtx;
use super::session::{self, Session};
use crate::broker::Durable;
use crate::event::{Event, Origin};
use crate::router::{Delivery, Outbox, Subscription};
use crate::topic;
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A write that makes no progress for this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 1000;

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    /// The client sent DISCONNECT.
    Normal,
    Peer,
    Shutdown,
    TakenOver,
    KeepAlive,
    Protocol(String),
    Io(std::io::Error),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Normal => f.write_str("client sent DISCONNECT"),
            Close::Peer => f.write_str("connection closed by peer"),
            Close::Shutdown => f.write_str("server shutting down"),
            Close::TakenOver => {
                f.write_str("session taken over by a new connection with the same client id")
            }
            Close::KeepAlive => f.write_str("keep-alive expired"),
            Close::Protocol(why) => write!(f, "protocol error: {why}"),
            Close::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl Close {
    /// MQTT publishes the will unless the client said goodbye (or we are shutting down).
    fn publishes_will(&self) -> bool {
        !matches!(self, Close::Normal | Close::Shutdown)
    }
}

#[derive(Clone, Copy)]
enum AckKind {
    PubAck,
    PubRec,
}

/// An ack owed to the client, in the order its PUBLISHes arrived (MQTT 4.6).
struct PendingAck {
    kind: AckKind,
    pkid: u16,
    durable: Option<Durable>,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    ctx: Arc<MqttCtx>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_packet: usize,
}

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<MqttCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = ctx.hub.metrics.clone();
    metrics.connections_mqtt.add(1);
    let mut conn = Conn {
        stream,
        peer,
        conn_id: ctx.hub.conn_id(),
        max_packet: ctx.config.mqtt.max_packet_size.0 as usize,
        ctx,
        rbuf: BytesMut::with_capacity(4096),
        wbuf: BytesMut::with_capacity(4096),
    };
    let timeout = conn.ctx.config.mqtt.connect_timeout;
    let connect = tokio::select! {
        r = tokio::time::timeout(timeout, conn.read_connect()) => match r {
            Ok(r) => r,
            Err(_) => Err(Close::Protocol("no CONNECT within connect_timeout".into())),
        },
        _ = shutdown.changed() => Err(Close::Shutdown),
    };
    match connect {
        Ok(c) => conn.session(*c, shutdown).await,
        Err(close) => {
            if matches!(close, Close::Protocol(_)) {
                metrics.protocol_errors.inc();
            }
            tracing::info!(peer = %conn.peer, reason = %close, "MQTT connection closed before CONNECT");
        }
    }
    metrics.connections_mqtt.add(-1);
}

impl Conn {
    async fn read_connect(&mut self) -> Result<Box<codec::Connect>, Close> {
        loop {
            match codec::decode(&mut self.rbuf, None, self.max_packet) {
                Ok(Some(Packet::Connect(c))) => return Ok(c),
                Ok(Some(_)) => return Err(Close::Protocol("first packet is not CONNECT".into())),
                Ok(None) => {}
                Err(e) => return Err(Close::Protocol(e.to_string())),
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err(Close::Peer),
                Ok(_) => {}
                Err(e) => return Err(Close::Io(e)),
            }
        }
    }

    async fn session(&mut self, connect: codec::Connect, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.ctx.config.mqtt;
        let assigned = format!("ferry-auto-{}", self.conn_id);
        let mut session = match session::accept(&connect, &assigned, usize::from(cfg.max_inflight))
        {
            Ok(s) => s,
            Err(refusal) => {
                tracing::info!(peer = %self.peer, client_id = %connect.client_id, code = refusal.code, "MQTT CONNECT refused");
                let _ = self
                    .send_now(&Packet::ConnAck(refusal), connect.protocol)
                    .await;
                return;
            }
        };
        let protocol = session.protocol;
        let kick = self.ctx.registry.claim(&session.client_id, self.conn_id);
        let (outbox, mut deliveries) = Outbox::new(
            self.conn_id,
            cfg.max_queued,
            usize::MAX,
            self.ctx.hub.metrics.clone(),
        );
        let connack = codec::ConnAck {
            session_present: false,
            code: session::connack::ACCEPTED,
            properties: None,
        };
        tracing::info!(peer = %self.peer, client_id = %session.client_id, ?protocol, keep_alive = session.keep_alive, "MQTT client connected");
        let mut subs: HashMap<String, u8> = HashMap::new();
        let close = match self.send_now(&Packet::ConnAck(connack), protocol).await {
            Ok(()) => {
                self.run(
                    &mut session,
                    &outbox,
                    &mut deliveries,
                    &mut subs,
                    &kick,
                    &mut shutdown,
                )
                .await
            }
            Err(close) => close,
        };
        for filter in subs.keys() {
            self.ctx.hub.router.unsubscribe(filter, self.conn_id, 0);
        }
        self.ctx.registry.release(&session.client_id, self.conn_id);
        if matches!(close, Close::Protocol(_)) {
            self.ctx.hub.metrics.protocol_errors.inc();
        }
        tracing::info!(peer = %self.peer, client_id = %session.client_id, reason = %close, "MQTT client disconnected");
        if close.publishes_will() {
            if let Some(will) = connect.will {
                let mut event = Event::new(
                    will.topic.into(),
                    will.payload,
                    will.qos as u8,
                    will.retain,
                    Origin::Mqtt,
                );
                event.user_properties = will.properties.user_properties;
                let _ = self.ctx.hub.publish(Arc::new(event), self.conn_id).await;
            }
        }
    }

    async fn run(
        &mut self,
        session: &mut Session,
        outbox: &Arc<Outbox>,
        deliveries: &mut mpsc::Receiver<Delivery>,
        subs: &mut HashMap<String, u8>,
        kick: &tokio::sync::Notify,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Close {
        let protocol = session.protocol;
        let max_pending = usize::from(self.ctx.config.mqtt.max_inflight);
        // MQTT 3.1.1 section 3.1.2.10: one and a half keep-alive periods.
        let keep_alive = Duration::from_millis(u64::from(session.keep_alive) * 1500);
        let mut deadline = Instant::now() + keep_alive;
        let mut pending: VecDeque<PendingAck> = VecDeque::new();
        loop {
            while pending.len() < max_pending {
                match codec::decode(&mut self.rbuf, Some(protocol), self.max_packet) {
                    Ok(Some(packet)) => {
                        deadline = Instant::now() + keep_alive;
                        if let Err(close) = self
                            .handle(packet, session, outbox, subs, &mut pending)
                            .await
                        {
                            return close;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Close::Protocol(e.to_string()),
                }
            }
            if let Err(close) = self.flush().await {
                return close;
            }
            let can_read = pending.len() < max_pending;
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Close::Shutdown,
                _ = kick.notified() => return Close::TakenOver,
                done = first_durable(&mut pending), if !pending.is_empty() => {
                    let Some(ack) = pending.pop_front() else { continue };
                    if let Err(e) = done {
                        return Close::Protocol(format!("event not stored ({e}); closing so the client retries"));
                    }
                    let a = PubAck { pkid: ack.pkid, reason: 0, properties: None };
                    let packet = match ack.kind {
                        AckKind::PubAck => Packet::PubAck(a),
                        AckKind::PubRec => Packet::PubRec(a),
                    };
                    self.encode(&packet, protocol);
                }
                d = deliveries.recv(), if session.can_send() => {
                    let Some(d) = d else { return Close::Shutdown };
                    self.deliver(d, session, outbox);
                    while session.can_send() && self.wbuf.len() < 64 * 1024 {
                        match deliveries.try_recv() {
                            Ok(d) => self.deliver(d, session, outbox),
                            Err(_) => break,
                        }
                    }
                }
                r = self.stream.read_buf(&mut self.rbuf), if can_read => match r {
                    Ok(0) => return Close::Peer,
                    Ok(_) => {}
                    Err(e) => return Close::Io(e),
                },
                _ = tokio::time::sleep_until(deadline), if !keep_alive.is_zero() => return Close::KeepAlive,
            }
        }
    }

    async fn handle(
        &mut self,
        packet: Packet,
        session: &mut Session,
        outbox: &Arc<Outbox>,
        subs: &mut HashMap<String, u8>,
        pending: &mut VecDeque<PendingAck>,
    ) -> Result<(), Close> {
        let protocol = session.protocol;
        match packet {
            Packet::Publish(p) => {
                topic::validate_name(&p.topic)
                    .map_err(|e| Close::Protocol(format!("PUBLISH to {:?}: {e}", p.topic)))?;
                let qos = p.qos as u8;
                let (pkid, kind) = (
                    p.pkid,
                    if qos == 2 {
                        AckKind::PubRec
                    } else {
                        AckKind::PubAck
                    },
                );
                if qos == 2
                    && !session
                        .qos2_received(pkid)
                        .map_err(|e| Close::Protocol(e.into()))?
                {
                    pending.push_back(PendingAck {
                        kind,
                        pkid,
                        durable: None,
                    });
                    return Ok(());
                }
                let mut event = Event::new(p.topic.into(), p.payload, qos, p.retain, Origin::Mqtt);
                if let Some(props) = p.properties {
                    event.user_properties = props.user_properties;
                }
                let durable = match self.ctx.hub.publish(Arc::new(event), self.conn_id).await {
                    Ok(published) => published.durable,
                    Err(e) => return Err(Close::Protocol(format!("store unavailable: {e}"))),
                };
                if qos > 0 {
                    pending.push_back(PendingAck {
                        kind,
                        pkid,
                        durable,
                    });
                }
            }
            Packet::PubAck(a) => {
                session.acked(a.pkid);
            }
            Packet::PubRel(r) => {
                session.qos2_released(r.pkid);
                self.encode(
                    &Packet::PubComp(PubAck {
                        pkid: r.pkid,
                        reason: 0,
                        properties: None,
                    }),
                    protocol,
                );
            }
            Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in s.filters {
                    let fresh = !subs.contains_key(&f.filter);
                    if topic::validate_filter(&f.filter).is_err()
                        || (fresh && subs.len() >= MAX_SUBSCRIPTIONS)
                    {
                        codes.push(if protocol == Protocol::V5 { 0x8F } else { 0x80 });
                        continue;
                    }
                    let granted = (f.qos as u8).min(1);
                    self.ctx.hub.router.subscribe(
                        &f.filter,
                        Subscription {
                            outbox: outbox.clone(),
                            qos: granted,
                            key: 0,
                            tag: 0,
                            per_subscription: false,
                            no_local: f.no_local,
                            group: None,
                        },
                    );
                    subs.insert(f.filter, granted);
                    codes.push(granted);
                }
                self.encode(
                    &Packet::SubAck(codec::SubAck {
                        pkid: s.pkid,
                        codes,
                        properties: None,
                    }),
                    protocol,
                );
            }
            Packet::Unsubscribe(u) => {
                let mut codes = Vec::with_capacity(u.filters.len());
                for f in &u.filters {
                    let existed = subs.remove(f).is_some();
                    self.ctx.hub.router.unsubscribe(f, self.conn_id, 0);
                    codes.push(if existed { 0x00 } else { 0x11 });
                }
                self.encode(
                    &Packet::UnsubAck(codec::UnsubAck {
                        pkid: u.pkid,
                        codes,
                        properties: None,
                    }),
                    protocol,
                );
            }
            Packet::PingReq => self.encode(&Packet::PingResp, protocol),
            Packet::Disconnect(_) => return Err(Close::Normal),
            Packet::Connect(_) => {
                return Err(Close::Protocol("second CONNECT on one connection".into()));
            }
            other => {
                return Err(Close::Protocol(format!(
                    "unexpected packet from client: {}",
                    packet_name(&other)
                )));
            }
        }
        Ok(())
    }

    fn deliver(&mut self, d: Delivery, session: &mut Session, outbox: &Outbox) {
        outbox.taken(&d);
        let mut qos = d.qos.min(1);
        let pkid = if qos > 0 {
            match session.alloc_pkid() {
                Some(id) => id,
                None => {
                    qos = 0;
                    0
                }
            }
        } else {
            0
        };
        let publish = codec::Publish {
            dup: false,
            qos: QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce),
            retain: false,
            topic: d.event.topic.to_string(),
            pkid,
            payload: d.event.payload.clone(),
            properties: None,
        };
        self.encode(&Packet::Publish(publish), session.protocol);
    }

    fn encode(&mut self, packet: &Packet, protocol: Protocol) {
        if let Err(e) = codec::encode(packet, protocol, &mut self.wbuf) {
            tracing::warn!(peer = %self.peer, error = %e, "cannot encode packet; skipped");
        }
    }

    async fn send_now(&mut self, packet: &Packet, protocol: Protocol) -> Result<(), Close> {
        self.encode(packet, protocol);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), Close> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(&self.wbuf)).await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(Close::Io(e)),
            Err(_) => Err(Close::Protocol(
                "client stopped reading (write timeout)".into(),
            )),
        }
    }
}

/// Resolves when the oldest owed ack may be sent: at once if it needed no commit.
async fn first_durable(pending: &mut VecDeque<PendingAck>) -> Result<u64, String> {
    match pending.front_mut().and_then(|p| p.durable.as_mut()) {
        Some(rx) => match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("store writer stopped".into()),
        },
        None => Ok(0),
    }
}

fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::ConnAck(_) => "CONNACK",
        Packet::SubAck(_) => "SUBACK",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingResp => "PINGRESP",
        Packet::Auth(_) => "AUTH",
        _ => "packet",
    }
}
