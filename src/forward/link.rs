//! One upstream link (MQTT, NATS or JetStream): read the backlog after the cursor,
//! publish it with a window in flight, fold acknowledgements into the cursor, persist it,
//! and reconnect when the link drops (to the next of the upstream's `urls`).
//!
//! A link has one lane per priority of its rules (`forward::lanes`), each with its own
//! cursor; it always reads from the highest-priority lane that has not read the store to
//! its end, so a backlog drains highest priority first while each topic (one lane per
//! upstream) keeps its order.
//!
//! Each connection attempt gets a fresh client ([`super::client`]). rumqttc would
//! otherwise replay (or, with a clean session, forget) its own unacked publishes; here the
//! store's cursor is the only truth, and after any drop the link resends from
//! `cursor + 1`.

use super::Route;
use super::backoff::Backoff;
use super::client::{self, Client, LinkEvent, Refusal};
use super::rate::Rate;
use super::watchdog::Watchdog;
use super::window::{Span, Window};
use crate::config::{Drain, UpstreamConfig, UpstreamUrl};
use crate::metrics::UpstreamMetrics;
use crate::store::{Store, StoredEvent};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often an advanced cursor is handed to the store writer (also at once when a whole
/// window was acknowledged since the last time). Bounds the commit rate that acks cause
/// and, with the window, the duplicates a crash can cause: at most `2 * inflight`.
const CURSOR_FLUSH: Duration = Duration::from_millis(50);

pub(super) struct Link {
    pub config: UpstreamConfig,
    pub routes: Vec<Route>,
    pub store: Store,
    /// Highest priority first.
    pub lanes: Vec<LaneSlot>,
    pub metrics: Arc<UpstreamMetrics>,
    pub shutdown: watch::Receiver<bool>,
    /// Prefix of the `ferry-id` idempotency key (MQTT 5 upstreams).
    pub gateway: Arc<str>,
    /// The largest packet the upstream takes, as its CONNACK (MQTT) or INFO (NATS) said
    /// (usize::MAX: no limit).
    pub max_packet: usize,
    /// Connection attempts so far: attempt n goes to `urls[n % urls.len()]`.
    pub attempts: usize,
    /// The last seq stored before `routes` took effect (the store's end at start): the
    /// rule indices stored with later events are indices into `routes`. (A reload of the
    /// rules must move it.)
    pub rules_since: u64,
}

/// One lane of a link, as the store registered it.
pub(super) struct LaneSlot {
    /// Index in `Store::upstreams`.
    pub slot: usize,
    /// Its bit in a record's destination mask.
    pub bit: u8,
    /// Where it stood at start.
    pub cursor: u64,
    /// Its live-first (split, live cursor) as last handed to the store (see
    /// `store::UpstreamSlot::live`).
    pub live: (u64, u64),
}

/// What became of one stored event handed to [`Link::publish`].
enum Published {
    Sent(u8),
    NoRoute,
    /// The publish would be this many bytes, over the upstream's maximum packet size.
    TooLarge(usize),
    /// The remote topic has no NATS subject form.
    Unmappable(crate::topic::nats::MapError),
}

/// Refused events waiting to be sent again, each with when (the delay doubles with each
/// refusal, from `backoff_min`). At most the window's events.
#[derive(Default)]
struct Retries(VecDeque<(Instant, Span)>);

impl Retries {
    fn push(&mut self, at: Instant, span: Span) {
        let i = self.0.partition_point(|(t, _)| *t <= at);
        self.0.insert(i, (at, span));
    }

    fn next_due(&self) -> Option<Instant> {
        self.0.front().map(|(t, _)| *t)
    }

    fn take_due(&mut self, now: Instant) -> Vec<Span> {
        let n = self.0.partition_point(|(t, _)| *t <= now);
        self.0.drain(..n).map(|(_, span)| span).collect()
    }
}

/// How many times each refused event not yet past the cursor was refused, over
/// connections. Entries at or below the cursor are dropped as it passes them, so it holds
/// at most the events between the cursor and the scan position (the window).
#[derive(Default)]
struct Refusals(std::collections::HashMap<u64, u32>);

impl Refusals {
    /// One more refusal of `seq` (above `cursor`); returns how many it has had.
    fn count(&mut self, seq: u64, cursor: u64) -> u32 {
        self.0.retain(|s, _| *s > cursor);
        let n = self.0.entry(seq).or_insert(0);
        *n += 1;
        *n
    }

    fn forget(&mut self, seq: u64) {
        self.0.remove(&seq);
    }
}

/// How often a link waiting out a long backoff checks whether its upstream is back.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why a connection ended.
enum End {
    Shutdown,
    Lost(String),
}

impl Link {
    pub async fn run(mut self) {
        let slot = self.lanes.first().map_or(0, |l| l.slot);
        let seed = crate::event::now_ms() ^ ((slot as u64) << 32);
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max, seed);
        let mut persisted: Vec<u64> = self.lanes.iter().map(|l| l.cursor).collect();
        self.metrics.cursor.set(low(&persisted) as i64);
        let mut was_up = true; // so the first failure is logged
        // Kept across connections: an upstream that drops the link after refusing (as
        // mosquitto 2.0 does with max_queued_messages 0) still counts toward max_attempts.
        let mut refusals = Refusals::default();
        loop {
            let mut window = Window::with_lanes(&persisted);
            // A backlog still draining behind live events (before a restart or a drop).
            for (i, lane) in self.lanes.iter().enumerate() {
                let (split, live) = lane.live;
                if split > persisted[i] {
                    window.split(i, split, live.max(split));
                }
            }
            let end = self
                .connection(
                    &mut window,
                    &mut persisted,
                    &mut backoff,
                    &mut was_up,
                    &mut refusals,
                )
                .await;
            self.persist(&window, &mut persisted).await;
            self.metrics.connected.set(0);
            match end {
                End::Shutdown => {
                    tracing::info!(upstream = %self.config.name, cursor = low(&persisted), "upstream link stopped");
                    return;
                }
                End::Lost(reason) => {
                    self.metrics.connect_failures.inc();
                    // Keep the backlog figure current while the link is down.
                    let committed = *self.store.committed().borrow();
                    self.set_backlog(committed.saturating_sub(low(&persisted)));
                    let delay = backoff.next_delay();
                    if was_up {
                        tracing::warn!(upstream = %self.config.name, url = %self.config.url, %reason, retry_in = ?delay, "upstream down");
                        was_up = false;
                    } else {
                        tracing::debug!(upstream = %self.config.name, %reason, retry_in = ?delay, "upstream still down");
                    }
                    // While down, the age of the oldest owed event keeps growing: measure
                    // it every second (it is what an operator alarms on).
                    let retry = tokio::time::sleep(delay);
                    tokio::pin!(retry);
                    let mut age_tick = tokio::time::interval(Duration::from_secs(1));
                    // A long backoff must not delay the drain once the upstream is back:
                    // a TCP connect probe every PROBE_EVERY ends the wait as soon as the
                    // upstream turns reachable after having been unreachable. Only that
                    // transition counts, so an upstream that is reachable but refuses
                    // ferry (credentials, TLS) is still retried at the backoff's pace.
                    let probing = delay > PROBE_EVERY * 2;
                    let mut probe = tokio::time::interval(PROBE_EVERY);
                    let mut seen_unreachable = false;
                    loop {
                        tokio::select! {
                            _ = &mut retry => break,
                            _ = self.shutdown.changed() => break,
                            _ = age_tick.tick() => self.measure_oldest(&persisted).await,
                            _ = probe.tick(), if probing => {
                                if !self.reachable().await {
                                    seen_unreachable = true;
                                } else if seen_unreachable {
                                    tracing::info!(upstream = %self.config.name, url = %self.config.url,
                                        "upstream reachable again: reconnecting before the backoff ends");
                                    break;
                                }
                            }
                        }
                    }
                    if *self.shutdown.borrow() {
                        tracing::info!(upstream = %self.config.name, cursor = low(&persisted), "upstream link stopped");
                        return;
                    }
                }
            }
        }
    }

    /// The address the next connection attempt goes to.
    fn next_url(&self) -> &UpstreamUrl {
        let urls = &self.config.urls;
        urls.get(self.attempts % urls.len().max(1))
            .unwrap_or(&self.config.url)
    }

    /// Whether a TCP connection to the next address can be opened now (closed at once).
    async fn reachable(&self) -> bool {
        let url = self.next_url();
        let addr = (url.host.as_str(), url.port);
        let connect = tokio::net::TcpStream::connect(addr);
        matches!(tokio::time::timeout(PROBE_EVERY, connect).await, Ok(Ok(_)))
    }

    async fn connection(
        &mut self,
        window: &mut Window,
        persisted: &mut [u64],
        backoff: &mut Backoff,
        was_up: &mut bool,
        refusals: &mut Refusals,
    ) -> End {
        let url = self.next_url().clone();
        self.attempts = self.attempts.wrapping_add(1);
        let (client, mut conn) = match client::connect(&self.config, &url) {
            Ok(c) => c,
            Err(reason) => return End::Lost(format!("{url}: {reason}")),
        };
        let mut retries = Retries::default();
        let mut committed = self.store.committed();
        let mut flush = tokio::time::interval(CURSOR_FLUSH);
        let mut age_tick = tokio::time::interval(Duration::from_secs(1));
        // Events in flight at most: `inflight` publishes, of up to `pack_max_events` each
        // on a packed upstream.
        let per_publish = self.config.pack.as_ref().map_or(1, |p| p.max_events);
        let full = usize::from(self.config.inflight).saturating_mul(per_publish);
        // Slow start: one publish alone until the upstream answers one on this connection.
        // An upstream that refuses a publish ("no responders" while a JetStream stream is
        // created or elects a leader) ends the connection, but the publishes written after
        // it may already be stored by then, and the refused one, resent, would land after
        // them. One publish alone cannot be overtaken; any answer (a refusal too) shows the
        // upstream taking publishes, and the window opens.
        let mut capacity = per_publish;
        // A packed upstream's open batch waits for more events: until then, or until a
        // batch's worth more were committed after the seq it held at (whoever's they are,
        // so the store is read again at most once per that many commits).
        let mut lingering: Option<(Instant, u64)> = None;
        let mut rate = self.config.max_rate.map(Rate::new);
        let mut byte_rate = self
            .config
            .max_bytes_rate
            .map(|b| Rate::new(u32::try_from(b.0).unwrap_or(u32::MAX)));
        let mut connected = false;
        let mut watchdog = Watchdog::new(self.config.stall_timeout);
        let mut stall_check = tokio::time::interval(watchdog.check_every());
        loop {
            // Refill in chunks (a quarter window, or when empty), not one read per ack:
            // each read is a store transaction and a hop to the blocking pool.
            let room = capacity.saturating_sub(window.len());
            let chunk = (capacity / 4).clamp(1, self.config.batch);
            let room = if room >= chunk || window.len() == 0 {
                room
            } else {
                0
            };
            let now = Instant::now();
            let allowed = rate.as_mut().map_or(room, |r| r.available(now).min(room));
            let mean = self.store.mean_record_bytes();
            let allowed = byte_rate
                .as_mut()
                .map_or(allowed, |r| r.events_of(now, mean).min(allowed));
            let waiting = |lingering: Option<(Instant, u64)>, committed: u64| {
                lingering.is_some_and(|(until, from)| {
                    Instant::now() < until && committed.saturating_sub(from) < per_publish as u64
                })
            };
            // The highest-priority lane that has not read the store to its end.
            let behind = window.behind(*committed.borrow());
            let pending = connected && !waiting(lingering, *committed.borrow());
            if let Some(lane) = behind.filter(|_| pending && allowed > 0) {
                let pass = if self.config.pack.is_some() {
                    let held_at = *committed.borrow();
                    self.send_packed(&client, window, lane, allowed)
                        .await
                        .map(|p| {
                            lingering = p.linger_until.map(|until| (until, held_at));
                            (p.events, p.bytes)
                        })
                } else {
                    self.send_batch(&client, window, lane, allowed).await
                };
                match pass {
                    Ok((sent, bytes)) => {
                        if sent > 0 {
                            watchdog.sent(Instant::now());
                        }
                        if let Some(r) = rate.as_mut() {
                            r.take(sent);
                        }
                        if let Some(r) = byte_rate.as_mut() {
                            r.take(bytes);
                        }
                    }
                    Err(reason) => return End::Lost(reason),
                }
            }
            let room = capacity.saturating_sub(window.len());
            let more = connected
                && (room >= chunk || window.len() == 0)
                && window.behind(*committed.borrow()).is_some()
                && !waiting(lingering, *committed.borrow());
            let throttle = match (rate.as_ref(), byte_rate.as_ref()) {
                (None, None) => None,
                (a, b) => Some(
                    a.map(Rate::wait)
                        .unwrap_or_default()
                        .max(b.map(Rate::wait).unwrap_or_default()),
                ),
            }
            .filter(|_| more);
            // Until CONNACK only shutdown may interrupt `conn.poll()`: rumqttc's connect
            // is not cancel-safe, and a timer firing mid-handshake would drop the half-open
            // connection and start over (forever, when a handshake takes longer than
            // CURSOR_FLUSH). The attempt is bounded by connect_timeout.
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => {
                    client.disconnect();
                    return End::Shutdown;
                }
                event = conn.poll() => match self.progress(&mut watchdog, event) {
                    Ok(LinkEvent::Connected { max_packet }) => {
                        connected = true;
                        self.max_packet = max_packet.map_or(usize::MAX, |m| m as usize);
                        *was_up = true;
                        backoff.reset();
                        tracing::info!(upstream = %self.config.name, %url, client_id = %self.config.client_id,
                            protocol = self.config.protocol.as_str(), resume_after = low(&window.cursors()), "upstream connected");
                        if self.config.drain == Drain::LiveFirst {
                            self.split_backlogs(window, *committed.borrow());
                        }
                        // After the split: whatever a watcher publishes once it sees the
                        // link up is live.
                        self.metrics.connected.set(1);
                    }
                    Ok(LinkEvent::Written(pkid)) => {
                        let before = window.len();
                        window.written(pkid);
                        // A QoS 0 publish is delivered once written: the only answer it has.
                        if window.len() < before {
                            capacity = full;
                        }
                    }
                    Ok(LinkEvent::Acked { pkid, refused, duplicate }) => {
                        capacity = full;
                        if let Some(span) = window.answered(pkid) {
                            match refused {
                                None => {
                                    refusals.forget(span.first);
                                    let events = if span.first == span.last { 1 } else { window.seqs_in(span).len() };
                                    window.mark(span);
                                    self.metrics.forwarded.add(events as u64);
                                    if duplicate {
                                        self.metrics.duplicates.inc();
                                    }
                                }
                                Some(refusal) => {
                                    if let Err(reason) = self.refused(window, refusals, &mut retries, span, refusal).await {
                                        return End::Lost(reason);
                                    }
                                }
                            }
                        }
                        // Never let more than one window of acknowledged events go
                        // unpersisted: that keeps duplicates after a crash within
                        // two windows (in flight + acknowledged since the last flush).
                        if window.cursors().iter().zip(persisted.iter()).any(|(c, p)| *c >= p + capacity as u64) {
                            self.persist(window, persisted).await;
                        }
                    }
                    Ok(LinkEvent::Other) => {}
                    Err(e) => return End::Lost(e),
                },
                changed = committed.changed(), if connected => {
                    // The writer is gone (ferry is stopping): a closed channel would be
                    // ready at once on every turn of this loop.
                    if changed.is_err() {
                        return End::Lost("the store writer has stopped".into());
                    }
                }
                _ = flush.tick(), if connected => {
                    self.persist(window, persisted).await;
                    let backlog = committed.borrow().saturating_sub(low(persisted));
                    self.set_backlog(backlog);
                }
                _ = age_tick.tick(), if connected => self.measure_oldest(&window.cursors()).await,
                _ = stall_check.tick(), if connected && watchdog.enabled() => {
                    if let Some(silent) = watchdog.stalled(Instant::now(), window.len() > 0) {
                        return self.stalled(window, silent);
                    }
                }
                _ = tokio::time::sleep_until(retries.next_due().unwrap_or_else(Instant::now).into()), if retries.next_due().is_some() => {
                    for span in retries.take_due(Instant::now()) {
                        if let Err(reason) = self.resend(&client, window, refusals, span).await {
                            return End::Lost(reason);
                        }
                    }
                }
                _ = tokio::time::sleep_until(lingering.map_or_else(Instant::now, |(t, _)| t).into()), if lingering.is_some() => {
                    lingering = None;
                }
                _ = tokio::time::sleep(throttle.unwrap_or_default()), if throttle.is_some() => {}
                _ = std::future::ready(()), if more && throttle.is_none() => {}
            }
        }
    }

    /// Notes acknowledged progress (for the watchdog and `/health`) before `event` is
    /// handled: a PUBACK of any packet id, refused or not (the upstream answered), or a
    /// QoS 0 publish written (the only delivery QoS 0 has).
    fn progress(
        &self,
        watchdog: &mut Watchdog,
        event: Result<LinkEvent, String>,
    ) -> Result<LinkEvent, String> {
        if let Ok(LinkEvent::Acked { .. } | LinkEvent::Written(0)) = &event {
            watchdog.acked(Instant::now());
            self.metrics.last_ack_ms.set(crate::event::now_ms() as i64);
        }
        event
    }

    /// The watchdog tripped: the connection is dropped (`End::Lost`), so the link
    /// reconnects with backoff and resends from the cursor.
    fn stalled(&self, window: &Window, silent: Duration) -> End {
        self.metrics.stalls.inc();
        tracing::warn!(upstream = %self.config.name, cursor = low(&window.cursors()), in_flight = window.len(),
            without_progress = ?silent, stall_timeout = ?self.config.stall_timeout,
            "upstream stalled: connected but nothing acknowledged; dropping the connection to re-establish it");
        End::Lost(format!(
            "stalled: nothing acknowledged for {silent:?} with {} in flight",
            window.len()
        ))
    }

    fn set_backlog(&self, events: u64) {
        self.metrics.backlog_events.set(events as i64);
        let bytes = events.saturating_mul(self.store.mean_record_bytes());
        self.metrics.backlog_bytes.set(bytes as i64);
    }

    /// Age of the oldest event still owed to this upstream, on any lane (0 when none is).
    async fn measure_oldest(&self, cursors: &[u64]) {
        let store = self.store.clone();
        let lanes: Vec<(u64, u8)> = self
            .lanes
            .iter()
            .zip(cursors)
            .map(|(l, c)| (*c, l.bit))
            .collect();
        let oldest = tokio::task::spawn_blocking(move || {
            let mut first: Option<u64> = None;
            for (cursor, bit) in lanes {
                let (records, _) = store.read_after(cursor, 1, bit)?;
                if let Some(r) = records.first() {
                    first = Some(first.map_or(r.received_ms, |f| f.min(r.received_ms)));
                }
            }
            Ok::<_, crate::store::StoreError>(first)
        })
        .await;
        let age_ms = match oldest {
            Ok(Ok(first)) => first.map_or(0, |ms| crate::event::now_ms().saturating_sub(ms)),
            _ => return,
        };
        self.metrics.oldest_backlog_ms.set(age_ms as i64);
    }

    /// Reads the next records after the window's scan position and hands them to the client.
    /// Returns how many were sent, and their bytes (topics and payloads).
    async fn send_batch(
        &self,
        client: &Client,
        window: &mut Window,
        lane: usize,
        allowed: usize,
    ) -> Result<(usize, usize), String> {
        let room = allowed.min(self.config.batch);
        let (records, last) = self
            .read_after(window, lane, window.scanned(lane), room)
            .await?;
        let (mut sent, mut bytes) = (0, 0);
        for rec in records {
            let seq = rec.seq;
            let size = rec.topic.len() + rec.payload.len();
            match self.publish(client, rec).await? {
                Published::Sent(qos) => {
                    window.push(lane, seq, qos);
                    sent += 1;
                    bytes += size;
                }
                // The rule that selected it is gone from the config: nothing to send.
                Published::NoRoute => {}
                Published::TooLarge(size) => {
                    let detail = format!(
                        "publish of {size} bytes is larger than the upstream's maximum packet size ({} bytes)",
                        self.max_packet
                    );
                    self.give_up(window.main_of(lane), seq, "too_large", detail, 0)
                        .await?;
                    window.settled(lane, seq);
                }
                Published::Unmappable(e) => {
                    let detail = format!("the remote topic has no NATS subject form: {e}");
                    self.give_up(window.main_of(lane), seq, "unmappable", detail, 0)
                        .await?;
                    window.settled(lane, seq);
                }
            }
        }
        window.scanned_to(lane, last);
        Ok((sent, bytes))
    }

    /// Up to `n` of window lane `lane`'s records after seq `after` (up to its end), and
    /// the seq read up to.
    pub(super) async fn read_after(
        &self,
        window: &Window,
        lane: usize,
        after: u64,
        n: usize,
    ) -> Result<(Vec<StoredEvent>, u64), String> {
        let store = self.store.clone();
        let bit = self.lane_bit(window.main_of(lane));
        let until = window.end(lane);
        let read = tokio::task::spawn_blocking(move || store.read_between(after, until, n, bit))
            .await
            .map_err(|e| format!("store read task failed: {e}"))?;
        read.map_err(|e| {
            tracing::error!(upstream = %self.config.name, error = %e, "store read failed");
            format!("store read failed: {e}")
        })
    }

    /// The rule that sends `rec` to this upstream: for an event stored since these rules
    /// took effect (`rules_since`), the one ingest chose, stored with it (format 3
    /// records), so the rules are not matched again; for an older one (stored under
    /// another config, perhaps), or one for more than four upstreams, the first rule
    /// that matches now.
    pub(super) fn route(&self, rec: &StoredEvent) -> Option<&Route> {
        let chosen = self
            .lanes
            .iter()
            .find(|l| rec.dests & (1u64 << l.bit) != 0)
            .and_then(|l| rec.route_for(l.bit))
            .filter(|_| rec.seq > self.rules_since)
            .and_then(|i| self.routes.get(i));
        chosen.or_else(|| {
            self.routes
                .iter()
                .find(|r| crate::topic::matches(&r.filter, &rec.topic))
        })
    }

    /// Routes and hands one stored event to the client (or says why not).
    async fn publish(&self, client: &Client, rec: StoredEvent) -> Result<Published, String> {
        let Some(route) = self.route(&rec) else {
            return Ok(Published::NoRoute);
        };
        let StoredEvent {
            seq,
            topic,
            payload,
            user_properties,
            ..
        } = rec;
        let remote = route.remote_topic(&topic);
        let ferry_id = format!("{}-{seq}", self.gateway);
        let prepared = match client.prepare(remote, route.qos, payload, ferry_id, &user_properties)
        {
            Ok(p) => p,
            Err(e) => return Ok(Published::Unmappable(e)),
        };
        let size = prepared.size();
        if size > self.max_packet {
            // rumqttc would refuse to write it and drop the link, again at every resend;
            // nats-server would end the connection.
            return Ok(Published::TooLarge(size));
        }
        let qos = client.publish(prepared).await?;
        Ok(Published::Sent(qos))
    }

    /// The upstream refused `seq`: send it again after a delay (doubling per refusal)
    /// while it has attempts left, then move it to the dead letters so the rest of the
    /// backlog goes on.
    async fn refused(
        &self,
        window: &mut Window,
        refusals: &mut Refusals,
        retries: &mut Retries,
        span: Span,
        refusal: Refusal,
    ) -> Result<(), String> {
        self.metrics.refused.inc();
        let seq = span.first;
        let attempts = refusals.count(seq, low(&window.cursors()));
        if attempts < self.config.max_attempts {
            let delay = self
                .config
                .backoff_min
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(self.config.backoff_max);
            tracing::debug!(upstream = %self.config.name, seq, reason = %refusal.reason, attempts, retry_in = ?delay,
                "upstream refused a forwarded event; sending it again");
            retries.push(Instant::now() + delay, span);
            return Ok(());
        }
        refusals.forget(seq);
        // A refused batch: each of its events is a dead letter of its own.
        for seq in window.seqs_in(span) {
            self.give_up(
                window.main_of(span.lane),
                seq,
                &refusal.reason,
                refusal.detail.clone(),
                attempts,
            )
            .await?;
        }
        window.mark(span);
        Ok(())
    }

    /// Sends refused `span` again (its delay is over).
    async fn resend(
        &self,
        client: &Client,
        window: &mut Window,
        refusals: &mut Refusals,
        span: Span,
    ) -> Result<(), String> {
        if self.config.pack.is_some() {
            return self.resend_batch(client, window, span).await;
        }
        let seq = span.first;
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || store.read_seq(seq))
            .await
            .map_err(|e| format!("store read task failed: {e}"))?
            .map_err(|e| format!("store read failed: {e}"))?;
        if let Some(rec) = read {
            if let Published::Sent(qos) = self.publish(client, rec).await? {
                window.resend(span, qos);
                return Ok(());
            }
        }
        // Gone (retention), no longer routed or no longer sendable: nothing to send again.
        refusals.forget(seq);
        window.mark(span);
        Ok(())
    }

    /// Moves `seq` to the dead-letter table; returns once that is committed (the cursor
    /// may pass it then). An error is a reason to drop the link: the event is sent again
    /// from the cursor, nothing is skipped.
    pub(super) async fn give_up(
        &self,
        lane: usize,
        seq: u64,
        reason: &str,
        detail: String,
        attempts: u32,
    ) -> Result<(), String> {
        tracing::warn!(upstream = %self.config.name, seq, reason, %detail, attempts,
            "upstream refused an event: moved to the dead letters (`ferry store dlq list`); the backlog goes on");
        let refusal = crate::store::deadletter::Refusal {
            upstream: self.config.name.as_str().into(),
            bit: self.lane_bit(lane),
            seq,
            reason: reason.to_string(),
            detail,
            attempts,
        };
        self.store
            .dead_letter(refusal)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot store a dead letter: {e}"))
    }

    /// The store bit of `lane`.
    fn lane_bit(&self, lane: usize) -> u8 {
        self.lanes.get(lane).map_or(0, |l| l.bit)
    }

    /// Hands each lane's advanced cursor to the store writer.
    /// `drain = "live_first"`, on connecting: each lane with a backlog (and none split
    /// off yet) sends what is committed from now on first, and its backlog up to
    /// `committed` behind it. The split is handed to the store before anything after it
    /// is sent, so a crash never takes live events already sent for backlog.
    fn split_backlogs(&mut self, window: &mut Window, committed: u64) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let cursor = window.cursor(i);
            if window.is_split(i) || cursor >= committed {
                continue;
            }
            window.split(i, committed, committed);
            lane.live = (committed, committed);
            let _ = self.store.set_live(lane.slot, committed, committed);
            tracing::info!(upstream = %self.config.name, lane = i, backlog_after = cursor, backlog_to = committed,
                "live_first: new events go out first, the backlog drains behind them");
        }
    }

    /// Hands each lane's advanced cursor, and its live-first state, to the store writer:
    /// the cursor first, so a backlog that is over is never forgotten before the cursor
    /// passed it.
    async fn persist(&mut self, window: &Window, persisted: &mut [u64]) {
        let mut moved = false;
        for (i, (lane, p)) in self.lanes.iter_mut().zip(persisted.iter_mut()).enumerate() {
            let (cursor, live) = window.store_state(i);
            if cursor > *p && self.store.advance_cursor(lane.slot, cursor).await.is_ok() {
                *p = cursor;
                moved = true;
            }
            if live != lane.live
                && cursor == *p
                && self.store.set_live(lane.slot, live.0, live.1).is_ok()
            {
                lane.live = live;
            }
        }
        if moved {
            self.metrics.cursor.set(low(persisted) as i64);
        }
    }
}

/// The lowest of a link's lane cursors: everything at or below it is acknowledged on
/// every lane (the figure `ferry_upstream_cursor` shows).
fn low(cursors: &[u64]) -> u64 {
    cursors.iter().copied().min().unwrap_or(0)
}
