//! Looking into a store with ferry stopped: what it holds (`ferry store info`), whether
//! every record and row is sound (`check`), and its records as they are (`dump`).
//!
//! These read the redb file directly, so they work on a copy of a gateway's store as well
//! as in place. redb locks the file while ferry runs; [`open`] says so instead of
//! waiting. A damaged file can make redb panic deep in a read; every walk over a table
//! runs under `catch_unwind`, so one unreadable table is reported and the others are
//! still read.

use super::deadletter::{self, DEAD_LETTERS};
use super::quarantine::{self, QUARANTINE};
use super::{
    CURSORS, META, RETAINED, SESSION_QUEUE, SESSION_SUBS, SESSIONS, UPSTREAM_BITS, record, seal,
};
use redb::{Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableHandle};
use std::path::{Path, PathBuf};

/// Why a store could not be looked into.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}: no store here (no ferry.redb)")]
    Missing(PathBuf),
    #[error(
        "{0}: the store is in use: a running ferry holds it; stop ferry first (systemctl stop ferry)"
    )]
    InUse(PathBuf),
    #[error(
        "{path}: the store cannot be opened ({reason}); `ferry store salvage` cannot read it either, restore it from a backup"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

/// The store file in `dir`.
pub fn file(dir: &Path) -> PathBuf {
    dir.join("ferry.redb")
}

/// Opens the store in `dir` for inspection (redb's own recovery runs if the last writer
/// did not close it). Never creates one.
pub fn open(dir: &Path) -> Result<Database, InspectError> {
    let path = file(dir);
    if !path.exists() {
        return Err(InspectError::Missing(path));
    }
    let opened = quietly(|| Database::open(&path));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(InspectError::InUse(path)),
        Ok(Err(e)) => Err(InspectError::Unreadable {
            path,
            reason: e.to_string(),
        }),
        Err(panic) => Err(InspectError::Unreadable {
            path,
            reason: format!("the database library failed: {panic}"),
        }),
    }
}

/// Runs `f`, turning a panic into its message (not printed: the caller reports it).
pub fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    super::damage::caught(f)
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where: "log seq 12", "table log.0000000000000 (after seq 40)", ...
    pub place: String,
    pub error: String,
}

/// What `ferry store info` shows.
#[derive(Debug, Default)]
pub struct Info {
    pub file_bytes: u64,
    pub events: u64,
    /// (seq, received ms) of the oldest and newest stored events.
    pub oldest: Option<(u64, u64)>,
    pub newest: Option<(u64, u64)>,
    pub next_seq: u64,
    pub upstreams: Vec<UpstreamInfo>,
    pub retained: u64,
    pub sessions: u64,
    pub queued: u64,
    pub dead_letters: Vec<(String, u64)>,
    pub quarantined: u64,
    /// Records that could not be read while counting (see `check`).
    pub damaged: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpstreamInfo {
    pub name: String,
    pub bit: u8,
    pub cursor: u64,
    /// Stored events destined for it above its cursor.
    pub backlog: u64,
    pub backlog_bytes: u64,
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> InspectError {
    InspectError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Names of the log's segment tables, in seq order.
fn segment_tables(txn: &ReadTransaction) -> Result<Vec<String>, redb::StorageError> {
    let mut names: Vec<String> = txn
        .list_tables()?
        .map(|h| h.name().to_string())
        .filter(|n| n.starts_with("log."))
        .collect();
    names.sort();
    Ok(names)
}

/// Calls `f` on every (seq, bytes) of the log, in order, table by table. A table that
/// fails (a redb error or panic) is reported in `damage` and the walk goes on with the
/// next.
pub fn walk_log(
    txn: &ReadTransaction,
    damage: &mut Vec<Damage>,
    f: &mut dyn FnMut(u64, &[u8]),
) -> Result<(), redb::StorageError> {
    for name in segment_tables(txn)? {
        let mut last = None;
        let def: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new(&name);
        let walked = quietly(|| -> Result<(), String> {
            let t = txn.open_table(def).map_err(|e| e.to_string())?;
            for item in t.iter().map_err(|e| e.to_string())? {
                let (k, v) = item.map_err(|e| e.to_string())?;
                last = Some(k.value());
                f(k.value(), v.value());
            }
            Ok(())
        });
        if let Some(error) = walked.and_then(|r| r).err() {
            let place = match last {
                Some(seq) => format!("table {name} (after seq {seq})"),
                None => format!("table {name}"),
            };
            damage.push(Damage { place, error });
        }
    }
    Ok(())
}

/// The rows of a table keyed by name, each value mapped by `f`; empty when the table is
/// missing or cannot be read (the callers report counts, not damage).
fn named_rows<V: redb::Value + 'static, T>(
    txn: &ReadTransaction,
    def: redb::TableDefinition<&str, V>,
    f: impl Fn(V::SelfType<'_>) -> T,
) -> Vec<(String, T)> {
    let read = || -> Result<Vec<(String, T)>, String> {
        let t = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| e.to_string())? {
            let (k, v) = item.map_err(|e| e.to_string())?;
            out.push((k.value().to_string(), f(v.value())));
        }
        Ok(out)
    };
    quietly(read).ok().and_then(|r| r.ok()).unwrap_or_default()
}

fn u64_table(txn: &ReadTransaction, def: redb::TableDefinition<&str, u64>) -> Vec<(String, u64)> {
    named_rows(txn, def, |v| v)
}

/// The upstreams the store knows, with their bits and cursors.
pub fn upstreams(txn: &ReadTransaction) -> Vec<UpstreamInfo> {
    let cursors = u64_table(txn, CURSORS);
    let bits = named_rows(txn, UPSTREAM_BITS, |v| v);
    bits.into_iter()
        .map(|(name, bit)| {
            let cursor = cursors
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, c)| *c);
            UpstreamInfo {
                name,
                bit,
                cursor,
                ..Default::default()
            }
        })
        .collect()
}

fn count_rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: redb::TableDefinition<K, V>,
) -> u64 {
    quietly(|| match txn.open_table(def) {
        Ok(t) => t.len().unwrap_or(0),
        Err(_) => 0,
    })
    .unwrap_or(0)
}

/// The seq the next event will get as the store's `meta` table has it: an append-only
/// commit may leave it behind the log's last record (`accounting.rs`).
fn stored_next_seq(txn: &ReadTransaction) -> u64 {
    u64_table(txn, META)
        .iter()
        .find(|(k, _)| k == "next_seq")
        .map_or(1, |(_, v)| *v)
}

/// Gathers `ferry store info` for the store `db` (file `path`).
pub fn info(db: &Database, path: &Path) -> Result<Info, InspectError> {
    let txn = db.begin_read().map_err(|e| read_err(path, e))?;
    let mut info = Info {
        file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        upstreams: upstreams(&txn),
        ..Default::default()
    };
    let stored_next = stored_next_seq(&txn);
    let mut damage = Vec::new();
    let ups = &mut info.upstreams;
    let (mut events, mut oldest, mut newest, mut damaged) = (0, None, None, 0);
    walk_log(
        &txn,
        &mut damage,
        &mut |seq, bytes| match record::decode(seq, bytes) {
            Ok(r) => {
                events += 1;
                oldest.get_or_insert((seq, r.received_ms));
                newest = Some((seq, r.received_ms));
                for u in ups.iter_mut() {
                    if r.dests & (1u64 << u.bit) != 0 && seq > u.cursor {
                        u.backlog += 1;
                        u.backlog_bytes += bytes.len() as u64;
                    }
                }
            }
            Err(_) => damaged += 1,
        },
    )
    .map_err(|e| read_err(path, e))?;
    (info.events, info.oldest, info.newest) = (events, oldest, newest);
    info.next_seq = stored_next.max(newest.map_or(0, |(seq, _)| seq + 1));
    info.damaged = damaged + damage.len() as u64;
    info.retained = count_rows(&txn, RETAINED);
    info.sessions = count_rows(&txn, SESSIONS);
    info.queued = count_rows(&txn, SESSION_QUEUE);
    info.quarantined = count_rows(&txn, QUARANTINE);
    let letters = quietly(|| deadletter::list(&txn, None))
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    for l in letters {
        match info.dead_letters.iter_mut().find(|(u, _)| *u == l.upstream) {
            Some((_, n)) => *n += 1,
            None => info.dead_letters.push((l.upstream, 1)),
        }
    }
    Ok(info)
}

/// What `ferry store check` found: every damaged record or row, and how much was read.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub records: u64,
    pub rows: u64,
    pub damage: Vec<Damage>,
    /// Entries already in the quarantine (damage found and set aside earlier).
    pub quarantined: u64,
}

/// Checks every record and row of the store: log records (checksum and format),
/// retained messages, sessions, subscriptions, queued deliveries, dead letters and the
/// quarantine's own rows.
pub fn check(db: &Database, path: &Path) -> Result<CheckReport, InspectError> {
    let txn = db.begin_read().map_err(|e| read_err(path, e))?;
    let mut report = CheckReport::default();
    let mut damage = Vec::new();
    let mut bad = Vec::new();
    let mut records = 0;
    walk_log(&txn, &mut damage, &mut |seq, bytes| {
        records += 1;
        if let Err(e) = record::decode(seq, bytes) {
            bad.push(Damage {
                place: format!("log seq {seq}"),
                error: e.to_string(),
            });
        }
    })
    .map_err(|e| read_err(path, e))?;
    report.records = records;
    damage.append(&mut bad);
    let mut rows = 0;
    check_rows(
        &txn,
        RETAINED,
        "retained",
        &mut rows,
        &mut damage,
        &mut |k, v| record::decode(0, v).err().map(|e| (format!("{k:?}"), e)),
    );
    check_rows(
        &txn,
        SESSIONS,
        "session",
        &mut rows,
        &mut damage,
        &mut |k, v| seal::open(v).err().map(|e| (format!("{k:?}"), e)),
    );
    check_rows(
        &txn,
        SESSION_SUBS,
        "subscription",
        &mut rows,
        &mut damage,
        &mut |k, v| {
            seal::open(v)
                .err()
                .map(|e| (format!("{:?} of {:?}", k.1, k.0), e))
        },
    );
    check_rows(
        &txn,
        SESSION_QUEUE,
        "queued delivery",
        &mut rows,
        &mut damage,
        &mut |k, v| {
            super::queue::decode(v)
                .err()
                .map(|e| (format!("{} of {:?}", k.1, k.0), e))
        },
    );
    check_rows(
        &txn,
        DEAD_LETTERS,
        "dead letter",
        &mut rows,
        &mut damage,
        &mut |k, v| {
            let (seq, bit) = deadletter::split(k);
            match deadletter::DeadLetter::decode(v) {
                Ok(l) => record::decode(seq, &l.record)
                    .err()
                    .map(|e| (format!("seq {seq} of upstream bit {bit} (its record)"), e)),
                Err(e) => Some((format!("seq {seq} of upstream bit {bit}"), e)),
            }
        },
    );
    let mut quarantined = 0;
    check_rows(
        &txn,
        QUARANTINE,
        "quarantine entry",
        &mut quarantined,
        &mut damage,
        &mut |k, v| {
            quarantine::Entry::decode(v)
                .err()
                .map(|e| (k.to_string(), e))
        },
    );
    report.rows = rows + quarantined;
    report.quarantined = quarantined;
    report.damage = damage;
    Ok(report)
}

/// A row check for [`check_rows`]: a complaint (where, what) or None.
type RowCheck<'f, K, V> = dyn FnMut(
        <K as redb::Value>::SelfType<'_>,
        <V as redb::Value>::SelfType<'_>,
    ) -> Option<(String, super::RecordError)>
    + 'f;

/// Walks one keyed table, calling `bad` on every row; a row it returns a complaint for,
/// or the table failing, is added to `damage`.
fn check_rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: redb::TableDefinition<K, V>,
    what: &str,
    rows: &mut u64,
    damage: &mut Vec<Damage>,
    bad: &mut RowCheck<'_, K, V>,
) {
    let walked = quietly(|| -> Result<(), String> {
        let t = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        for item in t.iter().map_err(|e| e.to_string())? {
            let (k, v) = item.map_err(|e| e.to_string())?;
            *rows += 1;
            if let Some((place, e)) = bad(k.value(), v.value()) {
                damage.push(Damage {
                    place: format!("{what} {place}"),
                    error: e.to_string(),
                });
            }
        }
        Ok(())
    });
    if let Some(error) = walked.and_then(|r| r).err() {
        damage.push(Damage {
            place: format!("table {}", def.name()),
            error,
        });
    }
}

/// Which records `ferry store dump` prints.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpFilter {
    /// Only this upstream's backlog: records destined for it above its cursor.
    pub upstream: Option<String>,
    /// Only seqs at or above this.
    pub from: u64,
    pub limit: Option<u64>,
}

/// Writes the log's records as JSON lines to `out`; a damaged record is a line with its
/// seq and the error. Returns how many lines were written.
pub fn dump(
    db: &Database,
    path: &Path,
    filter: &DumpFilter,
    out: &mut dyn std::io::Write,
) -> Result<u64, InspectError> {
    let txn = db.begin_read().map_err(|e| read_err(path, e))?;
    let (bit, cursor) = match &filter.upstream {
        None => (None, 0),
        Some(name) => {
            let Some(u) = upstreams(&txn).into_iter().find(|u| &u.name == name) else {
                return Err(read_err(
                    path,
                    format!("no upstream named {name:?} in this store"),
                ));
            };
            (Some(u.bit), u.cursor)
        }
    };
    let limit = filter.limit.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let mut io_error = None;
    let mut damage = Vec::new();
    walk_log(&txn, &mut damage, &mut |seq, bytes| {
        if written >= limit || seq < filter.from || io_error.is_some() {
            return;
        }
        let line = match record::decode(seq, bytes) {
            Ok(r) => {
                if bit.is_some_and(|b| r.dests & (1u64 << b) == 0 || seq <= cursor) {
                    return;
                }
                event_json(&r).done()
            }
            Err(e) => Obj::default()
                .num("seq", seq)
                .str("damaged", &e.to_string())
                .done(),
        };
        written += 1;
        if let Err(e) = writeln!(out, "{line}") {
            io_error = Some(e);
        }
    })
    .map_err(|e| read_err(path, e))?;
    if let Some(e) = io_error {
        return Err(read_err(path, e));
    }
    for d in damage {
        let line = Obj::default()
            .str("damaged", &d.place)
            .str("error", &d.error)
            .done();
        writeln!(out, "{line}").map_err(|e| read_err(path, e))?;
    }
    Ok(written)
}

/// A JSON object written field by field: `ferry store` prints a few flat objects, and a
/// `serde_json::Value` built with `json!` cost about ten times the code.
#[derive(Default)]
pub struct Obj(String);

impl Obj {
    fn key(&mut self, k: &str) -> &mut String {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push_str(&quote(k));
        self.0.push(':');
        &mut self.0
    }
    pub fn str(mut self, k: &str, v: &str) -> Obj {
        let q = quote(v);
        self.key(k).push_str(&q);
        self
    }
    pub fn num(mut self, k: &str, v: u64) -> Obj {
        let n = v.to_string();
        self.key(k).push_str(&n);
        self
    }
    pub fn int(mut self, k: &str, v: i64) -> Obj {
        let n = v.to_string();
        self.key(k).push_str(&n);
        self
    }
    pub fn float(mut self, k: &str, v: f64) -> Obj {
        let n = json_float(v);
        self.key(k).push_str(&n);
        self
    }
    /// `v` already JSON (a nested object, an array, `null`, `true`).
    pub fn raw(mut self, k: &str, v: &str) -> Obj {
        self.key(k).push_str(v);
        self
    }
    pub fn done(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

/// `x` as a JSON number: with a decimal point or exponent; 0.0 for what JSON cannot say
/// (rates and ages are finite).
pub fn json_float(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        "0.0".into()
    }
}

/// `s` as a JSON string.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A stored event as JSON: the payload as text when it is UTF-8, otherwise as hex.
pub fn event_json(r: &super::StoredEvent) -> Obj {
    let props: Vec<String> = r
        .user_properties
        .iter()
        .map(|(k, v)| format!("[{},{}]", quote(k), quote(v)))
        .collect();
    let o = Obj::default()
        .num("seq", r.seq)
        .num("received_ms", r.received_ms)
        .str("topic", &r.topic)
        .num("qos", u64::from(r.qos))
        .raw("retain", if r.retain { "true" } else { "false" })
        .num("dests", r.dests)
        .raw("user_properties", &format!("[{}]", props.join(",")));
    match std::str::from_utf8(&r.payload) {
        Ok(text) => o.str("payload", text),
        Err(_) => o.str("payload_hex", &hex(&r.payload)),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
