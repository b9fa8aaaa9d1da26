//! Scenario `hostile`: the peak RSS (VmHWM) of ferry with `[limits] memory = "32MiB"`
//! under each hostile kind of client state (issue 11, case 2), against the stated bound
//! `[limits] memory` + 16 MiB, one row per kind, each in a fresh ferry:
//!
//! - (a) 3 MQTT clients x 1,000 SUBSCRIBEs of 60 KB filters;
//! - (b) 4 NATS connections x 65,536 SUBs;
//! - (c) 200 half-sent 1 MB packets per protocol;
//! - (d) 30 MQTT 5 connections x 64 topic aliases of 65,000 B topics;
//! - (e) 2,000 idle MQTT + 2,000 idle NATS connections;
//! - (f) 3 offline persistent sessions subscribed to `#` while 100,000 QoS 1 messages of
//!   1 KiB are published.
//!
//! After each kind a well-behaved MQTT client must still subscribe, publish and receive.
//! The peer is mosquitto with its own global cap, `memory_limit` = the same 48 MiB, and
//! its default `max_queued_messages` (1,000), doing the MQTT part of the same kind in a
//! fresh process; it speaks no NATS, so NATS parts are ferry's alone (said in the note).

use crate::mqtt_load::{self, PubSpec};
use crate::procs::{Ferry, Mem, Mosquitto, ferry_base_config, free_port, mem_of};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::{Context, Result, bail};
use rumqttc::QoS;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `[limits] memory`, and what ferry may use beyond it (docs/guarantees.md).
const BUDGET_MIB: f64 = 32.0;
const BASELINE_MIB: f64 = 16.0;
const PEER: &str = "mosquitto, memory_limit 48 MiB";
/// mosquitto's settings for this scenario: a global heap cap equal to ferry's bound, its
/// default queue of 1,000 messages per client, and 64 topic aliases like ferry's default.
const MOSQUITTO_LIMITS: &str = "memory_limit 50331648\nmax_queued_messages 1000\n\
     max_inflight_messages 100\nmax_topic_alias 64\n";

/// Longest a hostile client waits for one write: a broker that stops reading a client it
/// has refused (instead of closing it) must not hold the benchmark up.
const WRITE_LIMIT: Duration = Duration::from_secs(5);

/// Writes `bytes` within [`WRITE_LIMIT`]; false if the write failed or ran out.
async fn write_within(s: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_LIMIT, s.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---- MQTT and NATS on raw sockets: hostile clients do not use a client library ----

fn vbi(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    vbi(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT, clean session, no keep-alive; MQTT 5 (no properties) or 3.1.1.
fn connect_packet(id: &str, v5: bool) -> Vec<u8> {
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        if v5 { 5 } else { 4 },
        0x02,
        0,
        0,
    ];
    if v5 {
        body.push(0);
    }
    string(id.as_bytes(), &mut body);
    packet(0x10, &body)
}

fn subscribe_packet(id: u16, filter: &str) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    string(filter.as_bytes(), &mut body);
    body.push(0);
    packet(0x82, &body)
}

fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic.as_bytes(), &mut body);
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

/// An MQTT 5 QoS 0 PUBLISH that sets topic alias `alias` for `topic`.
fn publish_alias_packet(topic: &str, alias: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic.as_bytes(), &mut body);
    body.extend_from_slice(&[3, 0x23]);
    body.extend_from_slice(&alias.to_be_bytes());
    body.push(b'x');
    packet(0x30, &body)
}

/// Reads one MQTT packet: (first byte, body).
async fn read_packet(s: &mut (impl AsyncReadExt + Unpin)) -> Result<(u8, Vec<u8>)> {
    let first = s.read_u8().await?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = s.read_u8().await?;
        len |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            bail!("bad remaining length");
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await?;
    Ok((first, body))
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .with_context(|| format!("{what}: no answer within 10 s"))?
}

/// A connected MQTT client (CONNACK 0 received).
async fn mqtt_open(port: u16, id: &str, v5: bool) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    s.write_all(&connect_packet(id, v5)).await?;
    let (first, body) = within("CONNACK", read_packet(&mut s)).await?;
    if first != 0x20 || body.get(1) != Some(&0) {
        bail!("{id}: CONNECT refused: {first:#x} {body:?}");
    }
    Ok(s)
}

/// Opens a NATS connection and waits for PONG; `None` when ferry refused it at accept
/// (closed it before any PONG).
async fn nats_try_open(port: u16) -> Result<Option<TcpStream>> {
    match nats_open(port).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if format!("{e:#}").contains("closed") || format!("{e:#}").contains("reset") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A connected NATS client (its CONNECT answered by PONG).
async fn nats_open(port: u16) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
        .await?;
    let mut got = Vec::new();
    within("NATS PONG", async {
        let mut buf = [0u8; 4096];
        while !got.windows(6).any(|w| w == b"PONG\r\n") {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                bail!("NATS connection closed: {}", String::from_utf8_lossy(&got));
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await?;
    Ok(s)
}

/// True if the peer closed `s` (what it sent before is read and ignored).
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Of `held`, how many the broker has closed, once that count stops changing (1 s) or
/// after 30 s.
async fn settled_closes(held: &mut [TcpStream]) -> usize {
    let mut is_closed = vec![false; held.len()];
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = (usize::MAX, Instant::now());
    loop {
        for (s, c) in held.iter_mut().zip(is_closed.iter_mut()) {
            if !*c {
                *c = closed(s).await;
            }
        }
        let n = is_closed.iter().filter(|c| **c).count();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(1) || Instant::now() >= end {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A well-behaved client subscribes, publishes and receives its own message. It may
/// have to wait up to a few seconds for the hostile clients' places to be given back
/// (their connections were just closed).
async fn served(port: u16) -> Result<()> {
    let id = unique("healthy");
    let topic = format!("ok/{id}");
    let end = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match mqtt_open(port, &id, false).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < end => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e),
        }
    };
    s.write_all(&subscribe_packet(1, &topic)).await?;
    let (first, body) = within("SUBACK", read_packet(&mut s)).await?;
    if first != 0x90 || body.get(2).is_none_or(|c| *c >= 0x80) {
        bail!("SUBACK {first:#x} {body:?}");
    }
    s.write_all(&publish_packet(&topic, b"final")).await?;
    loop {
        let (first, body) = within("its own message", read_packet(&mut s)).await?;
        if first & 0xF0 == 0x30 && body.ends_with(b"final") {
            return Ok(());
        }
    }
}

// ---- the kinds ----

#[derive(Clone, Copy)]
enum Kind {
    Subscriptions,
    NatsSubscriptions,
    HalfSent,
    Aliases,
    Idle,
    Offline,
}

impl Kind {
    fn title(self, scale: &Scale) -> String {
        match self {
            Kind::Subscriptions => "(a) 3 MQTT clients x 1,000 SUBSCRIBEs of 60 KB filters".into(),
            Kind::NatsSubscriptions => "(b) 4 NATS connections x 65,536 SUBs".into(),
            Kind::HalfSent => "(c) 200 half-sent 1 MB packets per protocol".into(),
            Kind::Aliases => "(d) 30 MQTT 5 connections x 64 topic aliases of 65,000 B".into(),
            Kind::Idle => "(e) 2,000 idle MQTT + 2,000 idle NATS connections".into(),
            Kind::Offline => format!(
                "(f) 3 offline sessions on # while {} QoS 1 messages of 1 KiB are published",
                scale.n(100_000)
            ),
        }
    }

    /// Whether mosquitto can be given the same load (it speaks no NATS).
    fn mqtt_part(self) -> bool {
        !matches!(self, Kind::NatsSubscriptions)
    }
}

/// A broker under load: its pid, its MQTT port and (ferry) its NATS port.
struct Target {
    pid: u32,
    mqtt: u16,
    nats: Option<u16>,
}

/// Runs `kind` against `t` and returns the peak RSS while the hostile clients are still
/// connected, and what the clients saw.
async fn run_kind(kind: Kind, t: &Target, scale: &Scale) -> Result<(Mem, String)> {
    match kind {
        Kind::Subscriptions => {
            let runs = (0..3).map(|c| async move {
                let id = unique("hostile-sub");
                let s = mqtt_open(t.mqtt, &id, false).await?;
                let (mut rd, mut wr) = s.into_split();
                let writer = tokio::spawn(async move {
                    for i in 0..1000u16 {
                        let prefix = format!("{c}/{i:04}/");
                        let filter = format!("{prefix}{}", "f".repeat(60_000 - prefix.len()));
                        if !write_within(&mut wr, &subscribe_packet(i + 1, &filter)).await {
                            return wr;
                        }
                    }
                    wr
                });
                let (mut ok, mut refused) = (0usize, 0usize);
                let end = tokio::time::Instant::now() + Duration::from_secs(120);
                let outcome = loop {
                    if ok + refused == 1000 {
                        break "open";
                    }
                    match tokio::time::timeout_at(end, read_packet(&mut rd)).await {
                        Err(_) => break "no more SUBACKs after 120 s",
                        Ok(Err(_)) => break "closed",
                        Ok(Ok((0x90, body))) if body.get(2).is_some_and(|c| *c < 0x80) => ok += 1,
                        Ok(Ok((0x90, _))) => refused += 1,
                        Ok(Ok(_)) => {}
                    }
                };
                let wr = writer.await?;
                anyhow::Ok((ok, refused, outcome, rd, wr))
            });
            let results = futures_util::future::try_join_all(runs).await?;
            let mem = mem_of(t.pid)?;
            let ok: usize = results.iter().map(|r| r.0).sum();
            let refused: usize = results.iter().map(|r| r.1).sum();
            let closed = results.iter().filter(|r| r.2 != "open").count();
            Ok((
                mem,
                format!(
                    "{ok} of 3,000 subscriptions granted, {refused} refused in SUBACK, \
                     {closed} of 3 connections ended early"
                ),
            ))
        }
        Kind::NatsSubscriptions => {
            let port = t.nats.context("no NATS")?;
            let runs = (0..4).map(|c| async move {
                let s = nats_open(port).await?;
                let (mut rd, mut wr) = s.into_split();
                let writer = tokio::spawn(async move {
                    let mut batch = String::new();
                    for i in 0..65_536u32 {
                        batch.push_str(&format!("SUB h.{c}.{i} {i}\r\n"));
                        if batch.len() > 64 * 1024 {
                            if !write_within(&mut wr, batch.as_bytes()).await {
                                return wr;
                            }
                            batch.clear();
                        }
                    }
                    batch.push_str("PING\r\n");
                    write_within(&mut wr, batch.as_bytes()).await;
                    wr
                });
                let mut got = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let end = tokio::time::Instant::now() + Duration::from_secs(120);
                let outcome = loop {
                    if got.ends_with(b"PONG\r\n") {
                        break "open";
                    }
                    match tokio::time::timeout_at(end, rd.read(&mut buf)).await {
                        Err(_) => break "no PONG after 120 s",
                        Ok(Ok(0)) | Ok(Err(_)) => break "closed",
                        Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let errors = got.windows(5).filter(|w| w == b"-ERR ").count();
                let wr = writer.await?;
                anyhow::Ok((errors, outcome, rd, wr))
            });
            let results = futures_util::future::try_join_all(runs).await?;
            let mem = mem_of(t.pid)?;
            let errors: usize = results.iter().map(|r| r.0).sum();
            let closed = results.iter().filter(|r| r.1 != "open").count();
            Ok((
                mem,
                format!(
                    "{} of 262,144 SUBs accepted, {errors} answered -ERR, {closed} of 4 connections ended early",
                    262_144 - errors
                ),
            ))
        }
        Kind::HalfSent => {
            const BODY: usize = 1_000_000;
            // An empty client id: the broker assigns one to each connection (one id for
            // all would have each connection take over the one before).
            let mut mqtt = connect_packet("", false);
            mqtt.push(0x30);
            vbi(BODY + 5, &mut mqtt);
            mqtt.extend_from_slice(&[0, 3, b'b', b'i', b'g']);
            mqtt.extend(std::iter::repeat_n(b'x', BODY - 1));
            let mut nats = format!("CONNECT {{}}\r\nPUB big {BODY}\r\n").into_bytes();
            nats.extend(std::iter::repeat_n(b'x', BODY - 1));
            let mut held = Vec::new();
            for _ in 0..200 {
                let mut kinds = vec![(t.mqtt, &mqtt)];
                if let Some(n) = t.nats {
                    kinds.push((n, &nats));
                }
                for (port, bytes) in kinds {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
                    // A closed connection fails the rest of the write: that is the refusal.
                    write_within(&mut s, bytes).await;
                    held.push(s);
                }
            }
            let closed = settled_closes(&mut held).await;
            let mem = mem_of(t.pid)?;
            Ok((
                mem,
                format!(
                    "{closed} of {} connections closed, the rest hold their half packet",
                    held.len()
                ),
            ))
        }
        Kind::Aliases => {
            let mut held = Vec::new();
            let mut write_failed = 0;
            for c in 0..30 {
                let mut s = mqtt_open(t.mqtt, &unique("aliaser"), true).await?;
                for alias in 1..=64u16 {
                    let prefix = format!("{c:02}/{alias:02}/");
                    let topic = format!("{prefix}{}", "t".repeat(65_000 - prefix.len()));
                    if !write_within(&mut s, &publish_alias_packet(&topic, alias)).await {
                        write_failed += 1;
                        break;
                    }
                }
                held.push(s);
            }
            // What each connection got back: DISCONNECT (its reason), a close, or nothing.
            let (mut disconnects, mut closes, mut open) = (Vec::new(), 0, 0);
            for s in held.iter_mut() {
                match tokio::time::timeout(Duration::from_secs(1), read_packet(s)).await {
                    Ok(Ok((0xE0, body))) => {
                        disconnects.push(format!("{:#04x}", body.first().copied().unwrap_or(0)))
                    }
                    Ok(Ok(_)) => open += 1,
                    Ok(Err(_)) => closes += 1,
                    Err(_) => open += 1,
                }
            }
            disconnects.sort();
            disconnects.dedup_by(|a, b| a == b);
            let mem = mem_of(t.pid)?;
            let ended = 30 - open;
            Ok((
                mem,
                format!(
                    "{ended} of 30 connections ended (DISCONNECT {}, {closes} closed without one; \
                     {write_failed} before all 64 aliases were sent), {open} still open",
                    if disconnects.is_empty() {
                        "none".to_string()
                    } else {
                        disconnects.join("/")
                    }
                ),
            ))
        }
        Kind::Idle => {
            let before = mem_of(t.pid)?;
            let (mqtt, mut refused) = crate::memory::idle_connections(t.mqtt, 2000).await?;
            let mut nats = Vec::new();
            if let Some(port) = t.nats {
                for _ in 0..2000 {
                    match nats_try_open(port).await? {
                        Some(s) => nats.push(s),
                        None => refused += 1,
                    }
                }
            }
            let mem = mem_of(t.pid)?;
            Ok((
                mem,
                format!(
                    "{} MQTT and {} NATS connections open, {refused} refused, {:.1} KiB each (RSS {:.1} MiB before)",
                    mqtt.len(),
                    nats.len(),
                    mem.hwm_kib.saturating_sub(before.rss_kib) as f64
                        / (mqtt.len() + nats.len()) as f64,
                    mib(before.rss_kib)
                ),
            ))
        }
        Kind::Offline => {
            for i in 0..3 {
                mqtt_load::subscribe(
                    t.mqtt,
                    &unique(&format!("offline-{i}")),
                    "#",
                    QoS::AtLeastOnce,
                    false,
                )
                .await?
                .stop()
                .await;
            }
            let n = scale.n(100_000);
            let spec = PubSpec {
                qos: QoS::AtLeastOnce,
                inflight: 100,
                size: 1024,
                pace: None,
            };
            let published = mqtt_load::publish(t.mqtt, &unique("flood"), "flood/t", spec, n).await;
            let mem = mem_of(t.pid)?;
            Ok((
                mem,
                match published {
                    Ok(_) => format!("all {n} PUBACKed"),
                    Err(e) => format!("publisher failed: {e:#}"),
                },
            ))
        }
    }
}

/// What ferry counted for `kind`.
fn ferry_counts(kind: Kind, ferry: &Ferry) -> String {
    let m = |name: &str| {
        ferry
            .metric(name)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let refusals = |k: &str| m(&format!("ferry_limit_refusals_total{{kind=\"{k}\"}}"));
    match kind {
        Kind::Subscriptions | Kind::NatsSubscriptions => {
            format!("refusals counted: {}", refusals("subscription"))
        }
        Kind::HalfSent => format!(
            "refusals counted: {} (and {} at accept)",
            refusals("packet"),
            refusals("connection")
        ),
        Kind::Aliases => format!("refusals counted: {}", refusals("topic_alias")),
        Kind::Idle => format!(
            "refused at the connections' share: {}",
            refusals("connection")
        ),
        Kind::Offline => format!(
            "offline overflow dropped and counted: {}, offline sessions hold {} B",
            m("ferry_events_dropped_total{reason=\"offline_overflow\"}"),
            m("ferry_memory_used_bytes{part=\"offline_sessions\"}")
        ),
    }
}

async fn measure(kind: Kind, t: &Target, scale: &Scale) -> (Option<f64>, String) {
    match run_kind(kind, t, scale).await {
        Ok((mem, what)) => {
            let served = match served(t.mqtt).await {
                Ok(()) => "a well-behaved client served".to_string(),
                Err(e) => format!("a well-behaved client NOT served: {e:#}"),
            };
            (Some(mib(mem.hwm_kib)), format!("{what}; {served}"))
        }
        Err(e) => (None, format!("failed: {e:#}")),
    }
}

pub async fn run(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let kinds = [
        Kind::Subscriptions,
        Kind::NatsSubscriptions,
        Kind::HalfSent,
        Kind::Aliases,
        Kind::Idle,
        Kind::Offline,
    ];
    let mut out = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let title = kind.title(scale);
        eprintln!("  hostile: {title}");
        let fdir = dir.join(format!("ferry-{i}"));
        std::fs::create_dir_all(&fdir)?;
        let ferry = Ferry::start(
            &fdir,
            &format!(
                "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[limits]\nmemory = \"32MiB\"\n",
                ferry_base_config(&fdir)
            ),
        )?;
        let t = Target {
            pid: ferry.pid(),
            mqtt: ferry.mqtt.port(),
            nats: Some(ferry.nats.port()),
        };
        let (f_peak, f_note) = measure(kind, &t, scale).await;
        let counts = ferry_counts(kind, &ferry);
        drop(ferry);

        let (m_peak, m_note) = if kind.mqtt_part() {
            let mdir = dir.join(format!("mosquitto-{i}"));
            std::fs::create_dir_all(&mdir)?;
            let mut mosquitto = Mosquitto::start_with(&mdir, free_port()?, MOSQUITTO_LIMITS)?;
            let t = Target {
                pid: mosquitto.pid()?,
                mqtt: mosquitto.port,
                nats: None,
            };
            let (peak, note) = measure(kind, &t, scale).await;
            let alive = mosquitto.running();
            (
                peak,
                format!(
                    "mosquitto (MQTT part only): {note}{}",
                    if alive { "" } else { "; mosquitto exited" }
                ),
            )
        } else {
            (None, "mosquitto speaks no NATS: no peer figure".to_string())
        };
        let mut row = Row::new(
            "hostile",
            format!("{title}: peak RSS (VmHWM)"),
            "MiB",
            Better::Lower,
        )
        .peer(PEER, m_peak)
        .at_most(BUDGET_MIB + BASELINE_MIB)
        .note(format!("ferry: {f_note}; {counts}. {m_note}"));
        if let Some(p) = f_peak {
            row = row.ferry(p);
        }
        out.push(row);
    }
    Ok(out)
}
