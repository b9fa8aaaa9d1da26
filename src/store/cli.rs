//! `ferry store ...`: look into, check, repair and replay a store, with ferry stopped.
//!
//! Exit status: 0 done and nothing wrong; 1 damage found (`check`, or `salvage` could not
//! copy everything); 2 usage; 3 the store cannot be opened (no store there, in use by a
//! running ferry, or too damaged for the database library to open).

use super::inspect::{self, DumpFilter, InspectError, Obj};
use super::salvage::{self, SalvageError};
use super::{deadletter, record};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How `ferry store` is used (printed for `--help` and after a usage error).
pub const USAGE: &str = "\
Usage: ferry store COMMAND DIR [OPTIONS]   (DIR: the store directory, store.dir; ferry stopped)

  info DIR [--json]        size, events, oldest and newest, each upstream's cursor,
                           backlog and dead letters, quarantined entries
  check DIR                read every record and row, report damage (exit 1 if any)
  dump DIR [--upstream U] [--from SEQ] [--limit N]
                           stored events as JSON lines (--upstream: U's backlog)
  dlq list DIR [--upstream U]     dead letters as JSON lines, oldest first
  dlq replay DIR [--upstream U]   put them back at the end of their upstream's backlog
  dlq purge DIR [--upstream U]    delete them
  salvage DIR NEWDIR       copy every readable record, cursor, retained message and
                           session into a new store in NEWDIR; report what could not be read
  forget DIR LANE          stop keeping the backlog of LANE (an upstream, or <upstream>.pN
                           for one of its priorities, as info lists them) that is no
                           longer configured; configured again, it starts from the end

Exit status: 0 done and nothing wrong, 1 damage found (check; salvage could not copy
everything), 2 usage, 3 the store cannot be opened (none there, in use by a running
ferry, or too damaged to open).
";

/// One `ferry store` command, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreCommand {
    Help,
    Info {
        dir: PathBuf,
        json: bool,
    },
    Check {
        dir: PathBuf,
    },
    Dump {
        dir: PathBuf,
        filter: DumpFilter,
    },
    Dlq {
        action: DlqAction,
        dir: PathBuf,
        upstream: Option<String>,
    },
    Salvage {
        dir: PathBuf,
        new_dir: PathBuf,
    },
    Forget {
        dir: PathBuf,
        lane: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqAction {
    List,
    Replay,
    Purge,
}

/// Parses the words after `ferry store`. By hand rather than with clap's derive: the
/// derive's generated code for these few forms cost 40 KiB of the 5 MiB binary.
pub fn parse(args: &[String]) -> Result<StoreCommand, String> {
    let mut words = args.iter().map(String::as_str);
    let mut positional = Vec::new();
    let (mut json, mut upstream, mut from, mut limit) = (false, None, 0, None);
    let command = match words.next() {
        None | Some("-h" | "--help" | "help") => return Ok(StoreCommand::Help),
        Some(c) => c,
    };
    let action = match command {
        "dlq" => match words.next() {
            Some("list") => Some(DlqAction::List),
            Some("replay") => Some(DlqAction::Replay),
            Some("purge") => Some(DlqAction::Purge),
            Some(other) => {
                return Err(format!(
                    "unknown dlq command {other:?}: expected list, replay or purge"
                ));
            }
            None => return Err("dlq: expected list, replay or purge".into()),
        },
        _ => None,
    };
    while let Some(w) = words.next() {
        let mut value = |name: &str| {
            words
                .next()
                .map(str::to_string)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: expected a whole number, found {v:?}"))
        };
        match w {
            "-h" | "--help" => return Ok(StoreCommand::Help),
            "--json" if command == "info" => json = true,
            "--upstream" if command == "dump" || action.is_some() => {
                upstream = Some(value("--upstream")?)
            }
            "--from" if command == "dump" => from = number("--from", value("--from")?)?,
            "--limit" if command == "dump" => limit = Some(number("--limit", value("--limit")?)?),
            flag if flag.starts_with('-') => {
                return Err(format!("{command}: unknown option {flag:?}"));
            }
            word => positional.push(PathBuf::from(word)),
        }
    }
    let wanted = if matches!(command, "salvage" | "forget") {
        2
    } else {
        1
    };
    if positional.len() != wanted {
        let what = match command {
            "salvage" => "DIR and NEWDIR",
            "forget" => "DIR and LANE",
            _ => "DIR",
        };
        return Err(format!("{command}: expected {what}"));
    }
    let mut positional = positional.into_iter();
    let dir = positional.next().unwrap_or_default();
    Ok(match (command, action) {
        ("info", _) => StoreCommand::Info { dir, json },
        ("check", _) => StoreCommand::Check { dir },
        ("dump", _) => StoreCommand::Dump {
            dir,
            filter: DumpFilter {
                upstream,
                from,
                limit,
            },
        },
        ("dlq", Some(action)) => StoreCommand::Dlq {
            action,
            dir,
            upstream,
        },
        ("salvage", _) => StoreCommand::Salvage {
            dir,
            new_dir: positional.next().unwrap_or_default(),
        },
        ("forget", _) => StoreCommand::Forget {
            dir,
            lane: positional
                .next()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        },
        (other, _) => {
            return Err(format!(
                "unknown command {other:?}: expected info, check, dump, dlq, salvage or forget"
            ));
        }
    })
}

/// Runs `ferry store ARGS`; its outcome is the exit status.
pub fn main(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(StoreCommand::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(command) => run(command),
        Err(e) => {
            eprint!("ferry store: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs one `ferry store` command; its outcome is the exit status.
pub fn run(command: StoreCommand) -> ExitCode {
    let result = match command {
        StoreCommand::Help => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Info { dir, json } => info(&dir, json),
        StoreCommand::Check { dir } => check(&dir),
        StoreCommand::Dump { dir, filter } => dump(&dir, filter),
        StoreCommand::Dlq {
            action,
            dir,
            upstream,
        } => dlq(action, &dir, upstream.as_deref()),
        StoreCommand::Salvage { dir, new_dir } => salvage_cmd(&dir, &new_dir),
        StoreCommand::Forget { dir, lane } => forget(&dir, &lane),
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
    let dead_of = |name: &str| {
        i.dead_letters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, n)| *n)
    };
    if json {
        let point = |p: Option<(u64, u64)>| match p {
            Some((seq, ms)) => Obj::default().num("seq", seq).num("received_ms", ms).done(),
            None => "null".to_string(),
        };
        let upstreams: Vec<String> = i
            .upstreams
            .iter()
            .map(|u| {
                Obj::default()
                    .str("name", &u.name)
                    .num("cursor", u.cursor)
                    .num("backlog", u.backlog)
                    .num("backlog_bytes", u.backlog_bytes)
                    .num("dead_letters", dead_of(&u.name))
                    .done()
            })
            .collect();
        let v = Obj::default()
            .num("file_bytes", i.file_bytes)
            .num("events", i.events)
            .raw("oldest", &point(i.oldest))
            .raw("newest", &point(i.newest))
            .num("next_seq", i.next_seq)
            .raw("upstreams", &format!("[{}]", upstreams.join(",")))
            .num("retained", i.retained)
            .num("sessions", i.sessions)
            .num("queued", i.queued)
            .num("dead_letters", i.dead_letters.iter().map(|(_, n)| n).sum())
            .num("quarantined", i.quarantined)
            .num("damaged", i.damaged)
            .done();
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
        let dead = dead_of(&u.name);
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

/// Moves `lane`'s cursor to the end of the log and marks it forgotten: the store no
/// longer keeps its backlog while it is not configured (the events other lanes still owe
/// stay). Exit 1 for a lane the store does not have.
fn forget(dir: &Path, lane: &str) -> Result<ExitCode, Failure> {
    let db = inspect::open(dir)?;
    let lanes = {
        let txn = db.begin_read().map_err(other)?;
        inspect::upstreams(&txn)
    };
    let Some(u) = lanes.iter().find(|u| u.name == lane) else {
        let known: Vec<&str> = lanes.iter().map(|u| u.name.as_str()).collect();
        eprintln!(
            "ferry store: no lane {lane:?} in this store (it has: {})",
            known.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    };
    let txn = db.begin_write().map_err(other)?;
    // The log's end, also past what meta's accounting covers yet.
    let end = super::accounting::read(&txn)
        .map_err(other)?
        .next_seq
        .saturating_sub(1);
    {
        let mut cursors = txn.open_table(super::CURSORS).map_err(other)?;
        cursors.insert(lane, end).map_err(other)?;
        for key in [format!("{lane}.split"), format!("{lane}.live")] {
            cursors.insert(key.as_str(), 0).map_err(other)?;
        }
        cursors
            .insert(super::forgotten_key(lane).as_str(), 1)
            .map_err(other)?;
    }
    txn.commit().map_err(other)?;
    println!(
        "{lane}: forgotten; its cursor moved from seq {} to the end of the log, seq {end}, where it starts if it is configured again (`ferry store info` before told what it was owed)",
        u.cursor
    );
    Ok(ExitCode::SUCCESS)
}

fn dlq(action: DlqAction, dir: &Path, upstream: Option<&str>) -> Result<ExitCode, Failure> {
    let db = inspect::open(dir)?;
    match action {
        DlqAction::List => {
            let txn = db.begin_read().map_err(other)?;
            let letters = deadletter::list(&txn, upstream).map_err(other)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for l in letters {
                let line = match l.letter {
                    Ok(letter) => match record::decode(l.seq, &letter.record) {
                        Ok(r) => inspect::event_json(&r),
                        Err(e) => Obj::default()
                            .num("seq", l.seq)
                            .str("damaged", &e.to_string()),
                    }
                    .str("upstream", &l.upstream)
                    .str("reason", &letter.reason)
                    .str("detail", &letter.detail)
                    .num("attempts", u64::from(letter.attempts))
                    .str("dead_lettered_at", &time(letter.at_ms)),
                    Err(e) => Obj::default()
                        .num("seq", l.seq)
                        .str("upstream", &l.upstream)
                        .str("damaged", &e.to_string()),
                };
                writeln!(out, "{}", line.done()).map_err(other)?;
            }
            out.flush().map_err(other)?;
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Replay => {
            let txn = db.begin_write().map_err(other)?;
            let r = deadletter::replay(&txn, upstream).map_err(other)?;
            txn.commit().map_err(other)?;
            println!(
                "{} dead letters put back at the end of their upstream's backlog ({} damaged, left in place); ferry sends them when it next runs",
                r.replayed, r.skipped
            );
            Ok(if r.skipped == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DlqAction::Purge => {
            let txn = db.begin_write().map_err(other)?;
            let n = deadletter::purge(&txn, upstream).map_err(other)?;
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
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_forms_parse_and_mistakes_are_usage_errors() {
        assert_eq!(parse(&words("")), Ok(StoreCommand::Help));
        assert_eq!(
            parse(&words("info /d --json")),
            Ok(StoreCommand::Info {
                dir: "/d".into(),
                json: true
            })
        );
        assert_eq!(
            parse(&words("dump /d --upstream cloud --from 5 --limit 3")),
            Ok(StoreCommand::Dump {
                dir: "/d".into(),
                filter: DumpFilter {
                    upstream: Some("cloud".into()),
                    from: 5,
                    limit: Some(3)
                }
            })
        );
        assert_eq!(
            parse(&words("dlq replay /d --upstream cloud")),
            Ok(StoreCommand::Dlq {
                action: DlqAction::Replay,
                dir: "/d".into(),
                upstream: Some("cloud".into())
            })
        );
        assert_eq!(
            parse(&words("salvage /a /b")),
            Ok(StoreCommand::Salvage {
                dir: "/a".into(),
                new_dir: "/b".into()
            })
        );
        for (bad, says) in [
            ("info", "info: expected DIR"),
            ("salvage /a", "salvage: expected DIR and NEWDIR"),
            ("check /d --json", "check: unknown option \"--json\""),
            (
                "dump /d --from x",
                "--from: expected a whole number, found \"x\"",
            ),
            ("dump /d --limit", "--limit needs a value"),
            (
                "dlq /d",
                "unknown dlq command \"/d\": expected list, replay or purge",
            ),
            ("fsck /d", "unknown command \"fsck\""),
        ] {
            let e = parse(&words(bad)).unwrap_err();
            assert!(e.starts_with(says), "{bad}: {e}");
        }
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_795_996_800_000), "2026-11-30T00:00:00Z");
        assert_eq!(time(951_786_123_000), "2000-02-29T01:02:03Z");
    }
}
