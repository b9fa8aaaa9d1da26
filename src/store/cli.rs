//! `ferry store ...`: look into, check, repair and replay a store, with ferry stopped.
//!
//! Exit status: 0 done and nothing wrong; 1 damage found (`check`, or `salvage` could not
//! copy everything); 2 usage; 3 the store cannot be opened (no store there, in use by a
//! running ferry, or too damaged for the database library to open).

use super::inspect::{self, DumpFilter, InspectError};
use super::salvage::{self, SalvageError};
use super::{deadletter, record};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `ferry store` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Size, events, oldest and newest, each upstream's cursor and backlog, dead letters
    /// and quarantined entries.
    Info {
        /// The store directory (`store.dir`).
        dir: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read every record and row and report damage: exit 0 when clean, 1 when damaged.
    Check { dir: PathBuf },
    /// Print stored events as JSON lines.
    Dump {
        dir: PathBuf,
        /// Only what this upstream has not acknowledged yet (its backlog).
        #[arg(long, value_name = "U")]
        upstream: Option<String>,
        /// Only seqs at or above SEQ.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        from: u64,
        /// At most N events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Dead letters: events an upstream refused `max_attempts` times.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Copy every readable record, cursor, retained message and session of DIR into a new
    /// store in NEWDIR, and report what could not be read. DIR is only read.
    Salvage { dir: PathBuf, new_dir: PathBuf },
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Print the dead letters as JSON lines, oldest first.
    List {
        dir: PathBuf,
        #[arg(long, value_name = "U")]
        upstream: Option<String>,
    },
    /// Put the dead letters back at the end of their upstream's backlog: ferry sends them
    /// when it next runs.
    Replay {
        dir: PathBuf,
        #[arg(long, value_name = "U")]
        upstream: Option<String>,
    },
    /// Delete the dead letters.
    Purge {
        dir: PathBuf,
        #[arg(long, value_name = "U")]
        upstream: Option<String>,
    },
}

/// Runs one `ferry store` command; its outcome is the exit status.
pub fn run(command: StoreCommand) -> ExitCode {
    let result = match command {
        StoreCommand::Info { dir, json } => info(&dir, json),
        StoreCommand::Check { dir } => check(&dir),
        StoreCommand::Dump {
            dir,
            upstream,
            from,
            limit,
        } => dump(
            &dir,
            DumpFilter {
                upstream,
                from,
                limit,
            },
        ),
        StoreCommand::Dlq { command } => dlq(command),
        StoreCommand::Salvage { dir, new_dir } => salvage_cmd(&dir, &new_dir),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Open(e)) => {
            eprintln!("ferry store: {e}");
            ExitCode::from(3)
        }
        Err(Failure::Other(e)) => {
            eprintln!("ferry store: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// The store cannot be opened (exit 3).
    Open(InspectError),
    Other(String),
}

impl From<InspectError> for Failure {
    fn from(e: InspectError) -> Self {
        match e {
            InspectError::Read { .. } => Failure::Other(e.to_string()),
            _ => Failure::Open(e),
        }
    }
}

fn other(e: impl std::fmt::Display) -> Failure {
    Failure::Other(e.to_string())
}

fn time(ms: u64) -> String {
    // Seconds since the epoch, UTC, as an RFC 3339 date without a date crate.
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn info(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
    let db = inspect::open(dir)?;
    let i = inspect::info(&db, &inspect::file(dir))?;
    if json {
        let v = serde_json::json!({
            "file_bytes": i.file_bytes,
            "events": i.events,
            "oldest": i.oldest.map(|(seq, ms)| serde_json::json!({"seq": seq, "received_ms": ms})),
            "newest": i.newest.map(|(seq, ms)| serde_json::json!({"seq": seq, "received_ms": ms})),
            "next_seq": i.next_seq,
            "upstreams": i.upstreams.iter().map(|u| serde_json::json!({
                "name": u.name, "cursor": u.cursor, "backlog": u.backlog,
                "backlog_bytes": u.backlog_bytes,
                "dead_letters": i.dead_letters.iter().find(|(n, _)| *n == u.name).map_or(0, |(_, n)| *n),
            })).collect::<Vec<_>>(),
            "retained": i.retained,
            "sessions": i.sessions,
            "queued": i.queued,
            "dead_letters": i.dead_letters.iter().map(|(_, n)| n).sum::<u64>(),
            "quarantined": i.quarantined,
            "damaged": i.damaged,
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("store:        {}", inspect::file(dir).display());
    println!("size:         {} bytes", i.file_bytes);
    println!("events:       {}", i.events);
    match (i.oldest, i.newest) {
        (Some((os, oms)), Some((ns, nms))) => {
            println!("oldest:       seq {os}, received {}", time(oms));
            println!("newest:       seq {ns}, received {}", time(nms));
        }
        _ => println!("oldest:       (none)"),
    }
    println!("next seq:     {}", i.next_seq);
    for u in &i.upstreams {
        let dead = i
            .dead_letters
            .iter()
            .find(|(n, _)| *n == u.name)
            .map_or(0, |(_, n)| *n);
        println!(
            "upstream {}: cursor {}, backlog {} events ({} bytes), {} dead letters",
            u.name, u.cursor, u.backlog, u.backlog_bytes, dead
        );
    }
    println!("retained:     {}", i.retained);
    println!(
        "sessions:     {} ({} queued deliveries)",
        i.sessions, i.queued
    );
    let dead: u64 = i.dead_letters.iter().map(|(_, n)| n).sum();
    println!("dead letters: {dead}");
    println!("quarantined:  {}", i.quarantined);
    if i.damaged > 0 {
        println!(
            "damaged:      {} (run `ferry store check {}`)",
            i.damaged,
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check(dir: &Path) -> Result<ExitCode, Failure> {
    let db = inspect::open(dir)?;
    let r = inspect::check(&db, &inspect::file(dir))?;
    for d in &r.damage {
        println!("damaged: {}: {}", d.place, d.error);
    }
    println!(
        "{}: {} records and {} rows read, {} damaged, {} already in the quarantine",
        inspect::file(dir).display(),
        r.records,
        r.rows,
        r.damage.len(),
        r.quarantined
    );
    if r.damage.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "ferry skips and quarantines damaged records by itself; to copy what is sound into a new store: ferry store salvage {} NEWDIR",
            dir.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn dump(dir: &Path, filter: DumpFilter) -> Result<ExitCode, Failure> {
    let db = inspect::open(dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    inspect::dump(&db, &inspect::file(dir), &filter, &mut out)?;
    out.flush().map_err(other)?;
    Ok(ExitCode::SUCCESS)
}

fn dlq(command: DlqCommand) -> Result<ExitCode, Failure> {
    match command {
        DlqCommand::List { dir, upstream } => {
            let db = inspect::open(&dir)?;
            let txn = db.begin_read().map_err(other)?;
            let letters = deadletter::list(&txn, upstream.as_deref()).map_err(other)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for l in letters {
                let v = match l.letter {
                    Ok(letter) => {
                        let mut v = match record::decode(l.seq, &letter.record) {
                            Ok(r) => inspect::event_json(&r),
                            Err(e) => serde_json::json!({"seq": l.seq, "damaged": e.to_string()}),
                        };
                        v["upstream"] = l.upstream.into();
                        v["reason"] = letter.reason.into();
                        v["detail"] = letter.detail.into();
                        v["attempts"] = letter.attempts.into();
                        v["dead_lettered_at"] = time(letter.at_ms).into();
                        v
                    }
                    Err(e) => serde_json::json!({
                        "seq": l.seq, "upstream": l.upstream, "damaged": e.to_string(),
                    }),
                };
                writeln!(out, "{v}").map_err(other)?;
            }
            out.flush().map_err(other)?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { dir, upstream } => {
            let db = inspect::open(&dir)?;
            let txn = db.begin_write().map_err(other)?;
            let r = deadletter::replay(&txn, upstream.as_deref()).map_err(other)?;
            txn.commit().map_err(other)?;
            println!(
                "{} dead letters put back at the end of their upstream's backlog ({} left in place: damaged or of an unknown upstream); ferry sends them when it next runs",
                r.replayed, r.skipped
            );
            Ok(if r.skipped == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DlqCommand::Purge { dir, upstream } => {
            let db = inspect::open(&dir)?;
            let txn = db.begin_write().map_err(other)?;
            let n = deadletter::purge(&txn, upstream.as_deref()).map_err(other)?;
            txn.commit().map_err(other)?;
            println!("{n} dead letters deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn salvage_cmd(dir: &Path, new_dir: &Path) -> Result<ExitCode, Failure> {
    let s = match salvage::salvage(dir, new_dir) {
        Ok(s) => s,
        Err(SalvageError::Source(e)) => return Err(e.into()),
        Err(e) => return Err(other(e)),
    };
    for d in &s.lost {
        println!("not copied: {}: {}", d.place, d.error);
    }
    println!(
        "copied into {}: {} records, {} upstream cursors, {} retained, {} sessions ({} subscriptions, {} queued deliveries), {} dead letters, {} quarantined; {} could not be read",
        inspect::file(new_dir).display(),
        s.records,
        s.upstreams,
        s.retained,
        s.sessions,
        s.subscriptions,
        s.queued,
        s.dead_letters,
        s.quarantined,
        s.lost.len()
    );
    println!(
        "to use it: stop ferry, move {} aside, and move {} into its place",
        inspect::file(dir).display(),
        inspect::file(new_dir).display()
    );
    Ok(if s.lost.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_dates() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time(1_795_996_800_000), "2026-11-30T00:00:00Z");
        assert_eq!(super::time(951_786_123_000), "2000-02-29T01:02:03Z");
    }
}
