//! ARMv6 for real: the static ARMv6 binary (`cross/build.sh arm-unknown-linux-musleabihf`)
//! runs under qemu-arm with the Pi Zero W board profile (`board = "rpi-zero-w"`) through
//! store and forward: its upstream mosquitto is down while 10,000 durable QoS 1 events of
//! 100 B are published to it (each PUBACKed after its commit), then the upstream comes up
//! and the backlog drains to a subscriber there, which checks that every event arrived
//! exactly once and in order. Reports the emulated process's RSS along the way.
//!
//! qemu-user runs the guest in its own process, so the pid measured is ferry's, but its
//! RSS includes qemu-arm itself and its translated-code cache: an upper bound for the
//! board. Skipped (no rows) when the binary or qemu-arm is missing.

use crate::mqtt_load::{self, PubSpec};
use crate::payload;
use crate::procs::{
    Ferry, Mem, Mosquitto, ferry_base_config, ferry_forward_config, free_port, mem_of, wait_until,
};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::{Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const TARGET: &str = "arm-unknown-linux-musleabihf";
const BOARD: &str = "rpi-zero-w";
const EVENT: usize = 100;
/// The subscriber's persistent session on the upstream: it exists before ferry connects,
/// so nothing forwarded before the subscriber is back is missed.
const CHECKER: &str = "armv6-checker";
const FILTER: &str = "site-a/sensors/#";
const CAVEAT: &str = "qemu-user RSS includes the emulator (qemu-arm itself and its translation cache): an upper bound for the board";

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Where `cross/build.sh` puts the ARMv6 binary: `$FERRY_CROSS_TARGET_DIR` (relative to
/// the repository, as the script runs there), by default `target/cross`, then `dist/`.
fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cross = std::env::var_os("FERRY_CROSS_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/cross"));
    root.join(cross)
        .join("dist")
        .join(format!("ferry-{}-{TARGET}", env!("CARGO_PKG_VERSION")))
}

/// `qemu-arm` on the PATH.
fn qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("qemu-arm"))
        .find(|p| p.is_file())
}

/// What the checker received: each event's sequence number in arrival order, and the first
/// and last arrival.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    first_ns: u64,
    last_ns: u64,
}

/// A QoS 1 subscriber on the persistent session `CHECKER` recording sequence numbers.
struct Checker {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
    client: AsyncClient,
}

impl Checker {
    /// Connects (clean session off), subscribes and returns once the SUBACK arrived;
    /// what the session had queued is recorded too.
    async fn connect(port: u16) -> Result<Checker> {
        let mut o = MqttOptions::new(CHECKER, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(60));
        o.set_clean_session(false);
        o.set_inflight(100);
        let (client, mut el) = AsyncClient::new(o, 1024);
        client.subscribe(FILTER, QoS::AtLeastOnce).await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let subacked = Arc::new(AtomicBool::new(false));
        let (s, acked) = (seen.clone(), subacked.clone());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = payload::now_ns();
                        let seq = p
                            .payload
                            .get(..8)
                            .and_then(|b| b.try_into().ok())
                            .map(u64::from_le_bytes)
                            .unwrap_or(u64::MAX);
                        if let Ok(mut g) = s.lock() {
                            if g.seqs.is_empty() {
                                g.first_ns = now;
                            }
                            g.last_ns = now;
                            g.seqs.push(seq);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => acked.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let c = Checker { seen, task, client };
        let end = Instant::now() + Duration::from_secs(10);
        while !subacked.load(Ordering::Relaxed) {
            if Instant::now() >= end {
                c.stop().await;
                bail!("no SUBACK from mosquitto on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(c)
    }

    fn count(&self) -> usize {
        self.seen.lock().map(|g| g.seqs.len()).unwrap_or(0)
    }

    /// Waits until `n` events arrived, nothing arrived for `stall`, or `limit` passed.
    async fn wait_for(&self, n: usize, stall: Duration, limit: Duration) {
        let end = Instant::now() + limit;
        let (mut seen, mut since) = (self.count(), Instant::now());
        loop {
            let c = self.count();
            if c >= n || Instant::now() >= end {
                return;
            }
            if c != seen {
                (seen, since) = (c, Instant::now());
            } else if since.elapsed() >= stall {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
    }
}

/// How the received sequence compares with `0..n` sent in order.
struct Verdict {
    received: usize,
    distinct: u64,
    duplicates: u64,
    /// Arrivals whose sequence number is below the one before.
    out_of_order: u64,
    /// Sequence numbers that were never sent.
    foreign: u64,
}

impl Verdict {
    fn of(seqs: &[u64], n: u64) -> Verdict {
        let mut got = vec![false; n as usize];
        let mut v = Verdict {
            received: seqs.len(),
            distinct: 0,
            duplicates: 0,
            out_of_order: 0,
            foreign: 0,
        };
        for (i, &s) in seqs.iter().enumerate() {
            if i > 0 && s < seqs[i - 1] {
                v.out_of_order += 1;
            }
            match got.get_mut(s as usize) {
                Some(g) if *g => v.duplicates += 1,
                Some(g) => {
                    *g = true;
                    v.distinct += 1;
                }
                None => v.foreign += 1,
            }
        }
        v
    }

    /// Every event exactly once, in the order sent.
    fn exact(&self, n: u64) -> bool {
        self.distinct == n && self.duplicates == 0 && self.out_of_order == 0 && self.foreign == 0
    }

    fn describe(&self, n: u64) -> String {
        format!(
            "{} received, {} of {n} distinct, {} missing, {} duplicates, {} out of order, {} foreign",
            self.received,
            self.distinct,
            n - self.distinct,
            self.duplicates,
            self.out_of_order,
            self.foreign
        )
    }
}

pub async fn run(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let bin = binary();
    let Some(qemu) = qemu() else {
        eprintln!(
            "  armv6: skipped: no qemu-arm (apt-get install qemu-user, or `bash cross/build.sh install`)"
        );
        return Ok(Vec::new());
    };
    if !bin.is_file() {
        eprintln!(
            "  armv6: skipped: no {}; build it with `bash cross/build.sh {TARGET} --no-deb`",
            bin.display()
        );
        return Ok(Vec::new());
    }
    let n = scale.n(10_000);

    // The upstream with the checker's persistent session, then down: the outage.
    let port = free_port()?;
    let mut upstream = Mosquitto::start(dir, port, true)?;
    Checker::connect(port).await?.stop().await;
    upstream.stop()?;

    let fdir = dir.join("ferry");
    std::fs::create_dir_all(&fdir)?;
    let config = format!(
        "board = \"{BOARD}\"\n{}{}",
        ferry_base_config(&fdir),
        ferry_forward_config(port)
    );
    eprintln!(
        "  armv6: starting {} under {}",
        bin.display(),
        qemu.display()
    );
    let t = Instant::now();
    let ferry = Ferry::start_binary(&fdir, &config, &[qemu.display().to_string()], &bin)?;
    let start_s = t.elapsed().as_secs_f64();
    // Settle as the memory scenario does: the link retries every 0.5 s meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = mem_of(ferry.pid())?;

    eprintln!("  armv6: storing {n} events, upstream down");
    let spec = PubSpec {
        qos: QoS::AtLeastOnce,
        inflight: 100,
        size: EVENT,
        pace: None,
    };
    // One publisher, so that the order sent is one sequence; every PUBACK came after its
    // commit, so the store holds all of them when this returns.
    let published = mqtt_load::publish(
        ferry.mqtt.port(),
        &unique("armv6"),
        "sensors/bench",
        spec,
        n,
    )
    .await?;
    let fill_rate = payload::rate(
        n,
        Duration::from_nanos(published.done_ns.saturating_sub(published.start_ns)),
    );
    let full = mem_of(ferry.pid())?;

    eprintln!("  armv6: upstream up, draining");
    let up_at = payload::now_ns();
    upstream.restart()?;
    let checker = Checker::connect(port).await?;
    checker
        .wait_for(n as usize, Duration::from_secs(20), Duration::from_secs(90))
        .await;
    // Anything arriving after the last event would be a duplicate: give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (seqs, first_ns, last_ns) = match checker.seen.lock() {
        Ok(g) => (g.seqs.clone(), g.first_ns, g.last_ns),
        Err(_) => bail!("checker state poisoned"),
    };
    checker.stop().await;
    let verdict = Verdict::of(&seqs, n);
    let exact = verdict.exact(n);
    // The link is up now, so the backlog gauge is current.
    let gauge = wait_until(Duration::from_secs(10), "backlog gauge to reach 0", || {
        ferry.drained(n)
    });
    let backlog = ferry.metric("ferry_upstream_backlog_events").ok();
    let after: Mem = mem_of(ferry.pid())?;
    drop(ferry);
    drop(upstream);

    let to_first_ms = first_ns.saturating_sub(up_at) / 1_000_000;
    let total_s = last_ns.saturating_sub(up_at) as f64 / 1e9;
    let drain_rate = payload::rate(
        (seqs.len() as u64).saturating_sub(1),
        Duration::from_nanos(last_ns.saturating_sub(first_ns)),
    );
    let mut check = verdict.describe(n);
    if gauge.is_err() {
        check.push_str(&format!("; ferry backlog gauge still {backlog:?}"));
    }
    eprintln!("  armv6: {check}; all after {total_s:.1} s");
    let what = format!("(ARMv6 binary under qemu-arm, board {BOARD})");

    let mut drain_time = Row::new(
        "armv6",
        format!("time to drain the {n}-event backlog, upstream up to last arrival {what}"),
        "s",
        Better::Lower,
    )
    .note(if exact {
        "includes ferry's reconnect backoff (at most 0.5 s)"
    } else {
        "not shown: not every event arrived exactly once in order"
    });
    // A time only when the drain was complete (a missing figure, not a flattering 0).
    if exact {
        drain_time = drain_time.ferry(total_s);
    }
    let rows = vec![
        Row::new(
            "armv6",
            format!("idle RSS, forwarding rule with its upstream down {what}"),
            "MiB",
            Better::Lower,
        )
        .ferry(mib(idle.rss_kib))
        .note(format!(
            "{CAVEAT}; {:.1} MiB private, {:.1} MiB file pages; listeners ready {start_s:.1} s after the start",
            mib(idle.anon_kib),
            mib(idle.file_kib)
        )),
        Row::new(
            "armv6",
            format!("peak RSS (VmHWM) over storing {n} events of {EVENT} B and draining them {what}"),
            "MiB",
            Better::Lower,
        )
        .ferry(mib(after.hwm_kib))
        .note(format!(
            "{CAVEAT}; RSS {:.1} MiB idle, {:.1} MiB with the backlog stored (VmHWM {:.1} MiB), {:.1} MiB after the drain; \
             the profile's [limits] memory is 24 MiB",
            mib(idle.rss_kib),
            mib(full.rss_kib),
            mib(full.hwm_kib),
            mib(after.rss_kib)
        )),
        Row::new(
            "armv6",
            format!("events stored during the outage, delivered exactly once in order {what}"),
            "events",
            Better::Higher,
        )
        .ferry(if exact { verdict.distinct as f64 } else { 0.0 })
        .peer("events PUBACKed by ferry during the outage", Some(n as f64))
        .target(1.0)
        .note(format!(
            "{check}; counted only when every event arrived exactly once in order; the checker is a QoS 1 \
             persistent session on `{FILTER}` at a local mosquitto"
        )),
        Row::new(
            "armv6",
            format!("drain of the {n}-event backlog to a local mosquitto {what}"),
            "msg/s",
            Better::Higher,
        )
        .ferry(if exact { drain_rate } else { 0.0 })
        .note(format!(
            "first event {to_first_ms} ms after the upstream came up, all {total_s:.1} s after it; \
             the rate runs first to last arrival and counts only when every event arrived exactly once in order"
        )),
        drain_time,
        Row::new(
            "armv6",
            format!("durable ingest of {n} QoS 1 events of {EVENT} B (1 publisher, 100 in flight) {what}"),
            "msg/s",
            Better::Higher,
        )
        .ferry(fill_rate)
        .note(
            "each PUBACK after its commit; the profile's max_fsyncs_per_sec = 10 groups commits, so with \
             100 in flight about 1,000 events/s is the ceiling",
        ),
    ];
    Ok(rows)
}
