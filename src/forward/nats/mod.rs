//! One connection to a NATS or JetStream upstream, spoken with ferry's own client codec
//! ([`proto`]): no client crate, so the binary stays within its size budget.
//!
//! Like rumqttc's event loop, the connection runs in its own task that owns the socket;
//! the link hands it publishes through a channel ([`Client`]) and reads what happened
//! from another ([`Connection`]), so the link's `select!` only ever awaits channel
//! receives, which are cancel-safe.
//!
//! Delivery is counted only on the upstream's word:
//! - JetStream: each publish is a request whose reply subject is this connection's inbox
//!   plus the publish id; the PubAck (`{"stream":..,"seq":..}`) acknowledges it. Every
//!   publish carries `Nats-Msg-Id: <gateway id>-<store seq>`, so a resend after a lost
//!   acknowledgement or a reconnect is dropped by the stream's duplicate window.
//! - core NATS has no acknowledgement: a PING follows each burst of publishes, and its
//!   PONG (the server answers in order) acknowledges every publish written before it.
//!
//! Either way an unanswered publish older than `ack_timeout` ends the connection: the link
//! resends from its cursor on the next one (to the next of `urls`).

#[cfg(feature = "tls")]
mod nkey;
pub mod proto;

use super::client::{LinkEvent, Refusal};
use crate::config::{UpstreamConfig, UpstreamProtocol, UpstreamUrl};
use bytes::{Bytes, BytesMut};
use proto::{Connect, PubAck, ServerOp};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The subscription id of the inbox JetStream acknowledgements arrive on.
const INBOX_SID: &str = "1";
/// The largest message ferry reads from an upstream: only acknowledgements and errors
/// come back, a few hundred bytes each.
const MAX_READ_MESSAGE: usize = 64 * 1024;
/// Publishes written in one go before the socket write (and, for core NATS, one PING).
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// What the link hands the connection task.
enum Request {
    Publish {
        subject: String,
        headers: BytesMut,
        payload: Bytes,
    },
    Disconnect,
}

/// The request side, held by the link.
pub(in crate::forward) struct Client {
    requests: mpsc::Sender<Request>,
}

/// The event side, polled by the link. Dropping it stops the connection task.
pub(in crate::forward) struct Connection {
    events: mpsc::UnboundedReceiver<Result<LinkEvent, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts one connection attempt to `url` (one of the upstream's `urls`).
pub(in crate::forward) fn connect(c: &UpstreamConfig, url: &UpstreamUrl) -> (Client, Connection) {
    // The link never has more than `inflight` publishes outstanding, and each causes at
    // most two events (written, answered): both channels are bounded by the window.
    let (requests, rx) = mpsc::channel(usize::from(c.inflight) + 16);
    let (tx, events) = mpsc::unbounded_channel();
    let settings = Settings::from(c);
    let url = url.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = run(settings, url, rx, &tx).await {
            let _ = tx.send(Err(e));
        }
    });
    (Client { requests }, Connection { events, task })
}

impl Client {
    /// Hands one publish to the connection task (never waits: the channel holds a window).
    pub async fn publish(
        &self,
        subject: String,
        headers: BytesMut,
        payload: Bytes,
    ) -> Result<(), String> {
        self.requests
            .send(Request::Publish {
                subject,
                headers,
                payload,
            })
            .await
            .map_err(|_| "the upstream connection has ended".to_string())
    }

    pub fn disconnect(&self) {
        let _ = self.requests.try_send(Request::Disconnect);
    }
}

impl Connection {
    pub async fn poll(&mut self) -> Result<LinkEvent, String> {
        match self.events.recv().await {
            Some(event) => event,
            None => Err("the upstream connection has ended".into()),
        }
    }
}

/// The header block of one forwarded event: `Nats-Msg-Id`, then the MQTT 5 user
/// properties that NATS headers can carry (as ferry's NATS listener passes them on).
pub(in crate::forward) fn headers(msg_id: &str, props: &[(String, String)]) -> BytesMut {
    let mut entries = Vec::with_capacity(props.len() + 1);
    entries.push(("Nats-Msg-Id".to_string(), msg_id.to_string()));
    entries.extend(
        props
            .iter()
            .filter(|(k, v)| crate::nats::proto::entry_encodable(k, v))
            .cloned(),
    );
    let mut block = BytesMut::new();
    let headers = crate::nats::proto::Headers {
        status: None,
        description: None,
        entries,
    };
    // Every entry was checked to be encodable.
    let _ = headers.encode(&mut block);
    block
}

/// What the connection task needs from the upstream's configuration.
struct Settings {
    name: String,
    client_id: String,
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
    creds_file: Option<std::path::PathBuf>,
    jetstream: bool,
    connect_timeout: Duration,
    keep_alive: Duration,
    ack_timeout: Duration,
    #[cfg(feature = "tls")]
    ca_file: Option<std::path::PathBuf>,
    #[cfg(feature = "tls")]
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    #[cfg(feature = "tls")]
    alpn: Vec<String>,
}

impl From<&UpstreamConfig> for Settings {
    fn from(c: &UpstreamConfig) -> Settings {
        Settings {
            name: c.name.clone(),
            client_id: c.client_id.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
            token: c.token.clone(),
            creds_file: c.creds_file.clone(),
            jetstream: c.protocol == UpstreamProtocol::JetStream,
            connect_timeout: c.connect_timeout,
            keep_alive: c.keep_alive,
            ack_timeout: c.ack_timeout,
            #[cfg(feature = "tls")]
            ca_file: c.ca_file.clone(),
            #[cfg(feature = "tls")]
            identity: c.cert_file.clone().zip(c.key_file.clone()),
            #[cfg(feature = "tls")]
            alpn: c.alpn.clone(),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Events = mpsc::UnboundedSender<Result<LinkEvent, String>>;

async fn run(
    s: Settings,
    url: UpstreamUrl,
    requests: mpsc::Receiver<Request>,
    events: &Events,
) -> Result<(), String> {
    let inbox = inbox_prefix();
    let handshake = handshake(&s, &url, &inbox);
    let (stream, rbuf, info) = tokio::time::timeout(s.connect_timeout, handshake)
        .await
        .map_err(|_| format!("no answer from {url} within {:?}", s.connect_timeout))??;
    tracing::debug!(upstream = %s.name, %url, server = %info.server_name, version = %info.version,
        max_payload = info.max_payload, "NATS upstream handshake done");
    let max_packet =
        (info.max_payload > 0).then(|| u32::try_from(info.max_payload).unwrap_or(u32::MAX));
    let _ = events.send(Ok(LinkEvent::Connected { max_packet }));
    let mut session = Session {
        s: &s,
        inbox,
        rbuf,
        wbuf: BytesMut::new(),
        next_id: 0,
        outstanding: HashMap::new(),
        group: Vec::new(),
        pings: VecDeque::new(),
        last_read: Instant::now(),
        events,
    };
    session.serve(stream, requests).await
}

/// `_INBOX.<32 hex>.`: unique per connection, so an acknowledgement meant for an earlier
/// connection (or another gateway on the same cluster) never reaches this one.
fn inbox_prefix() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No randomness: time and address still differ between connections.
        let now = crate::event::now_ms().to_le_bytes();
        bytes[..8].copy_from_slice(&now);
        let here = (&bytes as *const _ as usize).to_le_bytes();
        bytes[8..16].copy_from_slice(&here);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("_INBOX.{hex}.")
}

/// TCP connect, INFO, TLS when asked for, CONNECT (+ the inbox SUB), and PING answered
/// by PONG: the server has accepted the credentials and registered the subscription.
async fn handshake(
    s: &Settings,
    url: &UpstreamUrl,
    inbox: &str,
) -> Result<(Box<dyn Io>, BytesMut, proto::Info), String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = Box::new(tcp);
    let mut rbuf = BytesMut::with_capacity(4096);
    let info = match read_op(&mut stream, &mut rbuf).await? {
        ServerOp::Info(json) => proto::Info::parse(&json)?,
        other => return Err(format!("expected INFO from {url}, got {other:?}")),
    };
    let tls = url.scheme.is_tls() || info.tls_required;
    if tls {
        stream = upgrade(s, url, stream).await?;
    }
    if !info.headers {
        return Err(format!(
            "{url} does not support message headers (nats-server 2.2 or later is needed for Nats-Msg-Id)"
        ));
    }
    // nkey authentication: the server's nonce signed with the user's seed, read now so a
    // rotated key is used from the next attempt.
    let signed: Option<(String, String, Option<String>)> = match (&s.creds_file, &info.nonce) {
        #[cfg(feature = "tls")]
        (Some(path), Some(nonce)) => {
            let key = nkey::UserKey::from_file(path).map_err(|e| e.to_string())?;
            Some((key.public(), key.sign(nonce), key.jwt))
        }
        #[cfg(not(feature = "tls"))]
        (Some(_), Some(_)) => {
            return Err("creds_file needs the \"tls\" cargo feature (its Ed25519 signing)".into());
        }
        _ => None,
    };
    let mut out = BytesMut::new();
    Connect {
        verbose: false,
        pedantic: false,
        tls_required: tls,
        name: &s.client_id,
        lang: "rust-ferry",
        version: env!("CARGO_PKG_VERSION"),
        protocol: 1,
        headers: true,
        no_responders: true,
        user: s.username.as_deref(),
        pass: s.password.as_deref(),
        auth_token: s.token.as_deref(),
        // With a JWT the server takes the key from it; without, from `nkey`.
        nkey: signed
            .as_ref()
            .filter(|(_, _, jwt)| jwt.is_none())
            .map(|(public, _, _)| public.as_str()),
        sig: signed.as_ref().map(|(_, sig, _)| sig.as_str()),
        jwt: signed.as_ref().and_then(|(_, _, jwt)| jwt.as_deref()),
    }
    .encode(&mut out);
    if s.jetstream {
        proto::encode_sub(&format!("{inbox}*"), INBOX_SID, &mut out);
    }
    out.extend_from_slice(proto::PING);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("write to {url} failed: {e}"))?;
    loop {
        match read_op(&mut stream, &mut rbuf).await? {
            ServerOp::Pong => return Ok((stream, rbuf, info)),
            ServerOp::Err(text) => return Err(format!("{url} refused the connection: {text}")),
            ServerOp::Ping => stream
                .write_all(proto::PONG)
                .await
                .map_err(|e| format!("write to {url} failed: {e}"))?,
            _ => {}
        }
    }
}

async fn read_op(stream: &mut Box<dyn Io>, rbuf: &mut BytesMut) -> Result<ServerOp, String> {
    loop {
        if let Some(op) = proto::parse(rbuf, MAX_READ_MESSAGE).map_err(|e| e.to_string())? {
            return Ok(op);
        }
        let n = stream
            .read_buf(rbuf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("connection closed by the upstream".into());
        }
    }
}

#[cfg(feature = "tls")]
async fn upgrade(
    s: &Settings,
    url: &UpstreamUrl,
    stream: Box<dyn Io>,
) -> Result<Box<dyn Io>, String> {
    let config = super::tls::client_config(super::tls::ClientTls {
        ca_file: s.ca_file.as_deref(),
        identity: s.identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        alpn: &s.alpn,
    })
    .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| format!("{url}: not a valid TLS server name: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {url} failed: {e}"))?;
    Ok(Box::new(tls))
}

#[cfg(not(feature = "tls"))]
async fn upgrade(
    _s: &Settings,
    url: &UpstreamUrl,
    _stream: Box<dyn Io>,
) -> Result<Box<dyn Io>, String> {
    Err(format!(
        "{url} requires TLS, and this ferry was built without it"
    ))
}

/// The state of one established connection.
struct Session<'a> {
    s: &'a Settings,
    inbox: String,
    rbuf: BytesMut,
    wbuf: BytesMut,
    next_id: u16,
    /// Publishes written and not yet answered, by id: when they were written, and their
    /// subject (a permissions `-ERR` names only that). At most `inflight` entries.
    outstanding: HashMap<u16, (Instant, String)>,
    /// Core NATS: ids written since the last PING.
    group: Vec<u16>,
    /// Core NATS: per PING sent and not yet answered, the ids its PONG acknowledges.
    pings: VecDeque<Vec<u16>>,
    last_read: Instant,
    events: &'a Events,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        stream: Box<dyn Io>,
        mut requests: mpsc::Receiver<Request>,
    ) -> Result<(), String> {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut keepalive = tokio::time::interval(self.s.keep_alive);
        keepalive.tick().await;
        let mut ack_check = tokio::time::interval(self.s.ack_timeout.min(Duration::from_secs(1)));
        loop {
            tokio::select! {
                biased;
                read = reader.read_buf(&mut self.rbuf) => {
                    match read {
                        Ok(0) => return Err("connection closed by the upstream".into()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("read failed: {e}")),
                    }
                    self.last_read = Instant::now();
                    while let Some(op) = proto::parse(&mut self.rbuf, MAX_READ_MESSAGE).map_err(|e| e.to_string())? {
                        self.handle(op)?;
                    }
                    // PONGs to the server's PINGs.
                    if !self.wbuf.is_empty() {
                        self.flush(&mut writer).await?;
                    }
                }
                request = requests.recv() => {
                    let Some(Request::Publish { subject, headers, payload }) = request else {
                        return Ok(());
                    };
                    let mut written = vec![self.encode(subject, &headers, &payload)];
                    while self.wbuf.len() < WRITE_BATCH_BYTES {
                        match requests.try_recv() {
                            Ok(Request::Publish { subject, headers, payload }) => {
                                written.push(self.encode(subject, &headers, &payload));
                            }
                            Ok(Request::Disconnect) => return Ok(()),
                            Err(_) => break,
                        }
                    }
                    if !self.s.jetstream {
                        self.group.extend_from_slice(&written);
                        self.ping();
                    }
                    self.flush(&mut writer).await?;
                    for id in written {
                        let _ = self.events.send(Ok(LinkEvent::Written(id)));
                    }
                }
                _ = keepalive.tick() => {
                    if self.last_read.elapsed() > self.s.keep_alive * 2 {
                        return Err(format!("upstream silent for {:?} (no PONG)", self.last_read.elapsed()));
                    }
                    self.ping();
                    self.flush(&mut writer).await?;
                }
                _ = ack_check.tick() => {
                    let now = Instant::now();
                    if let Some(oldest) = self.outstanding.values().map(|(t, _)| t).min() {
                        let waited = now.saturating_duration_since(*oldest);
                        if waited > self.s.ack_timeout {
                            let what = if self.s.jetstream { "JetStream acknowledgement" } else { "PONG" };
                            return Err(format!(
                                "no {what} for {waited:?} (ack_timeout {:?}) with {} publishes outstanding",
                                self.s.ack_timeout, self.outstanding.len()
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Encodes one publish into the write buffer; returns its id. The subject is kept
    /// (moved, not copied) for a permissions `-ERR`, which names only that.
    fn encode(&mut self, subject: String, headers: &[u8], payload: &[u8]) -> u16 {
        let id = self.next_free_id();
        if self.s.jetstream {
            let reply = format!("{}{id}", self.inbox);
            proto::encode_pub(&subject, Some(&reply), headers, payload, &mut self.wbuf);
        } else {
            proto::encode_pub(&subject, None, headers, payload, &mut self.wbuf);
        }
        self.outstanding.insert(id, (Instant::now(), subject));
        id
    }

    /// The next id (never 0, which the window reads as "QoS 0") not outstanding. The link
    /// keeps at most `inflight` (a u16) publishes outstanding, so one is always free.
    fn next_free_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id != 0 && !self.outstanding.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    fn ping(&mut self) {
        self.wbuf.extend_from_slice(proto::PING);
        self.pings.push_back(std::mem::take(&mut self.group));
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<(), String> {
        writer
            .write_all(&self.wbuf)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        self.wbuf.clear();
        Ok(())
    }

    fn handle(&mut self, op: ServerOp) -> Result<(), String> {
        match op {
            ServerOp::Ping => self.wbuf.extend_from_slice(proto::PONG),
            ServerOp::Pong => {
                for id in self.pings.pop_front().unwrap_or_default() {
                    if self.outstanding.remove(&id).is_some() {
                        self.answered(id, None, false);
                    }
                }
            }
            ServerOp::Err(text) => return self.server_error(text),
            ServerOp::Ok | ServerOp::Info(_) => {}
            ServerOp::Msg(m) => {
                let id = m
                    .subject
                    .strip_prefix(self.inbox.as_bytes())
                    .and_then(|rest| std::str::from_utf8(rest).ok())
                    .and_then(|rest| rest.parse::<u16>().ok());
                let Some(id) = id.filter(|_| &m.sid[..] == INBOX_SID.as_bytes()) else {
                    return Ok(());
                };
                if self.outstanding.remove(&id).is_none() {
                    return Ok(()); // answered already, or timed out on an earlier turn
                }
                if let Some(status) = m.status() {
                    return Err(match status {
                        503 => "JetStream unavailable: no responders (no stream takes this subject, or it has no leader)".into(),
                        other => format!("JetStream request failed with status {other}"),
                    });
                }
                match PubAck::parse(&m.payload)? {
                    PubAck::Stored { duplicate, .. } => self.answered(id, None, duplicate),
                    PubAck::Error {
                        code,
                        err_code,
                        description,
                    } => {
                        // A cluster without a quorum is not the event's fault: retried on
                        // the next connection, never dead-lettered.
                        if err_code == 10008 {
                            return Err(format!("JetStream unavailable: {description}"));
                        }
                        let refusal = Refusal {
                            reason: format!("js-{err_code}"),
                            detail: format!(
                                "JetStream error {code} (err_code {err_code}): {description}"
                            ),
                        };
                        self.answered(id, Some(refusal), false);
                    }
                }
            }
        }
        Ok(())
    }

    /// `-ERR 'Permissions Violation for Publish to "<subject>"'`: the server dropped that
    /// publish and keeps the connection, so the oldest publish outstanding on the subject
    /// is refused (resent, then dead-lettered as `not_permitted`), never taken as
    /// delivered by the next PONG. Any other `-ERR` ends the connection.
    fn server_error(&mut self, text: String) -> Result<(), String> {
        const DENIED: &str = "Permissions Violation for Publish to ";
        let Some(subject) = text.strip_prefix(DENIED) else {
            return Err(format!("the upstream reported an error: {text}"));
        };
        let subject = subject.trim_matches('"');
        let oldest = self
            .outstanding
            .iter()
            .filter(|(_, (_, s))| s == subject)
            .min_by_key(|(_, (t, _))| *t)
            .map(|(id, _)| *id);
        let Some(id) = oldest else {
            return Err(format!("the upstream reported an error: {text}"));
        };
        self.outstanding.remove(&id);
        let refusal = Refusal {
            reason: "not_permitted".into(),
            detail: format!("the NATS server refused the publish: {text}"),
        };
        self.answered(id, Some(refusal), false);
        Ok(())
    }

    fn answered(&self, pkid: u16, refused: Option<Refusal>, duplicate: bool) {
        let _ = self.events.send(Ok(LinkEvent::Acked {
            pkid,
            refused,
            duplicate,
        }));
    }
}
