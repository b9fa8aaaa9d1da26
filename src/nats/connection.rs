//! One NATS connection: the I/O loop around the parser, the session and the hub.
//!
//! Reads, writes, deliveries, durable replies and the ping timer are all branches of one
//! `select!`, so a client that stops reading never stalls the loop. Deliveries move from
//! the outbox into the write buffer while it holds less than `WBUF_HIGH`; past that
//! they wait in the outbox, whose high-water mark holds fast publishers back briefly
//! (`limits.publisher_stall`), and whose overflow (`max_pending`, or the memory pool's
//! share) cuts the client off as a slow consumer (as nats-server does).
//! Everything a wake-up produces is coalesced in one write buffer.

use super::deliver::{self, Written};
use super::handshake;
use super::listener::NatsCtx;
use super::proto::{self, ClientOp, Limits, Parser, ProtoError, encode_err};
use super::puback;
use super::session::{PingAction, Session};
use crate::broker::Durable;
use crate::budget::Account;
use crate::event::{Event, Origin};
use crate::policy::{Credentials, Identity, Protocol as AuthProtocol};
use crate::router::{Deliveries, Delivery, Outbox};
use crate::transport::listen::Accepted;
use crate::transport::{ReadHalf, WriteHalf};
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

/// A write that makes no progress for this long means the peer stopped reading
/// (nats-server's default write_deadline).
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Subscriptions one connection may hold.
pub(super) const MAX_SUBSCRIPTIONS: usize = 65_536;
/// Requests waiting for their commit before the connection stops reading: bounds the
/// queue without making a request wait behind another request's fsync.
const MAX_PENDING_REPLIES: usize = 1024;
/// Deliveries are moved into the write buffer in batches of about this many bytes, so a
/// busy subscriber still gets its reads and writes serviced in between.
const BATCH_BYTES: usize = 64 * 1024;
/// Deliveries stay in the outbox (where they are counted, and where publishers can see
/// that this subscriber is behind) while the write buffer holds this much.
const WBUF_HIGH: usize = 4 * BATCH_BYTES;
/// Bytes read at a time; a message still arriving beyond this is charged to the
/// budget's share for half-read packets.
const READ_CHUNK: usize = 8 * 1024;

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum Close {
    Peer,
    Shutdown,
    Protocol(ProtoError),
    SlowConsumer(&'static str),
    /// A config reload removed the client's credentials, or every right it had on one
    /// of its subscriptions.
    Revoked,
    Io(std::io::Error),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Peer => f.write_str("connection closed by peer"),
            Close::Shutdown => f.write_str("server shutting down"),
            Close::Protocol(e) => write!(f, "protocol error: {e}"),
            Close::SlowConsumer(why) => write!(f, "slow consumer: {why}"),
            Close::Revoked => f.write_str("a config reload removed its credentials or rights"),
            Close::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// How a request's durable reply will be decided.
enum Outcome {
    Durable(Durable),
    /// The store refused the event outright.
    Failed(String),
}

/// A PubAck owed to a requester, in the order its requests arrived.
struct PendingReply {
    /// The reply subject in canonical form.
    reply: Arc<str>,
    outcome: Outcome,
}

pub(super) struct Conn {
    pub(super) ctx: Arc<NatsCtx>,
    pub(super) peer: SocketAddr,
    pub(super) conn_id: u64,
    pub(super) session: Session,
    pub(super) outbox: Arc<Outbox>,
    pub(super) wbuf: BytesMut,
    rbuf: BytesMut,
    /// Bytes of a message still arriving beyond one read chunk, charged to the budget's
    /// half-read-packets share.
    rbuf_bytes: Account,
    /// Its place in the connections' share, admitted once the client may act (it
    /// authenticated, or needs not).
    charge: crate::transport::admission::ConnectionCharge,
    parser: Parser,
    pending: VecDeque<PendingReply>,
    max_pending: usize,
    /// Who the client is: set at CONNECT, or at once when anonymous clients are allowed
    /// (NATS clients need not send CONNECT then). None: nothing but CONNECT is accepted.
    pub(super) identity: Option<Identity>,
    /// The user its verified client certificate names, if any.
    cert_user: Option<String>,
    /// A CONNECT was authenticated. Later CONNECTs (nats-server allows them) update the
    /// options but keep the identity: no second password check for a client to make
    /// ferry spend CPU on, and no switching users on one connection.
    authenticated: bool,
    /// `nats.ping_interval` and `nats.connect_timeout` as they were when it connected.
    ping_interval: Duration,
    connect_timeout: Duration,
}

pub async fn serve(accepted: Accepted, ctx: Arc<NatsCtx>, mut shutdown: watch::Receiver<bool>) {
    let metrics = ctx.hub.metrics.clone();
    metrics.connections_nats.add(1);
    let peer = accepted.peer;
    // The limits in force now hold for this connection's life (a reload changes them
    // for the connections after it).
    let settings = ctx.hub.settings.current();
    let cfg = &settings.nats;
    let conn_id = ctx.hub.conn_id();
    let info = ctx.info_for(conn_id, peer, cfg);
    let negotiate = handshake::negotiate(
        accepted.stream,
        ctx.tls_mode,
        #[cfg(feature = "tls")]
        ctx.tls.as_ref(),
        info,
    );
    // Boxed: INFO and the TLS handshake run once; inline, their state would be part of
    // the connection's task for its whole life.
    let negotiated = match tokio::time::timeout(cfg.connect_timeout, Box::pin(negotiate)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            metrics.auth.tls_failures.inc();
            if let Some(suppressed) = ctx.handshake_log.allow() {
                tracing::info!(%peer, error = %e, suppressed, "NATS connection closed before CONNECT");
            }
            metrics.connections_nats.add(-1);
            return;
        }
        Err(_) => {
            metrics.auth.tls_failures.inc();
            if let Some(suppressed) = ctx.handshake_log.allow() {
                tracing::info!(%peer, suppressed, "NATS TLS handshake not done within connect_timeout");
            }
            metrics.connections_nats.add(-1);
            return;
        }
    };
    let mut stream = negotiated.stream;
    let tls = !matches!(stream, crate::transport::Stream::Tcp(_));
    if tls {
        metrics.connections_nats_tls.add(1);
    }
    let charge = accepted.charge;
    let policy = ctx.hub.policy();
    let identity = (!policy.auth_required()).then(|| policy.anonymous(""));
    let max_pending = cfg.max_pending.0 as usize;
    // Bytes bound the queue, as in nats-server (`max_pending`, and the pool's share).
    let (outbox, mut deliveries) = Outbox::new(
        conn_id,
        0,
        max_pending,
        ctx.hub.budget.outboxes.clone(),
        metrics.clone(),
    );
    let limits = Limits {
        max_control_line: cfg.max_control_line.0 as usize,
        max_payload: cfg.max_payload.0 as usize,
    };
    let mut conn = Conn {
        session: Session::new(MAX_SUBSCRIPTIONS, cfg.max_pings_out),
        parser: Parser::new(limits),
        peer,
        conn_id,
        outbox,
        rbuf: BytesMut::new(),
        rbuf_bytes: Account::new(ctx.hub.budget.packets.clone()),
        charge,
        wbuf: BytesMut::new(),
        pending: VecDeque::new(),
        max_pending,
        identity,
        cert_user: negotiated.cert_user,
        authenticated: false,
        ping_interval: cfg.ping_interval,
        connect_timeout: cfg.connect_timeout,
        ctx,
    };
    let (mut rd, mut wr) = stream.split();
    let close = conn
        .run(&mut rd, &mut wr, &mut deliveries, &mut shutdown)
        .await;
    if !matches!(close, Close::Peer | Close::Io(_) | Close::SlowConsumer(_)) {
        // Let the client see the -ERR that explains the close; never wait long for it.
        let last = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&conn.wbuf));
        let _ = Box::pin(last).await;
    }
    drop((rd, wr));
    // Nobody reads this outbox any more: publishers must not wait for it.
    conn.outbox.set_offline(true);
    if !matches!(stream, crate::transport::Stream::Tcp(_)) {
        // TLS close_notify before the socket goes.
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            stream.shutdown(),
        ))
        .await;
    }
    for (filter, slot) in conn.session.registrations() {
        conn.ctx.hub.router.unsubscribe(filter, conn_id, slot);
    }
    let name = conn.session.opts.name.as_deref().unwrap_or("");
    match &close {
        Close::Protocol(_) => metrics.protocol_errors.inc(),
        Close::SlowConsumer(_) => {
            metrics.nats_slow_consumers.inc();
            if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::SlowConsumer) {
                tracing::warn!(%peer, name, reason = %close, suppressed, "NATS slow consumer cut off");
            }
        }
        _ => {}
    }
    let subscriptions = conn.session.subscription_count();
    if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Disconnected) {
        tracing::info!(%peer, name, subscriptions, reason = %close, suppressed, "NATS client disconnected");
    }
    if tls {
        metrics.connections_nats_tls.add(-1);
    }
    metrics.connections_nats.add(-1);
}

/// What an op leaves to wait for, after [`Conn::dispatch`].
enum Next {
    Done,
    Publish(Pub),
    /// Once per connection, and it waits for the password check: boxed where it is
    /// awaited, off the state of every connection's task.
    Connect(proto::ConnectOptions),
}

/// A PUB or HPUB, its headers decoded.
struct Pub {
    subject: bytes::Bytes,
    reply: Option<bytes::Bytes>,
    props: Vec<(String, String)>,
    payload: bytes::Bytes,
}

impl Conn {
    async fn run(
        &mut self,
        rd: &mut ReadHalf<'_>,
        wr: &mut WriteHalf<'_>,
        deliveries: &mut Deliveries,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Close {
        let ping_interval = self.ping_interval;
        // One timer for the three deadlines (the next PING, CONNECT while the client
        // must still authenticate, write progress while output waits): a timer is part
        // of every connection's task.
        let mut next_ping = Instant::now() + ping_interval;
        let mut last_in = Instant::now();
        let mut write_progress = Instant::now();
        // CONNECT is due by then when the client must authenticate.
        let auth_deadline = Instant::now() + self.connect_timeout;
        // TLS may hold back the tail of a write until flushed; plain TCP never does.
        let flushes = matches!(wr, WriteHalf::Shared(_));
        let mut needs_flush = false;
        loop {
            while self.pending.len() < MAX_PENDING_REPLIES {
                match self.parser.next(&mut self.rbuf) {
                    Ok(Some(op)) => {
                        if let Some(who) = &self.identity {
                            match self.ctx.hub.refresh(who) {
                                Ok(None) => {}
                                Ok(Some(now)) => self.identity = Some(now),
                                Err(crate::broker::Revoked) => return self.revoked(),
                            }
                        }
                        // Only a publish waits (the hub), and CONNECT (boxed: once per
                        // connection); the op itself is taken apart before either.
                        let handled = match self.dispatch(op) {
                            Ok(Next::Done) => Ok(()),
                            Ok(Next::Publish(p)) => {
                                self.publish(p.subject, p.reply, p.props, p.payload).await;
                                Ok(())
                            }
                            Ok(Next::Connect(opts)) => Box::pin(self.connect(opts)).await,
                            Err(close) => Err(close),
                        };
                        if let Err(close) = handled {
                            return close;
                        }
                    }
                    Ok(None) => break,
                    // The parser's state is meaningless after an error: always close.
                    Err(e) => return self.fail(e),
                }
            }
            if !self
                .rbuf_bytes
                .hold(self.rbuf.len().saturating_sub(READ_CHUNK))
            {
                self.ctx.hub.metrics.limits.packets.inc();
                if let Some(suppressed) = self.ctx.hub.limit_log.allow() {
                    tracing::warn!(peer = %self.peer, arrived = self.rbuf.len(), suppressed,
                        "NATS connection closed: its half-read message does not fit the memory budget ([limits] memory)");
                }
                // The nats-server words a client understands: the message is too large
                // for what the server can hold now.
                let max = self.rbuf_bytes.held() + READ_CHUNK;
                return self.fail(ProtoError::MaxPayload {
                    size: self.rbuf.len(),
                    max,
                });
            }
            if self.outbox.take_overflow() {
                return Close::SlowConsumer("outbox over max_pending");
            }
            if self.wbuf.len() > self.max_pending {
                return Close::SlowConsumer("write buffer over max_pending");
            }
            if self.wbuf.is_empty() {
                write_progress = Instant::now();
            }
            if self.rbuf.is_empty() {
                // An idle connection holds no read buffer (`ReadHalf::read_some` grows
                // it once the socket is readable).
                self.rbuf = BytesMut::new();
            }
            if self.wbuf.is_empty() && self.wbuf.capacity() > WBUF_HIGH {
                self.wbuf = BytesMut::new(); // a burst is over: give the memory back
            }
            let can_read = self.pending.len() < MAX_PENDING_REPLIES;
            let mut wake = next_ping;
            if self.identity.is_none() {
                wake = wake.min(auth_deadline);
            }
            if !self.wbuf.is_empty() {
                wake = wake.min(write_progress + WRITE_DEADLINE);
            }
            tokio::select! {
                _ = shutdown.changed() => return Close::Shutdown,
                done = first_reply(&mut self.pending), if !self.pending.is_empty() => {
                    self.send_reply(done).await;
                }
                w = write_or_flush(wr, &self.wbuf), if !self.wbuf.is_empty() || needs_flush => match w {
                    Ok(Some(0)) => return Close::Peer,
                    Ok(Some(n)) => {
                        self.wbuf.advance(n);
                        write_progress = Instant::now();
                        needs_flush = flushes;
                    }
                    Ok(None) => needs_flush = false,
                    Err(e) => return Close::Io(e),
                },
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if self.identity.is_none() && now >= auth_deadline {
                        return self.fail(ProtoError::AuthTimeout);
                    }
                    if !self.wbuf.is_empty() && now >= write_progress + WRITE_DEADLINE {
                        return Close::SlowConsumer("no write progress within the write deadline");
                    }
                    if now >= next_ping {
                        // As an interval that delays missed ticks: the next one a whole
                        // interval after this one.
                        next_ping = now + ping_interval;
                        match self.session.ping_due(last_in.elapsed() < ping_interval) {
                            PingAction::Skip => {}
                            PingAction::Send => self.wbuf.extend_from_slice(proto::PING),
                            PingAction::Stale => return self.fail(ProtoError::StaleConnection),
                        }
                    }
                }
                d = deliveries.recv(), if self.wbuf.len() < WBUF_HIGH => {
                    let Some(d) = d else {
                        return if deliveries.take_revoked() { self.revoked() } else { Close::Shutdown };
                    };
                    self.deliver(d);
                    let mark = self.wbuf.len() + BATCH_BYTES;
                    while self.wbuf.len() < mark {
                        match deliveries.try_recv() {
                            Ok(d) => self.deliver(d),
                            Err(_) => break,
                        }
                    }
                }
                r = rd.read_some(&mut self.rbuf, READ_CHUNK), if can_read => match r {
                    Ok(0) => return Close::Peer,
                    Ok(_) => last_in = Instant::now(),
                    Err(e) => return Close::Io(e),
                },
            }
        }
    }

    /// Queues the `-ERR` nats-server sends a client whose authorization ends.
    fn revoked(&mut self) -> Close {
        crate::nats::proto::encode_err("Authorization Violation", &mut self.wbuf);
        Close::Revoked
    }

    /// Queues the `-ERR` nats-server sends for `e` (if any) and returns the close.
    pub(super) fn fail(&mut self, e: ProtoError) -> Close {
        if let Some(line) = e.err_line() {
            encode_err(line, &mut self.wbuf);
        }
        Close::Protocol(e)
    }

    /// For errors that leave the connection open: `-ERR` only.
    pub(super) fn soft_err(&mut self, e: &ProtoError) {
        tracing::debug!(peer = %self.peer, error = %e, "NATS request refused");
        if let Some(line) = e.err_line() {
            encode_err(line, &mut self.wbuf);
        }
    }

    /// `+OK` in verbose mode.
    pub(super) fn ok(&mut self) {
        if self.session.verbose() {
            self.wbuf.extend_from_slice(proto::OK);
        }
    }

    /// CONNECT: its options, then its credentials (user/pass, auth_token, or the client
    /// certificate) through the policy. A refusal is nats-server's
    /// `-ERR 'Authorization Violation'` and a close. The password is never logged.
    async fn connect(&mut self, opts: proto::ConnectOptions) -> Result<(), Close> {
        if let Err(e) = self.session.connect(opts) {
            return Err(self.fail(e));
        }
        if self.authenticated {
            self.ok();
            return Ok(());
        }
        let o = &self.session.opts;
        let creds = Credentials {
            protocol: AuthProtocol::Nats,
            peer: self.peer.ip(),
            client_id: o.name.as_deref().unwrap_or(""),
            username: o.user.as_deref(),
            password: o.pass.as_deref().map(str::as_bytes),
            token: o.auth_token.as_deref(),
            cert_user: self.cert_user.as_deref(),
        };
        let who = match self.ctx.hub.policy().authenticate(creds).await {
            Ok(who) => who,
            Err(e) => {
                if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Refused) {
                    tracing::info!(peer = %self.peer, user = %o.user.as_deref().unwrap_or(""), reason = %e, suppressed, "NATS CONNECT refused");
                }
                return Err(self.fail(ProtoError::AuthViolation));
            }
        };
        if let Some(suppressed) = crate::logging::allow(crate::logging::Noise::Connected) {
            tracing::info!(
                peer = %self.peer,
                name = o.name.as_deref().unwrap_or(""),
                user = %who.user().unwrap_or(""),
                lang = o.lang.as_deref().unwrap_or(""),
                version = o.version.as_deref().unwrap_or(""),
                suppressed,
                "NATS client connected"
            );
        }
        self.identity = Some(who);
        self.authenticated = true;
        self.charge.admit();
        self.ok();
        Ok(())
    }

    /// What `op` asks for, done at once where no wait is needed.
    fn dispatch(&mut self, op: ClientOp) -> Result<Next, Close> {
        if self.identity.is_none() && !matches!(op, ClientOp::Connect(_)) {
            // nats-server: nothing but CONNECT before the client has authenticated.
            return Err(self.fail(ProtoError::AuthViolation));
        }
        if !matches!(op, ClientOp::Connect(_)) {
            self.charge.admit();
        }
        match op {
            // Once per connection, and it waits for the password check: boxed, off
            // the state of every connection's task.
            ClientOp::Connect(opts) => return Ok(Next::Connect(opts)),
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => {
                return Ok(Next::Publish(Pub {
                    subject,
                    reply,
                    props: Vec::new(),
                    payload,
                }));
            }
            ClientOp::HPub {
                subject,
                reply,
                headers,
                payload,
            } => {
                if !self.session.headers {
                    return Err(self.fail(ProtoError::HeadersNotSupported));
                }
                let props = if headers.is_empty() {
                    Vec::new()
                } else {
                    match proto::Headers::parse(&headers) {
                        Ok(h) => h.entries,
                        Err(e) => return Err(self.fail(e)),
                    }
                };
                return Ok(Next::Publish(Pub {
                    subject,
                    reply,
                    props,
                    payload,
                }));
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(&subject, queue.as_deref(), &sid),
            ClientOp::Unsub { sid, max } => self.unsubscribe(&sid, max),
            ClientOp::Ping => self.wbuf.extend_from_slice(proto::PONG),
            ClientOp::Pong => self.session.pong(),
        }
        Ok(Next::Done)
    }

    fn deliver(&mut self, d: Delivery) {
        self.outbox.taken(&d);
        match deliver::encode(&mut self.session, &d, &mut self.wbuf) {
            Written::Yes { remove } => {
                if let Some((filter, slot)) = remove {
                    self.ctx.hub.router.unsubscribe(&filter, self.conn_id, slot);
                }
            }
            Written::Skipped => {}
            Written::Unmappable(e) => {
                self.ctx.hub.metrics.nats_unmappable.inc();
                tracing::debug!(peer = %self.peer, topic = %d.event.topic, reason = %e, "event not delivered to NATS client: topic has no NATS subject form");
            }
        }
    }

    /// Publishes the PubAck for the oldest pending request.
    async fn send_reply(&mut self, done: Result<u64, String>) {
        let Some(r) = self.pending.pop_front() else {
            return;
        };
        if let Err(e) = &done {
            tracing::warn!(peer = %self.peer, error = %e, "NATS request not stored");
        }
        let event = Event::new(r.reply, puback::json(&done), 0, false, Origin::Nats);
        // To the requester's inbox only: not an event anyone published (never stored or
        // forwarded), and echo=false must not hide it.
        self.ctx.hub.reply(Arc::new(event));
    }

    /// Queues the durable reply for a request selected by a forwarding rule.
    pub(super) fn expect_commit(&mut self, reply: Arc<str>, durable: Durable) {
        self.pending.push_back(PendingReply {
            reply,
            outcome: Outcome::Durable(durable),
        });
    }

    /// Queues a failure reply (in order behind earlier requests).
    pub(super) fn reply_failed(&mut self, reply: Arc<str>, why: String) {
        self.pending.push_back(PendingReply {
            reply,
            outcome: Outcome::Failed(why),
        });
    }
}

/// Writes from `buf` (Some(bytes written)), or flushes when it is empty (None).
async fn write_or_flush(wr: &mut WriteHalf<'_>, buf: &[u8]) -> std::io::Result<Option<usize>> {
    if buf.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(buf).await.map(Some)
    }
}

/// Resolves when the oldest owed reply can be sent.
async fn first_reply(pending: &mut VecDeque<PendingReply>) -> Result<u64, String> {
    match pending.front_mut().map(|p| &mut p.outcome) {
        Some(Outcome::Durable(rx)) => rx.await.map_err(|e| e.to_string()),
        Some(Outcome::Failed(why)) => Err(why.clone()),
        None => std::future::pending().await,
    }
}
