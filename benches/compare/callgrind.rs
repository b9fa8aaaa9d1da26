//! Instructions per event, counted by valgrind's callgrind: timings on a shared machine
//! move by a third between runs, instruction counts repeat to a fraction of a percent.
//! ferry and mosquitto each run under `valgrind --tool=callgrind`; the counters are zeroed
//! (`callgrind_control -z`) once the clients are connected and dumped (`-d`) once every
//! message arrived, so only the load is counted: every thread of the broker (ferry's
//! store writer included), its system-call entry points, not the kernel.
//!
//! - QoS 0 fan-out: one publisher, one subscriber, 100 B messages.
//! - QoS 1 durable ingest: 100 in flight; ferry stores each event (a forwarding rule,
//!   upstream down) and acknowledges it after the fsync'd commit; mosquitto acknowledges
//!   it with no subscriber (it stores nothing).
//! - Drain: ferry forwards a stored backlog to an upstream mosquitto (QoS 1, MQTT 5 with
//!   the `ferry-id` property); the peer figure is what that upstream mosquitto spends
//!   receiving each of those messages, both under callgrind.
//!
//! The dumps stay in `target/tmp/callgrind/` for `callgrind_annotate`.

use crate::mqtt_load::{self, PubSpec};
use crate::procs::{
    Ferry, Mosquitto, ferry_base_config, ferry_forward_config, free_port, wait_until,
};
use crate::report::{Better, Row};
use crate::{Scale, unique};
use anyhow::{Context, Result, bail};
use rumqttc::QoS;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const EVENT: usize = 100;

/// `valgrind --tool=callgrind` writing its dumps under `dir` as `cg.<pid>.<n>`.
fn wrapper(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--quiet".into(),
        format!("--callgrind-out-file={}/cg.%p", dir.display()),
    ]
}

/// Zeroes `pid`'s counters.
fn zero(pid: u32) -> Result<()> {
    control(pid, "-z")
}

/// Dumps `pid`'s counters and returns the instructions counted since the last zero.
fn dump(pid: u32, dir: &Path) -> Result<u64> {
    let before = dumps(dir, pid)?;
    control(pid, "-d")?;
    let mut fresh = None;
    wait_until(Duration::from_secs(30), "the callgrind dump", || {
        fresh = dumps(dir, pid)
            .ok()
            .and_then(|now| now.into_iter().find(|p| !before.contains(p)));
        fresh.is_some()
    })?;
    let file = fresh.context("no dump")?;
    // Written whole before callgrind_control returns; read the totals line.
    let text = std::fs::read_to_string(&file)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no totals in {}", file.display()))
}

fn dumps(dir: &Path, pid: u32) -> Result<Vec<PathBuf>> {
    let prefix = format!("cg.{pid}.");
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect())
}

fn control(pid: u32, what: &str) -> Result<()> {
    let out = Command::new("callgrind_control")
        .arg(what)
        .arg(pid.to_string())
        .output()
        .context("callgrind_control (apt-get install valgrind)")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {what} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A broker under callgrind: its pid (valgrind's, which is the program's) and port.
struct Target {
    pid: u32,
    port: u16,
}

/// Instructions `target` spends per message when `n` QoS 0 messages go from one
/// publisher to one subscriber through it.
async fn fanout(target: &Target, dir: &Path, n: u64) -> Result<f64> {
    let sub = mqtt_load::subscribe(
        target.port,
        &unique("cg-sub"),
        "bench/#",
        QoS::AtMostOnce,
        true,
    )
    .await?;
    zero(target.pid)?;
    let spec = PubSpec {
        qos: QoS::AtMostOnce,
        inflight: 100,
        size: EVENT,
        pace: None,
    };
    mqtt_load::publish(target.port, &unique("cg-pub"), "bench/x", spec, n).await?;
    let ok = wait_until(
        Duration::from_secs(600),
        "every QoS 0 message at the subscriber",
        || sub.tally().count() >= n,
    );
    let got = sub.tally().count();
    sub.stop().await;
    ok.with_context(|| format!("{got} of {n} QoS 0 messages arrived"))?;
    Ok(dump(target.pid, dir)? as f64 / n as f64)
}

/// Instructions `target` spends per QoS 1 publish acknowledged, 100 in flight.
async fn ingest(target: &Target, dir: &Path, n: u64) -> Result<f64> {
    zero(target.pid)?;
    let spec = PubSpec {
        qos: QoS::AtLeastOnce,
        inflight: 100,
        size: EVENT,
        pace: None,
    };
    mqtt_load::publish(target.port, &unique("cg-ingest"), "sensors/bench", spec, n).await?;
    Ok(dump(target.pid, dir)? as f64 / n as f64)
}

pub async fn run(scale: &Scale, dir: &Path) -> Result<Vec<Row>> {
    let n0 = scale.n(20_000);
    let n1 = scale.n(10_000);
    // Kept after the run, for `callgrind_annotate target/tmp/callgrind/cg.<pid>.<n>`:
    // each dump is one figure (fan-out, ingest, drain, in that order per broker).
    let cg = Path::new(env!("CARGO_TARGET_TMPDIR")).join("callgrind");
    let _ = std::fs::remove_dir_all(&cg);
    std::fs::create_dir_all(&cg)?;
    let wrap = wrapper(&cg);
    let mut out = Vec::new();

    // ferry with a forwarding rule whose upstream is down (it stores sensors/#), as in
    // the durable ingest benchmark; bench/# is only routed.
    let fdir = dir.join("cg-ferry");
    std::fs::create_dir_all(&fdir)?;
    let upstream_port = free_port()?;
    let config = format!(
        "{}{}",
        ferry_base_config(&fdir),
        ferry_forward_config(upstream_port)
    );
    let ferry = Ferry::start_wrapped(&fdir, &config, &wrap)?;
    let f = Target {
        pid: ferry.pid(),
        port: ferry.mqtt.port(),
    };
    let mosquitto = Mosquitto::start_wrapped(dir, free_port()?, &wrap)?;
    let m = Target {
        pid: mosquitto.pid()?,
        port: mosquitto.port,
    };

    eprintln!("  callgrind: QoS 0 fan-out, {n0} messages");
    let (f0, m0) = (fanout(&f, &cg, n0).await?, fanout(&m, &cg, n0).await?);
    out.push(
        Row::new(
            "callgrind",
            format!("instructions per message, QoS 0, one publisher to one subscriber, {EVENT} B"),
            "instr",
            Better::Lower,
        )
        .ferry(f0)
        .peer("mosquitto", Some(m0))
        .bound(1.0)
        .note("valgrind --tool=callgrind, every thread of the broker, counted from the first message to the last"),
    );

    eprintln!("  callgrind: QoS 1 durable ingest, {n1} events");
    let (f1, m1) = (ingest(&f, &cg, n1).await?, ingest(&m, &cg, n1).await?);
    out.push(
        Row::new(
            "callgrind",
            format!("instructions per QoS 1 publish acknowledged, 100 in flight, {EVENT} B (ferry: stored and fsynced first)"),
            "instr",
            Better::Lower,
        )
        .ferry(f1)
        .peer("mosquitto (stores nothing)", Some(m1))
        .bound(1.0),
    );
    drop(mosquitto);

    // Drain: the n1 events just stored go to an upstream mosquitto under callgrind.
    eprintln!("  callgrind: drain of {n1} events");
    let upstream = Mosquitto::start_wrapped(dir, upstream_port, &wrap)?;
    let u = Target {
        pid: upstream.pid()?,
        port: upstream.port,
    };
    let sub = mqtt_load::subscribe(
        u.port,
        &unique("cg-cloud"),
        "site-a/#",
        QoS::AtLeastOnce,
        true,
    )
    .await?;
    // Counted from here: ferry's reconnect (its backoff is at most 500 ms) and the drain.
    zero(f.pid)?;
    zero(u.pid)?;
    let ok = wait_until(Duration::from_secs(900), "the drain", || {
        sub.tally().count() >= n1
    });
    let got = sub.tally().count();
    ok.with_context(|| format!("{got} of {n1} drained events arrived"))?;
    // The last acknowledgements reach ferry just after the last delivery.
    wait_until(Duration::from_secs(60), "ferry's cursor at the end", || {
        ferry.drained(n1)
    })?;
    let fd = dump(f.pid, &cg)? as f64 / n1 as f64;
    let ud = dump(u.pid, &cg)? as f64 / n1 as f64;
    sub.stop().await;
    out.push(
        Row::new(
            "callgrind",
            format!(
                "instructions per event drained to an upstream mosquitto (MQTT 5, QoS 1, {EVENT} B)"
            ),
            "instr",
            Better::Lower,
        )
        .ferry(fd)
        .peer("the upstream mosquitto receiving it", Some(ud)),
    );
    Ok(out)
}
