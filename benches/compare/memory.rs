//! Scenario 5: resident memory (/proc/<pid>/status) of ferry and mosquitto idle and with
//! 1,000 idle MQTT connections; then ferry's peak (VmHWM) while a large backlog of 100 B
//! QoS 1 events is stored with the upstream down, and the time that backlog takes to drain
//! once the upstream is up. The peer holds the same backlog as QoS 1 messages queued for
//! an offline persistent subscriber (in memory: that is how mosquitto queues).

use crate::drain::fill;
use crate::mqtt_load::{self, PubSpec};
use crate::procs::{
    Ferry, Mem, Mosquitto, ferry_base_config, ferry_forward_config, free_port, mem_of, wait_until,
};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::{Context, Result, bail};
use rumqttc::QoS;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Within what the default budget admits (256 connections at 32 MiB).
const IDLE_CONNECTIONS: usize = 200;

/// The default `[limits] memory`, in MiB (the benchmark's ferry runs with it).
const BUDGET_MIB: f64 = 32.0;
/// What ferry needs beyond the budget: code, runtime, allocator slack (the README states
/// this as the bound: RSS <= limits.memory + 16 MiB).
const BASELINE_MIB: f64 = 16.0;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Opens `n` MQTT 3.1.1 connections (clean session, keep-alive off) and returns those
/// that got their CONNACK, and how many the broker closed instead (refused at accept).
pub async fn idle_connections(port: u16, n: usize) -> Result<(Vec<TcpStream>, usize)> {
    let mut out = Vec::with_capacity(n);
    let mut refused = 0;
    for i in 0..n {
        let id = format!("idle-{i:05}");
        let mut pkt = vec![0x10, (12 + id.len()) as u8, 0, 4];
        pkt.extend_from_slice(b"MQTT");
        pkt.extend_from_slice(&[4, 0x02, 0, 0, 0, id.len() as u8]);
        pkt.extend_from_slice(id.as_bytes());
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut ack = [0u8; 4];
        let answered = async {
            s.write_all(&pkt).await?;
            s.read_exact(&mut ack).await
        };
        match tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .context("CONNACK timeout")?
        {
            Ok(_) if ack[0] == 0x20 && ack[3] == 0 => out.push(s),
            Ok(_) => bail!("connection {i} refused: {ack:?}"),
            Err(_) => refused += 1,
        }
    }
    Ok((out, refused))
}

/// Connections opened first and kept while measuring, so that what the first
/// connections bring in once (code paged in again, the allocator's first chunks, tables
/// growing past their first sizes) is not counted per connection. With the measured
/// ones, 250: within the 256 the default budget admits.
const WARM_UP: usize = 50;

/// RSS of `pid` after `WARM_UP` connections (`before`) and with `IDLE_CONNECTIONS` more
/// (`with`), opened by `open` on `port`.
async fn with_connections<F, Fut>(pid: u32, port: u16, open: F) -> Result<(Mem, Mem)>
where
    F: Fn(u16, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<TcpStream>>>,
{
    let warm = open(port, WARM_UP).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = mem_of(pid)?;
    let conns = open(port, IDLE_CONNECTIONS).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = mem_of(pid)?;
    drop((warm, conns));
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((before, with))
}

/// `n` idle MQTT connections, every one answered.
async fn mqtt_connections(port: u16, n: usize) -> Result<Vec<TcpStream>> {
    let (conns, refused) = idle_connections(port, n).await?;
    if refused > 0 {
        bail!("{refused} of {n} idle connections refused");
    }
    Ok(conns)
}

/// KiB of RSS each of the `IDLE_CONNECTIONS` connections added.
fn per_connection(with: &Mem, idle: &Mem) -> f64 {
    with.rss_kib.saturating_sub(idle.rss_kib) as f64 / IDLE_CONNECTIONS as f64
}

/// KiB of `pid`'s own executable mapped (its code and read-only data touched).
fn code_kib(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return 0;
    };
    let mut ours = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            if ours {
                kib += rss
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            ours = line.split_whitespace().nth(5).map(std::path::Path::new) == Some(exe.as_path());
        }
    }
    kib
}

/// `n` idle NATS connections (CONNECT and a PING answered, then nothing).
async fn nats_connections(port: u16, n: usize) -> Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let answered = async {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            s.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
                .await?;
            while !seen.windows(4).any(|w| w == b"PONG") {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    bail!("NATS connection {i} closed");
                }
                seen.extend_from_slice(&buf[..n]);
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .context("PONG timeout")??;
        conns.push(s);
    }
    Ok(conns)
}

pub async fn run(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let n = scale.n(2_000_000);
    let mut out = Vec::new();

    // Idle with the default configuration (only the listen ports and the store's place
    // set): what the target is about. Then idle with a forwarding rule whose upstream is
    // down: the link reconnects every half second, so its code stays resident.
    let plain_dir = dir.join("idle-default");
    std::fs::create_dir_all(&plain_dir)?;
    let plain = Ferry::start(&plain_dir, &ferry_base_config(&plain_dir))?;
    let mosquitto = Mosquitto::start(dir, free_port()?, false)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (p_idle, m_idle) = (mem_of(plain.pid())?, mem_of(mosquitto.pid()?)?);
    let exe = code_kib(plain.pid());
    eprintln!("  memory: {IDLE_CONNECTIONS} idle connections of each protocol");
    let (p_before, p_mqtt) =
        with_connections(plain.pid(), plain.mqtt.port(), mqtt_connections).await?;
    drop(plain);
    // NATS on a fresh ferry: memory the MQTT connections freed would be reused.
    let nats_dir = dir.join("idle-nats");
    std::fs::create_dir_all(&nats_dir)?;
    let for_nats = Ferry::start(&nats_dir, &ferry_base_config(&nats_dir))?;
    let (n_before, n_with) =
        with_connections(for_nats.pid(), for_nats.nats.port(), nats_connections).await?;
    drop(for_nats);
    let (m_before, m_conn) =
        with_connections(mosquitto.pid()?, mosquitto.port, mqtt_connections).await?;
    let rule_dir = dir.join("idle-rule");
    std::fs::create_dir_all(&rule_dir)?;
    let ruled = Ferry::start(
        &rule_dir,
        &format!(
            "{}{}",
            ferry_base_config(&rule_dir),
            ferry_forward_config(free_port()?)
        ),
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r_idle = mem_of(ruled.pid())?;
    drop(ruled);
    out.push(
        Row::new("memory", "idle RSS, default configuration", "MiB", Better::Lower)
            .ferry(mib(p_idle.rss_kib))
            .peer("mosquitto", Some(mib(m_idle.rss_kib)))
            .at_most(5.0)
            .note(format!(
                "ferry: {:.1} MiB private (heap, stacks), {:.1} MiB file pages ({:.1} MiB of them its own code, the rest shared libraries); mosquitto: {:.1} MiB private, {:.1} MiB file pages",
                mib(p_idle.anon_kib),
                mib(p_idle.file_kib),
                mib(exe),
                mib(m_idle.anon_kib),
                mib(m_idle.file_kib)
            )),
    );
    out.push(
        Row::new(
            "memory",
            "idle RSS with a forwarding rule whose upstream is down (reconnecting every 0.5 s)",
            "MiB",
            Better::Lower,
        )
        .ferry(mib(r_idle.rss_kib))
        .peer("mosquitto", Some(mib(m_idle.rss_kib)))
        .note(format!(
            "{:.1} MiB private, {:.1} MiB file pages",
            mib(r_idle.anon_kib),
            mib(r_idle.file_kib)
        )),
    );
    out.push(
        Row::new(
            "memory",
            format!(
                "RSS with {} idle MQTT connections",
                WARM_UP + IDLE_CONNECTIONS
            ),
            "MiB",
            Better::Lower,
        )
        .ferry(mib(p_mqtt.rss_kib))
        .peer("mosquitto", Some(mib(m_conn.rss_kib))),
    );
    let (f_mqtt, f_nats) = (
        per_connection(&p_mqtt, &p_before),
        per_connection(&n_with, &n_before),
    );
    let private = |with: &Mem, before: &Mem| {
        with.anon_kib.saturating_sub(before.anon_kib) as f64 / IDLE_CONNECTIONS as f64
    };
    let (a_mqtt, a_nats) = (private(&p_mqtt, &p_before), private(&n_with, &n_before));
    out.push(
        Row::new(
            "memory",
            format!("private memory per idle connection ({IDLE_CONNECTIONS} after {WARM_UP} kept open; MQTT, and NATS on a fresh ferry)"),
            "KiB",
            Better::Lower,
        )
        .ferry(a_mqtt.max(a_nats))
        .peer("mosquitto (MQTT)", Some(private(&m_conn, &m_before)))
        .at_most(4.0)
        .note(format!(
            "anonymous RSS (heap, socket state, what the connection holds): ferry MQTT {a_mqtt:.1} KiB, NATS {a_nats:.1} KiB; the larger is shown"
        )),
    );
    out.push(
        Row::new(
            "memory",
            format!("RSS per idle connection ({IDLE_CONNECTIONS} after {WARM_UP} kept open; MQTT, and NATS on a fresh ferry)"),
            "KiB",
            Better::Lower,
        )
        .ferry(f_mqtt.max(f_nats))
        .peer("mosquitto (MQTT)", Some(per_connection(&m_conn, &m_before)))
        .note(format!(
            "with the code pages the connections ran for the first time (clean, shared with the page cache; no connection holds them): ferry MQTT {f_mqtt:.1} KiB, NATS {f_nats:.1} KiB; the larger is shown"
        )),
    );

    // The backlog: a fresh ferry, so its VmHWM is the backlog's alone.
    let backlog_dir = dir.join("backlog");
    std::fs::create_dir_all(&backlog_dir)?;
    let upstream_port = free_port()?;
    let ferry = Ferry::start(
        &backlog_dir,
        &format!(
            "{}{}",
            ferry_base_config(&backlog_dir),
            ferry_forward_config(upstream_port)
        ),
    )?;
    let f_start = mem_of(ferry.pid())?;
    eprintln!("  memory: ferry backlog of {n} events");
    let fill_rate = fill(&ferry, n).await?;
    let f_full = mem_of(ferry.pid())?;
    let n = n / 4 * 4;

    eprintln!("  memory: draining");
    let upstream = Mosquitto::start(dir, upstream_port, false)?;
    let up = Instant::now();
    let drained = wait_until(Duration::from_secs(600), "ferry backlog to drain", || {
        ferry.drained(n)
    });
    let backlog = ferry
        .metric("ferry_upstream_backlog_events")
        .unwrap_or(u64::MAX);
    let drain_s = up.elapsed().as_secs_f64();
    let f_after = mem_of(ferry.pid())?;
    drop(ferry);
    drop(upstream);

    // The peer: the same backlog queued by mosquitto for an offline persistent subscriber.
    eprintln!("  memory: mosquitto backlog of {n} events");
    let m_start = mem_of(mosquitto.pid()?)?;
    mqtt_load::subscribe(
        mosquitto.port,
        "bench-offline",
        "sensors/#",
        QoS::AtLeastOnce,
        false,
    )
    .await?
    .stop()
    .await;
    let spec = PubSpec {
        qos: QoS::AtLeastOnce,
        inflight: 256,
        size: 100,
        pace: None,
    };
    let m_rate = mqtt_load::ingest(
        mosquitto.port,
        &unique("mfill"),
        "sensors/bench",
        4,
        spec,
        n,
    )
    .await?;
    let m_full = mem_of(mosquitto.pid()?)?;
    drop(mosquitto);

    out.push(
        Row::new("memory", format!("peak RSS (VmHWM) holding a {n}-event backlog of 100 B"), "MiB", Better::Lower)
            .ferry(mib(f_full.hwm_kib))
            .peer("mosquitto, queued for an offline session", Some(mib(m_full.hwm_kib)))
            .note(format!(
                "ferry RSS {:.1} MiB before, {:.1} MiB after filling at {fill_rate:.0} msg/s (durable, to disk); \
                 mosquitto filled at {m_rate:.0} msg/s (RSS {:.1} MiB before)",
                mib(f_start.rss_kib),
                mib(f_full.rss_kib),
                mib(m_start.rss_kib)
            )),
    );
    let mut drain_row = Row::new(
        "memory",
        format!("time to drain the {n}-event backlog to an upstream mosquitto"),
        "s",
        Better::Lower,
    )
    .note(format!(
        "ferry VmHWM {:.1} MiB after the drain",
        mib(f_after.hwm_kib)
    ));
    out.push(
        Row::new(
            "memory",
            "peak RSS (VmHWM) over filling and draining the backlog, against the bound",
            "MiB",
            Better::Lower,
        )
        .ferry(mib(f_after.hwm_kib))
        .peer(
            "bound: [limits] memory (32 MiB default) + 16 MiB baseline",
            Some(BUDGET_MIB + BASELINE_MIB),
        )
        .bound(1.0),
    );
    match drained {
        Ok(()) => drain_row = drain_row.ferry(drain_s),
        Err(_) => {
            drain_row.note = format!("NOT drained: backlog still {backlog} after {drain_s:.0} s");
        }
    }
    out.push(drain_row);
    Ok(out)
}
