//! The send path of a packed upstream (`pack = "ferry-batch-v1"`): many stored events in
//! one upstream message ([`crate::pack`]), acknowledged together.
//!
//! A batch is closed when the next event would pass `pack_max_events` or `pack_max_bytes`
//! (capped below the upstream's maximum packet size), or when the store has nothing more
//! and its first event has waited `pack_linger` since ferry received it. Until then the
//! events of an open batch are not taken from the store: the link reads them again once the
//! linger is over or enough have come for a full batch, so nothing is held outside the
//! store and a crash meanwhile loses nothing.
//!
//! The window tracks each event of a batch (`Window::push_batch`); the batch's
//! acknowledgement marks them all, a refusal resends the same events packed again, and past
//! `max_attempts` each becomes a dead letter of its own.

use super::client::Client;
use super::link::Link;
use super::window::{Span, Window};
use crate::config::PackCompression;
use crate::pack::{Compression, PackEvent, Packer};
use crate::store::StoredEvent;
use std::time::{Duration, Instant};

/// Bytes kept free below the upstream's maximum packet size for the publish's own header
/// (topic, properties, `Nats-Msg-Id`) around a batch.
const PACKET_OVERHEAD: usize = 1024;

/// What one pass of [`Link::send_packed`] did.
pub(super) struct PackedPass {
    /// Events sent (in closed batches) and their topic and payload bytes.
    pub events: usize,
    pub bytes: usize,
    /// An open batch is waiting for more events until then (its first event's linger).
    pub linger_until: Option<Instant>,
}

/// The events in the packer, not sent yet.
#[derive(Default)]
struct Open {
    seqs: Vec<u64>,
    qos: u8,
    bytes: usize,
    first_ms: u64,
}

impl Link {
    /// A packer for this connection: batches within `pack_max_bytes` and within the
    /// upstream's maximum packet size.
    fn packer(&self) -> Result<Packer, String> {
        let Some(pack) = &self.config.pack else {
            return Err("not a packed upstream".into());
        };
        let compression = match pack.compression {
            PackCompression::None => Compression::None,
            PackCompression::Lz4 => Compression::Lz4,
        };
        Packer::new(
            &self.gateway,
            compression,
            pack.max_events,
            self.batch_limit(),
        )
        .map_err(|e| e.to_string())
    }

    /// The largest batch: `pack_max_bytes`, and room for the publish around it within the
    /// upstream's maximum packet size.
    fn batch_limit(&self) -> usize {
        let configured = self.config.pack.as_ref().map_or(64 * 1024, |p| {
            usize::try_from(p.max_bytes.0).unwrap_or(usize::MAX)
        });
        configured.min(self.max_packet.saturating_sub(PACKET_OVERHEAD).max(1024))
    }

    /// The topic batches are published on.
    fn pack_topic(&self) -> String {
        let template = self
            .config
            .pack
            .as_ref()
            .map_or("ferry/batch/{gateway}", |p| p.topic.as_str());
        template.replace("{gateway}", &self.gateway)
    }

    /// Reads the next records and sends them in closed batches (see the module doc).
    pub(super) async fn send_packed(
        &self,
        client: &Client,
        window: &mut Window,
        lane: usize,
        allowed: usize,
    ) -> Result<PackedPass, String> {
        let (max_events, linger) = self
            .config
            .pack
            .as_ref()
            .map_or((1, Duration::ZERO), |p| (p.max_events, p.linger));
        // At least a batch's worth per read, so that reads do not cut batches short.
        let want = allowed.min(self.config.batch.max(max_events));
        let (records, last) = self
            .read_after(window, lane, window.scanned(lane), want)
            .await?;
        let at_head = records.len() < want;
        let mut packer = self.packer()?;
        let mut open = Open::default();
        let mut pass = PackedPass {
            events: 0,
            bytes: 0,
            linger_until: None,
        };
        for rec in records {
            let Some(route) = self.route(&rec) else {
                // The rule that selected it is gone: skipped (with an open batch, it is
                // read again with the batch's events).
                if open.seqs.is_empty() {
                    window.scanned_to(lane, rec.seq);
                }
                continue;
            };
            let topic = route.remote_topic(&rec.topic);
            let event = pack_event(&rec, &topic, route.qos);
            if !packer.fits(&event) {
                self.send_open(client, window, lane, &mut packer, &mut open, &mut pass)
                    .await?;
            }
            packer
                .push(&event)
                .map_err(|e| format!("packing seq {}: {e}", rec.seq))?;
            if open.seqs.is_empty() && packer.encoded_len() > self.batch_limit() {
                // Too large even alone: a dead letter, as an unpacked one would be.
                let size = packer.finish().len();
                let detail = format!(
                    "a batch of this one event is {size} bytes, over the largest batch this upstream takes ({} bytes)",
                    self.batch_limit()
                );
                self.give_up(window.main_of(lane), rec.seq, "too_large", detail, 0)
                    .await?;
                window.settled(lane, rec.seq);
                continue;
            }
            if open.seqs.is_empty() {
                open.first_ms = rec.received_ms;
            }
            open.seqs.push(rec.seq);
            open.qos = open.qos.max(route.qos);
            open.bytes += rec.topic.len() + rec.payload.len();
        }
        if !open.seqs.is_empty() {
            let age = Duration::from_millis(crate::event::now_ms().saturating_sub(open.first_ms));
            if at_head && open.seqs.len() < max_events && age < linger {
                // Not taken: read again when the linger is over or a batch is full.
                pass.linger_until = Some(Instant::now() + (linger - age));
                return Ok(pass);
            }
            // Cut short by the read's size, not by the window or a rate: its events are
            // read again with those after them next time, into a fuller batch. Only after
            // progress, so that a pass always sends something.
            if !at_head && allowed > want && pass.events > 0 {
                return Ok(pass);
            }
            self.send_open(client, window, lane, &mut packer, &mut open, &mut pass)
                .await?;
        }
        window.scanned_to(lane, last);
        Ok(pass)
    }

    /// Closes the batch in `packer` and hands it to the client.
    async fn send_open(
        &self,
        client: &Client,
        window: &mut Window,
        lane: usize,
        packer: &mut Packer,
        open: &mut Open,
        pass: &mut PackedPass,
    ) -> Result<(), String> {
        let Open {
            seqs, qos, bytes, ..
        } = std::mem::take(open);
        let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
            return Ok(());
        };
        let span = Span {
            lane,
            first: *first,
            last: *last,
        };
        let qos = self.publish_batch(client, packer, span, qos).await?;
        window.push_batch(lane, &seqs, qos);
        pass.events += seqs.len();
        pass.bytes += bytes;
        Ok(())
    }

    /// Publishes the batch in `packer` for `span` on the pack topic; its id (MQTT 5
    /// `ferry-id`, NATS `Nats-Msg-Id`) is `<gateway>-<first>-<last>`: a batch sent again
    /// with other events in it (other batch limits after a reconnect) is not taken for a
    /// duplicate. Each event in it keeps its own key.
    async fn publish_batch(
        &self,
        client: &Client,
        packer: &mut Packer,
        span: Span,
        qos: u8,
    ) -> Result<u8, String> {
        let id = format!("{}-{}-{}", self.gateway, span.first, span.last);
        let topic = self.pack_topic();
        let prepared = client
            .prepare(topic.clone(), qos, packer.finish(), id, &[])
            .map_err(|e| format!("pack_topic {topic:?} has no NATS subject form: {e}"))?;
        client.publish(prepared).await
    }

    /// Sends refused batch `span` again: its events still in flight, read back from the
    /// store and packed into one batch as before.
    pub(super) async fn resend_batch(
        &self,
        client: &Client,
        window: &mut Window,
        span: Span,
    ) -> Result<(), String> {
        let seqs = window.seqs_in(span);
        let count = usize::try_from(span.last - span.first + 1).unwrap_or(usize::MAX);
        let (records, _) = self
            .read_after(window, span.lane, span.first - 1, count)
            .await?;
        let mut packer = self.packer()?;
        let mut qos = 0;
        for rec in records.iter().filter(|r| seqs.contains(&r.seq)) {
            let Some(route) = self.route(rec) else {
                continue;
            };
            let topic = route.remote_topic(&rec.topic);
            qos = qos.max(route.qos);
            packer
                .push(&pack_event(rec, &topic, route.qos))
                .map_err(|e| format!("packing seq {}: {e}", rec.seq))?;
        }
        if packer.is_empty() {
            // Gone (retention) or no longer routed: nothing to send again.
            window.mark(span);
            return Ok(());
        }
        let qos = self.publish_batch(client, &mut packer, span, qos).await?;
        window.resend(span, qos);
        Ok(())
    }
}

/// `rec` as the packer takes it, on its remote `topic` at the rule's `qos`.
fn pack_event<'a>(rec: &'a StoredEvent, topic: &'a str, qos: u8) -> PackEvent<'a> {
    PackEvent {
        seq: rec.seq,
        received_ms: rec.received_ms,
        topic,
        payload: &rec.payload,
        qos,
        retain: rec.retain,
        user_properties: &rec.user_properties,
    }
}
