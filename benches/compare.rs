//! Side-by-side benchmarks: ferry against mosquitto and nats-server, each started by this
//! program on loopback, in the same run.
//!
//! ```sh
//! cargo bench --bench compare                 # full run (a few minutes)
//! cargo bench --bench compare -- --quick      # 10x smaller counts, a smoke run
//! cargo bench --bench compare -- only=drain   # one scenario (comma-separate several)
//! ```
//!
//! Prints a Markdown table (ferry, the peer, ferry/peer, the issue's target) and writes
//! it to `target/bench-results.md`. Every process it starts is killed when the scenario
//! that started it ends; every wait has a deadline.

#[path = "compare/armv6.rs"]
mod armv6;
#[path = "compare/callgrind.rs"]
mod callgrind;
#[path = "compare/drain.rs"]
mod drain;
#[path = "compare/durable.rs"]
mod durable;
#[path = "compare/hostile.rs"]
mod hostile;
#[path = "compare/jetstream.rs"]
mod jetstream;
#[path = "compare/memory.rs"]
mod memory;
#[path = "compare/mqtt5_load.rs"]
mod mqtt5_load;
#[path = "compare/mqtt_load.rs"]
mod mqtt_load;
#[path = "compare/nats_load.rs"]
mod nats_load;
#[path = "compare/payload.rs"]
mod payload;
#[path = "compare/procs.rs"]
mod procs;
#[path = "compare/pubsub.rs"]
mod pubsub;
#[path = "compare/report.rs"]
mod report;

use anyhow::{Context, Result};
use report::{Better, Row};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Run size: the full counts, or a tenth of them.
pub struct Scale {
    pub quick: bool,
}

impl Scale {
    pub fn n(&self, full: u64) -> u64 {
        if self.quick { full / 10 } else { full }
    }
}

/// A client id (or tag) never used before in this run, so that no two clients ever take
/// over each other's session.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

type Scenario =
    for<'a> fn(&'a Scale, &'a Path) -> Pin<Box<dyn Future<Output = Result<Vec<Row>>> + 'a>>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("mqtt-pubsub", |s, d| Box::pin(pubsub::mqtt(s, d))),
    ("nats-pubsub", |s, d| Box::pin(pubsub::nats(s, d))),
    ("acl", |s, d| Box::pin(pubsub::acl(s, d))),
    ("durable-ingest", |s, d| Box::pin(durable::ingest(s, d))),
    ("callgrind", |s, d| Box::pin(callgrind::run(s, d))),
    ("write-amplification", |s, d| {
        Box::pin(durable::write_amplification(s, d))
    }),
    ("drain", |s, d| Box::pin(drain::run(s, d))),
    ("jetstream", |s, d| Box::pin(jetstream::run(s, d))),
    ("memory", |s, d| Box::pin(memory::run(s, d))),
    ("hostile", |s, d| Box::pin(hostile::run(s, d))),
    // Skipped (no rows) unless the ARMv6 binary from cross/build.sh and qemu-arm exist.
    ("armv6", |s, d| Box::pin(armv6::run(s, d))),
];

fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{cores} cores ({cpu}), {}; {}; {}; {}",
        first_line("uname", &["-sr"]),
        first_line("/usr/sbin/mosquitto", &["-h"]),
        first_line("/usr/sbin/nats-server", &["--version"]),
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without
    // it, and the suite must not spend minutes benchmarking.
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "compare: benchmarks run with `cargo bench --bench compare`; nothing to do in test mode"
        );
        return Ok(());
    }
    let scale = Scale {
        quick: args.iter().any(|a| a == "--quick"),
    };
    let only: Option<Vec<String>> = args
        .iter()
        .find_map(|a| a.strip_prefix("only="))
        .map(|l| l.split(',').map(str::to_string).collect());
    if let Some(names) = &only {
        for n in names {
            if !SCENARIOS.iter().any(|(s, _)| s == n) {
                let known: Vec<_> = SCENARIOS.iter().map(|(s, _)| *s).collect();
                anyhow::bail!("unknown scenario {n:?}; known: {}", known.join(", "));
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tmp_root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp_root)?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut timings = Vec::new();
    for (name, scenario) in SCENARIOS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        eprintln!("== {name}");
        let t = Instant::now();
        // On the store's real filesystem (not a tmpfs /tmp), so /proc/<pid>/io sees the writes.
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{name}-"))
            .tempdir_in(tmp_root)
            .context("temp dir")?;
        let limit = Duration::from_secs(if scale.quick { 180 } else { 600 });
        let result =
            rt.block_on(async { tokio::time::timeout(limit, scenario(&scale, dir.path())).await });
        match result {
            Ok(Ok(r)) => rows.extend(r),
            Ok(Err(e)) => {
                eprintln!("   FAILED: {e:#}");
                rows.push(
                    Row::new(name, "scenario failed", "", Better::Higher)
                        .note(format!("{e:#}").replace('\n', " ")),
                );
            }
            Err(_) => {
                eprintln!("   TIMED OUT after {limit:?}");
                rows.push(
                    Row::new(name, "scenario timed out", "", Better::Higher)
                        .note(format!("after {limit:?}")),
                );
            }
        }
        timings.push(format!("{name} {:.0} s", t.elapsed().as_secs_f64()));
        eprintln!("   {:.1} s", t.elapsed().as_secs_f64());
    }
    rt.shutdown_timeout(Duration::from_secs(2));

    let command = format!(
        "cargo bench --bench compare{}",
        if args
            .iter()
            .any(|a| a == "--quick" || a.starts_with("only="))
        {
            let extra: Vec<&str> = args
                .iter()
                .filter(|a| *a == "--quick" || a.starts_with("only="))
                .map(String::as_str)
                .collect();
            format!(" -- {}", extra.join(" "))
        } else {
            String::new()
        }
    );
    let doc = format!(
        "Command: `{command}` ({} mode, {:.0} s: {})\n\nMachine: {}\n\n{}",
        if scale.quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64(),
        timings.join(", "),
        machine(),
        report::table(&rows)
    );
    println!("\n{doc}");
    let out = target_dir().join("bench-results.md");
    std::fs::write(&out, &doc).with_context(|| format!("write {}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}
