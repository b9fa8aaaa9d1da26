//! `ferry store salvage DIR NEWDIR`: copies everything readable of a damaged store into
//! a new one, and says what could not be read.
//!
//! Copied: every log record that passes its checksum (with its seq, so cursors keep their
//! meaning), the upstreams' bits and cursors, the seq counter, retained messages,
//! sessions with their subscriptions and queued deliveries, dead letters and quarantined
//! entries, each only if sound. Not copied: the size accounting, which the new store
//! computes again when ferry first opens it. A table redb cannot walk to its end (a
//! damaged branch page) is copied up to the damage and reported.

use super::deadletter::{self, DEAD_LETTERS};
use super::inspect::{self, Damage, InspectError, quietly};
use super::quarantine::{self, QUARANTINE};
use super::{
    CURSORS, META, RETAINED, SESSION_QUEUE, SESSION_SUBS, SESSIONS, UPSTREAM_BITS, record,
    redb_err, seal, segments,
};
use redb::{
    Database, ReadTransaction, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use std::path::Path;

/// Accounting kept in `meta` that the new store recomputes (or that salvage writes).
const RECOMPUTED: &[&str] = &[
    "live_bytes",
    "live_count",
    "retained_bytes",
    "retained_count",
    "dead_letter_count",
    "dead_letter_bytes",
    "quarantine_count",
    "quarantine_bytes",
];

/// What was copied and what could not be.
#[derive(Debug, Default)]
pub struct Salvaged {
    pub records: u64,
    pub retained: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    pub queued: u64,
    pub dead_letters: u64,
    pub quarantined: u64,
    pub upstreams: u64,
    pub lost: Vec<Damage>,
}

#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error(transparent)]
    Source(#[from] InspectError),
    #[error("{0}: a store is already there; salvage writes a new store only")]
    TargetExists(std::path::PathBuf),
    #[error("{path}: {reason}")]
    Target {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Copies what is readable of the store in `from` into a new store in `to`.
pub fn salvage(from: &Path, to: &Path) -> Result<Salvaged, SalvageError> {
    let src = inspect::open(from)?;
    let target = inspect::file(to);
    if target.exists() {
        return Err(SalvageError::TargetExists(target));
    }
    let tgt_err = |e: &dyn std::fmt::Display| SalvageError::Target {
        path: target.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(to).map_err(|e| tgt_err(&e))?;
    let dst = Database::create(&target).map_err(|e| tgt_err(&e))?;
    let rtxn = src.begin_read().map_err(|e| tgt_err(&e))?;
    let wtxn = dst.begin_write().map_err(|e| tgt_err(&e))?;
    let mut out = Salvaged::default();
    copy_all(&rtxn, &wtxn, &mut out).map_err(|e| tgt_err(&e))?;
    wtxn.commit().map_err(|e| tgt_err(&e))?;
    Ok(out)
}

fn copy_all(
    rtxn: &ReadTransaction,
    wtxn: &WriteTransaction,
    out: &mut Salvaged,
) -> Result<(), super::StoreError> {
    // The log, record by record: only sound records, under their own seqs.
    {
        let mut log = segments::Appender::new(wtxn);
        let mut failed = None;
        let mut bad = Vec::new();
        inspect::walk_log(rtxn, &mut out.lost, &mut |seq, bytes| {
            if failed.is_some() {
                return;
            }
            match record::decode(seq, bytes) {
                Ok(_) => match log.insert(seq, bytes) {
                    Ok(()) => out.records += 1,
                    Err(err) => failed = Some(err),
                },
                Err(err) => bad.push(Damage {
                    place: format!("log seq {seq}"),
                    error: err.to_string(),
                }),
            }
        })
        .map_err(redb_err)?;
        out.lost.append(&mut bad);
        if let Some(err) = failed {
            return Err(err);
        }
    }
    let lost = &mut out.lost;
    out.upstreams = copy(
        rtxn,
        wtxn,
        UPSTREAM_BITS,
        "upstream bits",
        lost,
        &mut |_, _| Ok(()),
    )?;
    copy(rtxn, wtxn, CURSORS, "cursors", lost, &mut |_, _| Ok(()))?;
    copy(rtxn, wtxn, META, "meta", lost, &mut |k, _| {
        if RECOMPUTED.contains(&k) {
            Err(None)
        } else {
            Ok(())
        }
    })?;
    out.retained = copy(rtxn, wtxn, RETAINED, "retained", lost, &mut |_, v| {
        record::decode(0, v).map(|_| ()).map_err(Some)
    })?;
    out.sessions = copy(rtxn, wtxn, SESSIONS, "session", lost, &mut |_, v| {
        seal::open(v).map(|_| ()).map_err(Some)
    })?;
    out.subscriptions = copy(
        rtxn,
        wtxn,
        SESSION_SUBS,
        "subscription",
        lost,
        &mut |_, v| seal::open(v).map(|_| ()).map_err(Some),
    )?;
    out.queued = copy(
        rtxn,
        wtxn,
        SESSION_QUEUE,
        "queued delivery",
        lost,
        &mut |_, v| super::queue::decode(v).map(|_| ()).map_err(Some),
    )?;
    out.dead_letters = copy(
        rtxn,
        wtxn,
        DEAD_LETTERS,
        "dead letter",
        lost,
        &mut |_, v| {
            deadletter::DeadLetter::decode(v)
                .and_then(|l| record::decode(0, &l.record))
                .map(|_| ())
                .map_err(Some)
        },
    )?;
    out.quarantined = copy(
        rtxn,
        wtxn,
        QUARANTINE,
        "quarantine entry",
        lost,
        &mut |_, v| quarantine::Entry::decode(v).map(|_| ()).map_err(Some),
    )?;
    recount(wtxn)
}

/// The dead-letter and quarantine tallies of the new store (the others are computed at
/// its first open).
fn recount(wtxn: &WriteTransaction) -> Result<(), super::StoreError> {
    let (mut dl_count, mut dl_bytes) = (0u64, 0u64);
    {
        let t = wtxn.open_table(DEAD_LETTERS).map_err(redb_err)?;
        for item in t.iter().map_err(redb_err)? {
            let (_, v) = item.map_err(redb_err)?;
            dl_count += 1;
            dl_bytes += deadletter::cost(v.value().len());
        }
    }
    let (mut q_count, mut q_bytes, mut q_next) = (0u64, 0u64, 1u64);
    {
        let t = wtxn.open_table(QUARANTINE).map_err(redb_err)?;
        for item in t.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            q_count += 1;
            q_bytes += quarantine::cost(v.value().len());
            q_next = q_next.max(k.value() + 1);
        }
    }
    let mut meta = wtxn.open_table(META).map_err(redb_err)?;
    meta.insert("dead_letter_count", dl_count)
        .map_err(redb_err)?;
    meta.insert("dead_letter_bytes", dl_bytes)
        .map_err(redb_err)?;
    meta.insert("quarantine_count", q_count).map_err(redb_err)?;
    meta.insert("quarantine_bytes", q_bytes).map_err(redb_err)?;
    let next = meta
        .get("quarantine_next")
        .map_err(redb_err)?
        .map_or(1, |v| v.value());
    meta.insert("quarantine_next", next.max(q_next))
        .map_err(redb_err)?;
    Ok(())
}

/// Whether [`copy`] copies a row: `Err(Some(..))` damaged, `Err(None)` left out on purpose.
type Keep<'f, K, V> = dyn FnMut(
        <K as redb::Value>::SelfType<'_>,
        <V as redb::Value>::SelfType<'_>,
    ) -> Result<(), Option<super::RecordError>>
    + 'f;

/// Copies the rows of one table that `keep` accepts (`Err(Some(..))`: damaged, reported;
/// `Err(None)`: left out on purpose). Returns how many were copied.
fn copy<K, V>(
    rtxn: &ReadTransaction,
    wtxn: &WriteTransaction,
    def: TableDefinition<K, V>,
    what: &str,
    lost: &mut Vec<Damage>,
    keep: &mut Keep<'_, K, V>,
) -> Result<u64, super::StoreError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
    for<'a> K::SelfType<'a>: std::fmt::Debug,
{
    let mut dst = wtxn.open_table(def).map_err(redb_err)?;
    let mut copied = 0;
    let walked = quietly(|| -> Result<(), String> {
        let t = match rtxn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(err) => return Err(err.to_string()),
        };
        for item in t.iter().map_err(|err| err.to_string())? {
            let (k, v) = item.map_err(|err| err.to_string())?;
            match keep(k.value(), v.value()) {
                Ok(()) => {
                    dst.insert(k.value(), v.value())
                        .map_err(|err| err.to_string())?;
                    copied += 1;
                }
                Err(Some(err)) => lost.push(Damage {
                    place: format!("{what} {:?}", k.value()),
                    error: err.to_string(),
                }),
                Err(None) => {}
            }
        }
        Ok(())
    });
    if let Some(error) = walked.and_then(|r| r).err() {
        lost.push(Damage {
            place: format!("table {} (copied up to the damage)", def.name()),
            error,
        });
    }
    Ok(copied)
}
