//! ferry's fuzz harness: mutation-based, no coverage feedback, stable Rust.
//!
//! Runs as a test target (`harness = false`), so `cargo test` builds and runs it with the
//! crate's own lock file and dependencies:
//!
//! ```text
//! cargo test --test fuzz                             # every target, 2 s each
//! FERRY_FUZZ_SECS=600 cargo test --test fuzz -- nats  # one target, 10 minutes
//! FERRY_FUZZ_SEED=42 cargo test --test fuzz           # replay a run's input sequence
//! FERRY_FUZZ_REPLAY=fuzz/artifacts/config/crash-0123456789abcdef cargo test --test fuzz
//! ```
//!
//! Each target first replays every file of `fuzz/corpus/<target>/`, then mutates those
//! files for `FERRY_FUZZ_SECS` seconds. A panic or a failed check stops the run: the input
//! (and a shrunk copy) goes to `fuzz/artifacts/<target>/`, the exit status is non-zero.
//! Targets live in `targets/`; fuzz/README.md says what each one checks.

mod mutate;
mod rng;
mod targets;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mutate::Mutator;
use rng::{Rng, hash};
use targets::{TARGETS, Target};

const DEFAULT_SECS: f64 = 2.0;
/// Mutants that a target accepted are kept for further mutation, up to this many.
const POOL_MAX: usize = 1024;
/// Time spent shrinking a failing input before it is reported.
const SHRINK_BUDGET: Duration = Duration::from_secs(5);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The last panic caught while the quiet hook was installed: (location, message).
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

#[derive(Debug, Clone, PartialEq)]
enum Failure {
    /// Location (file:line:col) and message.
    Panic(String, String),
    /// A target's own check failed.
    Check(String),
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Panic(..) => "crash",
            Failure::Check(_) => "mismatch",
        }
    }

    /// Whether a shrunk input still shows the same bug.
    fn same_bug(&self, other: &Failure) -> bool {
        match (self, other) {
            (Failure::Panic(a, _), Failure::Panic(b, _)) => a == b,
            (Failure::Check(_), Failure::Check(_)) => true,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::Panic(at, msg) => format!("panicked at {at}: {msg}"),
            Failure::Check(msg) => format!("check failed: {msg}"),
        }
    }
}

/// Runs one input, turning a panic into a [`Failure`]. `Ok(accepted)` otherwise.
fn exec(t: &Target, data: &[u8]) -> Result<bool, Failure> {
    match panic::catch_unwind(AssertUnwindSafe(|| (t.run)(data))) {
        Ok(Ok(accepted)) => Ok(accepted),
        Ok(Err(msg)) => Err(Failure::Check(msg)),
        Err(_) => {
            let (at, msg) = LAST_PANIC
                .lock()
                .map(|mut g| g.take())
                .ok()
                .flatten()
                .unwrap_or_else(|| ("?".into(), "?".into()));
            Err(Failure::Panic(at, msg))
        }
    }
}

/// Records panics instead of printing them: the harness reports them itself.
fn install_quiet_hook() {
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or_else(|| "?".to_string(), ToString::to_string);
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        if let Ok(mut g) = LAST_PANIC.lock() {
            *g = Some((at, msg));
        }
    }));
}

struct Settings {
    secs: f64,
    seed: u64,
    replay: Option<PathBuf>,
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list: bool,
    ignored_only: bool,
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn settings() -> Result<Settings, String> {
    let secs = match std::env::var("FERRY_FUZZ_SECS") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| format!("FERRY_FUZZ_SECS={v:?}: expected seconds, e.g. 2 or 0.5"))?,
        Err(_) => DEFAULT_SECS,
    };
    let seed = match std::env::var("FERRY_FUZZ_SEED") {
        Ok(v) => parse_u64(&v).ok_or_else(|| format!("FERRY_FUZZ_SEED={v:?}: expected a u64"))?,
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    let replay = std::env::var_os("FERRY_FUZZ_REPLAY").map(PathBuf::from);
    // libtest-style arguments, so `cargo test NAME`, `--exact`, `--skip` and nextest's
    // `--list` behave: positional arguments filter targets by name. The targets count as
    // not ignored: `--ignored` selects none. Other flags are ignored.
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let (mut exact, mut list, mut ignored_only) = (false, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "--ignored" => ignored_only = true,
            "--skip" => skips.extend(args.next()),
            // Flags whose value is the next argument.
            "--format" | "--test-threads" | "--logfile" | "--color" | "--shuffle-seed" | "-Z" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
    }
    Ok(Settings {
        secs,
        seed,
        replay,
        filters,
        skips,
        exact,
        list,
        ignored_only,
    })
}

impl Settings {
    fn selects(&self, name: &str) -> bool {
        let matches = |f: &String| {
            if self.exact {
                f == name
            } else {
                name.contains(f.as_str())
            }
        };
        !self.ignored_only
            && (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skips.iter().any(matches)
    }
}

/// The files of `dir`, sorted by name, skipping hidden ones (.gitkeep and the like).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// An escaped rendering of an input for the report, cut after `max` bytes.
fn preview(data: &[u8], max: usize) -> String {
    let shown: String = data
        .iter()
        .take(max)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if data.len() > max {
        format!("b\"{shown}\"... ({} bytes)", data.len())
    } else {
        format!("b\"{shown}\" ({} bytes)", data.len())
    }
}

/// Greedy shrinking: drop whole lines (text targets), then ranges of halving size, while
/// the same bug shows.
fn shrink(t: &Target, data: &[u8], bug: &Failure) -> Vec<u8> {
    let deadline = Instant::now() + SHRINK_BUDGET;
    let mut best = data.to_vec();
    if t.text {
        let mut i = 0;
        loop {
            let lines: Vec<&[u8]> = best.split_inclusive(|&b| b == b'\n').collect();
            if i >= lines.len() || Instant::now() > deadline {
                break;
            }
            let candidate: Vec<u8> = lines
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, l)| l.iter().copied())
                .collect();
            match exec(t, &candidate) {
                Err(f) if f.same_bug(bug) => best = candidate,
                _ => i += 1,
            }
        }
    }
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        let mut progress = false;
        while at < best.len() {
            if Instant::now() > deadline {
                return best;
            }
            let end = (at + chunk).min(best.len());
            let mut candidate = best.clone();
            candidate.drain(at..end);
            match exec(t, &candidate) {
                Err(f) if f.same_bug(bug) => {
                    best = candidate;
                    progress = true;
                }
                _ => at += chunk,
            }
        }
        if chunk == 1 && !progress {
            return best;
        }
        if !progress {
            chunk = chunk.div_ceil(2);
        }
    }
}

fn write_artifact(t: &Target, kind: &str, data: &[u8], suffix: &str) -> PathBuf {
    let dir = fuzz_dir().join("artifacts").join(t.name);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join(format!("{kind}-{:016x}{suffix}", hash(data)));
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

fn replay_hint(path: &Path) -> String {
    let shown = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display();
    format!("FERRY_FUZZ_REPLAY={shown} cargo test --test fuzz")
}

/// Prints a failure found by mutation, after saving and shrinking the input. The shrunk
/// input is printed whole (up to 4 KiB), so a CI log is enough to reproduce it.
fn report(t: &Target, data: &[u8], bug: &Failure, seed: u64, nth: u64) {
    let path = write_artifact(t, bug.kind(), data, "");
    println!("\nFAILED {}: {}", t.name, bug.describe());
    println!("input: {}", preview(data, 300));
    println!("saved: {}", path.display());
    let small = shrink(t, data, bug);
    if small.len() < data.len() {
        let min_path = write_artifact(t, bug.kind(), &small, ".min");
        if let Err(f) = exec(t, &small) {
            println!("shrunk: {}", preview(&small, 4096));
            println!("        {}", f.describe());
        }
        println!("saved: {}", min_path.display());
        println!("replay: {}", replay_hint(&min_path));
    } else if data.len() > 300 {
        println!("whole input: {}", preview(data, 4096));
    }
    println!("replay: {}", replay_hint(&path));
    println!(
        "(execution {nth} of FERRY_FUZZ_SEED={seed}; that seed reaches this input again \
         in as many executions)"
    );
}

struct Outcome {
    execs: u64,
    accepted: u64,
    elapsed: Duration,
}

/// Replays the corpus, then mutates for `secs`. `Err` after reporting a failure.
fn fuzz_target(t: &Target, s: &Settings) -> Result<Outcome, ()> {
    let corpus_dir = fuzz_dir().join("corpus").join(t.name);
    let files = files_in(&corpus_dir);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for path in &files {
        let data = read(path);
        match exec(t, &data) {
            Ok(true) => {}
            Ok(false) => println!(
                "{}: note: corpus file {} is rejected by the target (still used as a seed)",
                t.name,
                path.display()
            ),
            Err(bug) => {
                println!("\nFAILED {} on corpus file: {}", t.name, bug.describe());
                println!("replay: {}", replay_hint(path));
                return Err(());
            }
        }
        corpus.push(data);
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mutator = Mutator {
        dict: t.dict,
        text: t.text,
        max_len: t.max_len,
    };
    // One seed per run; each target mixes in its name so targets differ.
    let mut rng = Rng::new(s.seed ^ hash(t.name.as_bytes()));
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    let budget = Duration::from_secs_f64(s.secs);
    let (mut execs, mut accepted) = (0u64, 0u64);
    while start.elapsed() < budget {
        let pick = |rng: &mut Rng| -> &Vec<u8> {
            if pool.is_empty() || rng.one_in(2) {
                &corpus[rng.below(corpus.len())]
            } else {
                &pool[rng.below(pool.len())]
            }
        };
        let mut data = pick(&mut rng).clone();
        let other = pick(&mut rng).clone();
        mutator.mutate(&mut rng, &mut data, &other);
        execs += 1;
        match exec(t, &data) {
            Ok(false) => {}
            Ok(true) => {
                accepted += 1;
                if pool.len() < POOL_MAX {
                    pool.push(data);
                } else if rng.one_in(8) {
                    let i = rng.below(pool.len());
                    pool[i] = data;
                }
            }
            Err(bug) => {
                report(t, &data, &bug, s.seed, execs);
                return Err(());
            }
        }
    }
    Ok(Outcome {
        execs,
        accepted,
        elapsed: start.elapsed(),
    })
}

/// `FERRY_FUZZ_REPLAY=path`: runs one file (or every file of a directory) with the normal
/// panic hook, so a panic prints its backtrace (RUST_BACKTRACE=1).
fn replay(path: &Path) -> ExitCode {
    let by_dir = path
        .canonicalize()
        .ok()
        .and_then(|p| {
            let dir = if p.is_dir() {
                Some(p.as_path())
            } else {
                p.parent()
            };
            dir.and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let name = std::env::var("FERRY_FUZZ_TARGET").unwrap_or(by_dir);
    let Some(t) = TARGETS.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "fuzz: cannot tell the target of {} (its directory is {name:?}); \
             set FERRY_FUZZ_TARGET to one of {names:?}",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let files = if path.is_dir() {
        files_in(path)
    } else {
        vec![path.to_path_buf()]
    };
    let mut failed = 0;
    for file in &files {
        let data = read(file);
        println!(
            "replay {} on {}: {}",
            t.name,
            file.display(),
            preview(&data, 300)
        );
        match (t.run)(&data) {
            Ok(accepted) => println!("  ok (accepted: {accepted})"),
            Err(msg) => {
                println!("  check failed: {msg}");
                failed += 1;
            }
        }
    }
    println!(
        "fuzz replay: {} passed, {failed} failed",
        files.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fuzz: {e}");
            return ExitCode::FAILURE;
        }
    };
    if s.list {
        for t in TARGETS.iter().filter(|t| s.selects(t.name)) {
            println!("{}: test", t.name);
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &s.replay {
        return replay(path);
    }
    install_quiet_hook();
    let selected: Vec<&Target> = TARGETS.iter().filter(|t| s.selects(t.name)).collect();
    println!(
        "fuzz: {} target(s), {} s each, seed {} (FERRY_FUZZ_SEED={} repeats this run's inputs)",
        selected.len(),
        s.secs,
        s.seed,
        s.seed
    );
    let mut passed = 0;
    for t in &selected {
        match fuzz_target(t, &s) {
            Ok(o) => {
                let rate = o.execs as f64 / o.elapsed.as_secs_f64().max(1e-9);
                let stats = t.stats.map(|f| format!(", {}", f())).unwrap_or_default();
                println!(
                    "{}: {} execs in {:.1} s ({:.0}/s), {} accepted, seed {}{stats}",
                    t.name,
                    o.execs,
                    o.elapsed.as_secs_f64(),
                    rate,
                    o.accepted,
                    s.seed
                );
                passed += 1;
            }
            Err(()) => {
                println!("fuzz: {passed} passed, 1 failed");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("fuzz: {passed} passed, 0 failed");
    ExitCode::SUCCESS
}
