//! The SQLite [`LinkState`] (Flower's `--database <file>`), with Sepal's own schema.
//!
//! # Schema (version 1, `PRAGMA user_version`; `PRAGMA application_id` marks the file)
//!
//! | table | holds |
//! |---|---|
//! | `run` | one row per run: FAB, `override_config` (a prost `ScalarMap`), `federation_options` (`pb::ConfigRecord`), `flwr_aid`, status / sub-status / details, the four ISO timestamps, `active_until`; `seq` is submission order |
//! | `context` | the ServerApp context of a run (`pb::Context`) |
//! | `log` | a run's log entries: stamp (Unix seconds, strictly increasing per run) and text; `seq` keeps insertion order |
//! | `fab` | FAB archives by hash |
//! | `node` | node id and `online_until` |
//! | `node_key` | public key -> node (one node per key; deleting a node frees its keys) |
//! | `instruction` | ServerApp -> node messages (`pb::Message`, `pb::ObjectTree`), destination, expiry, delivered flag; `seq` is arrival order |
//! | `reply` | the reply to an instruction (deleted with it) |
//! | `gone` | ids of instructions that were answered or deleted, per run, so a late reply is told from a reply to a message that never existed |
//!
//! Ids are `u64` stored as SQLite's signed 64-bit INTEGER (a bit-for-bit `as` cast, so ids
//! above `i64::MAX` are negative on disk); anything sorted by id is sorted in Rust, as
//! `u64`. Protobuf values are prost-encoded BLOBs. Times are REAL; a NaN time (a client
//! may send a NaN heartbeat interval) is stored as NULL, which SQL comparisons treat as
//! false, exactly as Rust treats NaN, so both backends agree on it.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=FULL`: a write is on disk (the WAL is
//! fsynced at commit) before the call that made it returns, so a run, message, reply,
//! delivered flag or log line that was acknowledged survives a crash or power loss. Every
//! method that writes does so in one transaction (`BEGIN IMMEDIATE`), so a multi-statement
//! update (claiming a run, taking replies, storing a reply) is applied whole or not at all.
//! Heartbeats alone commit with `synchronous=NORMAL`: they are the most frequent write,
//! and losing the last one to a power cut only shortens a liveness deadline that the next
//! heartbeat restores; in WAL mode a NORMAL commit is still atomic and survives a process
//! crash, and the next FULL commit syncs it too.
//!
//! # Threading
//!
//! One connection behind a mutex. Every call is a short local transaction (a few indexed
//! statements; a write adds one fsync), so async callers may call it directly from a
//! tokio task, as they do with the in-memory backend. The fsync is the long part (well
//! under a millisecond on an SSD, a few milliseconds on slow disks) and blocks the calling
//! worker thread and other state callers meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use rand::Rng;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sepal_proto::pb;

use super::status::{self, RunState};
use super::{
    check_reply, InstructionRejected, LinkState, NewRun, ReplyLookup, ReplyRejected, StateError, StateResult,
    StoredMessage, HEARTBEAT_NEVER, HEARTBEAT_PATIENCE, NO_HEARTBEAT_DETAILS, SUPERLINK_NODE_ID,
};
use crate::clock::{now_iso, now_secs};

/// The schema this code reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 1;

/// Marks a file as a Sepal state database (`PRAGMA application_id`, "SEPL").
pub const APPLICATION_ID: i32 = 0x5345_504C;

/// How long a statement waits for a lock held by another connection (for example an
/// operator's `sqlite3` shell) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS run (
    seq                INTEGER PRIMARY KEY,
    run_id             INTEGER NOT NULL UNIQUE,
    fab_id             TEXT NOT NULL,
    fab_version        TEXT NOT NULL,
    fab_hash           TEXT NOT NULL,
    override_config    BLOB NOT NULL,
    federation_options BLOB NOT NULL,
    flwr_aid           TEXT NOT NULL,
    status             TEXT NOT NULL,
    sub_status         TEXT NOT NULL,
    details            TEXT NOT NULL,
    pending_at         TEXT NOT NULL,
    starting_at        TEXT NOT NULL,
    running_at         TEXT NOT NULL,
    finished_at        TEXT NOT NULL,
    active_until       REAL
);
CREATE INDEX IF NOT EXISTS run_by_status ON run (status, seq);

CREATE TABLE IF NOT EXISTS context (
    run_id  INTEGER PRIMARY KEY REFERENCES run (run_id) ON DELETE CASCADE,
    context BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS log (
    seq    INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES run (run_id) ON DELETE CASCADE,
    stamp  REAL NOT NULL,
    text   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_by_run ON log (run_id, stamp);

CREATE TABLE IF NOT EXISTS fab (
    hash    TEXT PRIMARY KEY,
    content BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS node (
    node_id      INTEGER PRIMARY KEY,
    online_until REAL
);

CREATE TABLE IF NOT EXISTS node_key (
    public_key BLOB PRIMARY KEY,
    node_id    INTEGER NOT NULL REFERENCES node (node_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS node_key_by_node ON node_key (node_id);

CREATE TABLE IF NOT EXISTS instruction (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    run_id      INTEGER NOT NULL REFERENCES run (run_id) ON DELETE CASCADE,
    dst_node_id INTEGER NOT NULL,
    expires_at  REAL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    message     BLOB NOT NULL,
    tree        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS instruction_by_node ON instruction (dst_node_id, delivered, seq);
CREATE INDEX IF NOT EXISTS instruction_by_run ON instruction (run_id, seq);

CREATE TABLE IF NOT EXISTS reply (
    instruction_id TEXT PRIMARY KEY REFERENCES instruction (message_id) ON DELETE CASCADE,
    message        BLOB NOT NULL,
    tree           BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS gone (
    run_id     INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (run_id, message_id)
) WITHOUT ROWID;
";

/// A run's override config as one protobuf value (Flower's `Run.override_config` map).
#[derive(Clone, PartialEq, prost::Message)]
struct ScalarMap {
    #[prost(map = "string, message", tag = "1")]
    entries: HashMap<String, pb::Scalar>,
}

/// State kept in an SQLite database file; survives restarts.
pub struct SqliteState {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteState").field("path", &self.path).finish_non_exhaustive()
    }
}

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> Self {
        StateError::Backend(format!("SQLite: {e}"))
    }
}

/// How hard a commit insists on reaching the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// `synchronous=FULL`: on disk before the call returns.
    Durable,
    /// `synchronous=NORMAL`: atomic and crash-safe, may be lost to a power cut.
    Relaxed,
}

impl SqliteState {
    /// Opens (creating if needed) the state database at `path`.
    ///
    /// Fails with [`StateError::Backend`], naming the path and the cause, when the file
    /// cannot be opened or created, is not an SQLite database, belongs to another program
    /// (a Flower database, for example), or has a newer schema than this Sepal knows.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(|e| {
            StateError::Backend(format!(
                "cannot open state database {}: {e}{}",
                path.display(),
                explain_open_failure(&path)
            ))
        })?;
        init(&mut conn).map_err(|e| {
            let cause = match e {
                StateError::Backend(m) => m,
                other => other.to_string(),
            };
            StateError::Backend(format!("cannot use {} as the state database: {cause}", path.display()))
        })?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self { conn: Mutex::new(conn), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction rolls it back when the transaction is dropped, so
        // the connection is consistent even if the lock was poisoned; only a relaxed
        // commit's `synchronous` setting may be left behind.
        self.conn.lock().unwrap_or_else(|poisoned| {
            let conn = poisoned.into_inner();
            if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
                tracing::error!("state database: cannot restore synchronous=FULL: {e}");
            }
            conn
        })
    }

    /// Runs `f` without a transaction (a single read).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> StateResult<T>) -> StateResult<T> {
        let conn = self.lock();
        f(&conn).map_err(|e| self.context(e))
    }

    /// Runs `f` in one write transaction and commits it.
    fn write<T>(&self, commit: Commit, f: impl FnOnce(&Connection) -> StateResult<T>) -> StateResult<T> {
        let mut conn = self.lock();
        let result = (|| {
            if commit == Commit::Relaxed {
                conn.pragma_update(None, "synchronous", "NORMAL")?;
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        if commit == Commit::Relaxed {
            if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
                return Err(self.context(e.into()));
            }
        }
        result.map_err(|e| self.context(e))
    }

    fn context(&self, e: StateError) -> StateError {
        match e {
            StateError::Backend(m) => StateError::Backend(format!("state database {}: {m}", self.path.display())),
            other => other,
        }
    }
}

/// A hint for SQLite's terse "unable to open database file", from the file system.
fn explain_open_failure(path: &Path) -> String {
    if path.is_dir() {
        return " (it is a directory)".into();
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !dir.exists() {
            return format!(" (directory {} does not exist)", dir.display());
        }
        if !dir.is_dir() {
            return format!(" ({} is not a directory)", dir.display());
        }
    }
    let probe = if path.exists() {
        std::fs::OpenOptions::new().read(true).write(true).open(path).map(drop)
    } else {
        // Nothing was there, so nothing is lost by creating and removing it.
        std::fs::OpenOptions::new().write(true).create_new(true).open(path).map(|_| {
            let _ = std::fs::remove_file(path);
        })
    };
    match probe {
        Err(e) => format!(" ({e})"),
        Ok(()) => String::new(),
    }
}

/// Sets the connection up and creates or checks the schema.
fn init(conn: &mut Connection) -> StateResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Look before touching: the first read fails on a file that is not a database, and a
    // database that is not ours is refused before anything (even its journal mode) changes.
    check_marks(conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(%mode, "state database could not switch to WAL mode; using its rollback journal");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Again under the write lock, in case another process initialised the file meanwhile.
    check_marks(&tx)?;
    tx.execute_batch(SCHEMA)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    Ok(())
}

/// Refuses files that are not (empty or) Sepal state databases of a known version.
fn check_marks(conn: &Connection) -> StateResult<()> {
    let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app != 0 && app != APPLICATION_ID {
        return Err(StateError::Backend(format!(
            "it is an SQLite database of another program (application_id {app:#x}), not a Sepal state database"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(StateError::Backend(format!(
            "its schema version {version} is newer than this Sepal understands ({SCHEMA_VERSION}); \
             run a newer Sepal or use another file"
        )));
    }
    if version == 0 {
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(StateError::Backend(
                "it has tables but no Sepal schema version; it is not a Sepal state database \
                 (Flower's database files cannot be reused)"
                    .into(),
            ));
        }
    }
    Ok(())
}

// === value conversions ===

/// A `u64` id as SQLite's signed INTEGER (bit-for-bit).
fn sql_id(id: u64) -> i64 {
    id as i64
}

/// The `u64` id behind an INTEGER read back.
fn id_of(v: i64) -> u64 {
    v as u64
}

/// A time for a REAL column: NaN becomes NULL (SQLite cannot store NaN).
fn sql_time(t: f64) -> Option<f64> {
    (!t.is_nan()).then_some(t)
}

/// A time read back from a nullable REAL column.
fn time_of(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

fn decode<M: prost::Message + Default>(what: &str, bytes: &[u8]) -> StateResult<M> {
    M::decode(bytes).map_err(|e| StateError::Backend(format!("stored {what} is corrupt: {e}")))
}

fn decode_message(message: &[u8], tree: &[u8]) -> StateResult<StoredMessage> {
    let msg = StoredMessage { message: decode("message", message)?, tree: decode("object tree", tree)? };
    if msg.message.metadata.is_none() {
        return Err(StateError::Backend("stored message has no metadata".into()));
    }
    Ok(msg)
}

fn expired(meta: &pb::Metadata, now: f64) -> bool {
    meta.created_at + meta.ttl < now
}

// === runs ===

/// A run row as the state keeps it.
struct RunRow {
    run: pb::Run,
    active_until: f64,
}

const LOAD_RUN: &str = "SELECT run_id, fab_id, fab_version, fab_hash, override_config, flwr_aid, status, \
                        sub_status, details, pending_at, starting_at, running_at, finished_at, active_until \
                        FROM run WHERE run_id = ?1";

fn load_run(conn: &Connection, run_id: u64) -> StateResult<Option<RunRow>> {
    let row = conn
        .prepare_cached(LOAD_RUN)?
        .query_row([sql_id(run_id)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                [r.get::<_, String>(1)?, r.get(2)?, r.get(3)?],
                r.get::<_, Vec<u8>>(4)?,
                [
                    r.get::<_, String>(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                ],
                r.get::<_, Option<f64>>(13)?,
            ))
        })
        .optional()?;
    let Some((id, [fab_id, fab_version, fab_hash], config, text, active_until)) = row else {
        return Ok(None);
    };
    let [flwr_aid, status, sub_status, details, pending_at, starting_at, running_at, finished_at] = text;
    let override_config = decode::<ScalarMap>("override config", &config)?.entries;
    let run = pb::Run {
        run_id: id_of(id),
        fab_id,
        fab_version,
        override_config,
        fab_hash,
        pending_at,
        starting_at,
        running_at,
        finished_at,
        status: Some(pb::RunStatus { status, sub_status, details }),
        flwr_aid,
    };
    Ok(Some(RunRow { run, active_until: time_of(active_until) }))
}

/// Writes back what changes on a run: its status, timestamps and heartbeat deadline.
fn save_run(conn: &Connection, row: &RunRow) -> StateResult<()> {
    let status = row.run.status.clone().unwrap_or_default();
    conn.prepare_cached(
        "UPDATE run SET status = ?2, sub_status = ?3, details = ?4, starting_at = ?5, running_at = ?6, \
         finished_at = ?7, active_until = ?8 WHERE run_id = ?1",
    )?
    .execute(params![
        sql_id(row.run.run_id),
        status.status,
        status.sub_status,
        status.details,
        row.run.starting_at,
        row.run.running_at,
        row.run.finished_at,
        sql_time(row.active_until),
    ])?;
    Ok(())
}

/// Whether a starting/running run's ServerApp has missed its heartbeats.
fn needs_refresh(row: &RunRow, now: f64) -> bool {
    matches!(RunState::of(&row.run), Some(RunState::Starting | RunState::Running)) && row.active_until < now
}

/// The run, with a starting/running run whose ServerApp stopped sending heartbeats
/// turned finished:failed (and saved so).
fn live_run(conn: &Connection, run_id: u64) -> StateResult<Option<RunRow>> {
    let Some(mut row) = load_run(conn, run_id)? else {
        return Ok(None);
    };
    if needs_refresh(&row, now_secs()) {
        row.run.status = Some(status::status(status::FINISHED, status::FAILED, NO_HEARTBEAT_DETAILS));
        row.run.finished_at = now_iso();
        save_run(conn, &row)?;
    }
    Ok(Some(row))
}

fn run_exists(conn: &Connection, run_id: u64) -> StateResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM run WHERE run_id = ?1)")?
        .query_row([sql_id(run_id)], |r| r.get(0))?)
}

fn node_exists(conn: &Connection, node_id: u64) -> StateResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM node WHERE node_id = ?1)")?
        .query_row([sql_id(node_id)], |r| r.get(0))?)
}

/// A random id above the SuperLink's that `taken` does not know.
fn random_id(taken: impl Fn(u64) -> StateResult<bool>) -> StateResult<u64> {
    let mut rng = rand::thread_rng();
    loop {
        let id: u64 = rng.gen();
        if id > SUPERLINK_NODE_ID && !taken(id)? {
            return Ok(id);
        }
    }
}

// === messages ===

/// The instruction with this id: (run, message).
fn load_instruction(conn: &Connection, id: &str) -> StateResult<Option<StoredMessage>> {
    let row = conn
        .prepare_cached("SELECT message, tree FROM instruction WHERE message_id = ?1")?
        .query_row([id], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    row.map(|(m, t)| decode_message(&m, &t)).transpose()
}

fn load_reply(conn: &Connection, instruction_id: &str) -> StateResult<Option<StoredMessage>> {
    let row = conn
        .prepare_cached("SELECT message, tree FROM reply WHERE instruction_id = ?1")?
        .query_row([instruction_id], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    row.map(|(m, t)| decode_message(&m, &t)).transpose()
}

/// Deletes an instruction and its reply, leaving a tombstone in its run.
fn remove_instruction(conn: &Connection, id: &str) -> StateResult<()> {
    let run: Option<i64> = conn
        .prepare_cached("SELECT run_id FROM instruction WHERE message_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(run) = run {
        conn.prepare_cached("DELETE FROM instruction WHERE message_id = ?1")?.execute([id])?;
        conn.prepare_cached("INSERT OR IGNORE INTO gone (run_id, message_id) VALUES (?1, ?2)")?
            .execute(params![run, id])?;
    }
    Ok(())
}

fn lookup_reply(conn: &Connection, id: &str, now: f64) -> StateResult<ReplyLookup> {
    let Some(ins) = load_instruction(conn, id)? else {
        return Ok(ReplyLookup::InstructionUnavailable { instruction_id: id.to_string() });
    };
    let meta = ins.metadata().clone();
    if expired(&meta, now) {
        return Ok(ReplyLookup::InstructionUnavailable { instruction_id: id.to_string() });
    }
    if let Some(reply) = load_reply(conn, id)? {
        if expired(reply.metadata(), now) {
            return Ok(ReplyLookup::ReplyUnavailable { instruction: meta });
        }
        return Ok(ReplyLookup::Reply(reply));
    }
    let online_until: Option<Option<f64>> = conn
        .prepare_cached("SELECT online_until FROM node WHERE node_id = ?1")?
        .query_row([sql_id(meta.dst_node_id)], |r| r.get(0))
        .optional()?;
    let online = online_until.is_some_and(|t| time_of(t) >= now);
    if !online {
        return Ok(ReplyLookup::NodeUnavailable { instruction: meta });
    }
    Ok(ReplyLookup::Waiting)
}

impl LinkState for SqliteState {
    fn create_run(&self, new: NewRun) -> StateResult<u64> {
        let config = ScalarMap { entries: new.override_config }.encode_to_vec();
        let options = new.federation_options.encode_to_vec();
        self.write(Commit::Durable, |conn| {
            let run_id = random_id(|id| run_exists(conn, id))?;
            conn.prepare_cached(
                "INSERT INTO run (run_id, fab_id, fab_version, fab_hash, override_config, federation_options, \
                 flwr_aid, status, sub_status, details, pending_at, starting_at, running_at, finished_at, \
                 active_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '', '', ?9, '', '', '', 0.0)",
            )?
            .execute(params![
                sql_id(run_id),
                new.fab_id,
                new.fab_version,
                new.fab_hash,
                config,
                options,
                new.flwr_aid,
                status::PENDING,
                now_iso(),
            ])?;
            let context = pb::Context { run_id, state: Some(pb::RecordDict::default()), ..Default::default() };
            conn.prepare_cached("INSERT INTO context (run_id, context) VALUES (?1, ?2)")?
                .execute(params![sql_id(run_id), context.encode_to_vec()])?;
            Ok(run_id)
        })
    }

    fn run(&self, run_id: u64) -> StateResult<Option<pb::Run>> {
        // A pure read, unless the run has just missed its heartbeats.
        let row = self.read(|conn| load_run(conn, run_id))?;
        match row {
            Some(row) if needs_refresh(&row, now_secs()) => {
                self.write(Commit::Durable, |conn| Ok(live_run(conn, run_id)?.map(|r| r.run)))
            }
            row => Ok(row.map(|r| r.run)),
        }
    }

    fn run_ids(&self) -> StateResult<Vec<u64>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT run_id FROM run")?;
            let mut ids = stmt.query_map([], |r| r.get::<_, i64>(0).map(id_of))?.collect::<Result<Vec<_>, _>>()?;
            ids.sort_unstable();
            Ok(ids)
        })
    }

    fn update_run_status(&self, run_id: u64, new: pb::RunStatus) -> StateResult<bool> {
        self.write(Commit::Durable, |conn| {
            let mut row = live_run(conn, run_id)?.ok_or(StateError::RunNotFound(run_id))?;
            if !status::apply_transition(&mut row.run, &mut row.active_until, new) {
                return Ok(false);
            }
            save_run(conn, &row)?;
            Ok(true)
        })
    }

    fn claim_pending_run(&self) -> StateResult<Option<u64>> {
        self.write(Commit::Durable, |conn| {
            let oldest: Option<i64> = conn
                .prepare_cached("SELECT run_id FROM run WHERE status = ?1 ORDER BY seq LIMIT 1")?
                .query_row([status::PENDING], |r| r.get(0))
                .optional()?;
            let Some(run_id) = oldest.map(id_of) else {
                return Ok(None);
            };
            let mut row = live_run(conn, run_id)?.ok_or(StateError::RunNotFound(run_id))?;
            row.run.status = Some(status::status(status::STARTING, "", ""));
            row.run.starting_at = now_iso();
            row.active_until = HEARTBEAT_NEVER;
            save_run(conn, &row)?;
            Ok(Some(run_id))
        })
    }

    fn pending_run_ids(&self) -> StateResult<Vec<u64>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT run_id FROM run WHERE status = ?1 ORDER BY seq")?;
            let ids = stmt.query_map([status::PENDING], |r| r.get::<_, i64>(0).map(id_of))?;
            Ok(ids.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn ack_app_heartbeat(&self, run_id: u64, interval: f64) -> StateResult<bool> {
        self.write(Commit::Relaxed, |conn| {
            let Some(mut row) = live_run(conn, run_id)? else {
                return Ok(false);
            };
            if !matches!(RunState::of(&row.run), Some(RunState::Starting | RunState::Running)) {
                return Ok(false);
            }
            row.active_until = now_secs() + HEARTBEAT_PATIENCE * interval;
            save_run(conn, &row)?;
            Ok(true)
        })
    }

    fn serverapp_context(&self, run_id: u64) -> StateResult<Option<pb::Context>> {
        self.read(|conn| {
            let blob: Option<Vec<u8>> = conn
                .prepare_cached("SELECT context FROM context WHERE run_id = ?1")?
                .query_row([sql_id(run_id)], |r| r.get(0))
                .optional()?;
            blob.map(|b| decode("context", &b)).transpose()
        })
    }

    fn set_serverapp_context(&self, run_id: u64, context: pb::Context) -> StateResult<()> {
        let blob = context.encode_to_vec();
        self.write(Commit::Durable, |conn| {
            live_run(conn, run_id)?.ok_or(StateError::RunNotFound(run_id))?;
            conn.prepare_cached("INSERT OR REPLACE INTO context (run_id, context) VALUES (?1, ?2)")?
                .execute(params![sql_id(run_id), blob])?;
            Ok(())
        })
    }

    fn federation_options(&self, run_id: u64) -> StateResult<Option<pb::ConfigRecord>> {
        self.read(|conn| {
            let blob: Option<Vec<u8>> = conn
                .prepare_cached("SELECT federation_options FROM run WHERE run_id = ?1")?
                .query_row([sql_id(run_id)], |r| r.get(0))
                .optional()?;
            blob.map(|b| decode("federation options", &b)).transpose()
        })
    }

    fn add_log(&self, run_id: u64, text: &str) -> StateResult<()> {
        self.write(Commit::Durable, |conn| {
            if !run_exists(conn, run_id)? {
                return Err(StateError::RunNotFound(run_id));
            }
            let last: Option<f64> = conn
                .prepare_cached("SELECT max(stamp) FROM log WHERE run_id = ?1")?
                .query_row([sql_id(run_id)], |r| r.get(0))?;
            // Stamps strictly increase so "after this stamp" never skips or repeats a line.
            let stamp = now_secs().max(last.unwrap_or(0.0) + 1e-6);
            conn.prepare_cached("INSERT INTO log (run_id, stamp, text) VALUES (?1, ?2, ?3)")?.execute(params![
                sql_id(run_id),
                stamp,
                text
            ])?;
            Ok(())
        })
    }

    fn logs_after(&self, run_id: u64, after: f64) -> StateResult<(String, f64)> {
        self.read(|conn| {
            if !run_exists(conn, run_id)? {
                return Err(StateError::RunNotFound(run_id));
            }
            let mut stmt =
                conn.prepare_cached("SELECT text, stamp FROM log WHERE run_id = ?1 AND stamp > ?2 ORDER BY seq")?;
            let mut rows = stmt.query(params![sql_id(run_id), after])?;
            let (mut text, mut latest) = (String::new(), 0.0);
            while let Some(row) = rows.next()? {
                text.push_str(&row.get::<_, String>(0)?);
                latest = row.get(1)?;
            }
            Ok((text, latest))
        })
    }

    fn store_fab(&self, hash: &str, content: Bytes) -> StateResult<()> {
        self.write(Commit::Durable, |conn| {
            conn.prepare_cached("INSERT INTO fab (hash, content) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING")?
                .execute(params![hash, &content[..]])?;
            Ok(())
        })
    }

    fn fab(&self, hash: &str) -> StateResult<Option<Bytes>> {
        self.read(|conn| {
            let blob: Option<Vec<u8>> = conn
                .prepare_cached("SELECT content FROM fab WHERE hash = ?1")?
                .query_row([hash], |r| r.get(0))
                .optional()?;
            Ok(blob.map(Bytes::from))
        })
    }

    fn create_node(&self, heartbeat_interval: f64) -> StateResult<u64> {
        self.write(Commit::Durable, |conn| {
            let node_id = random_id(|id| node_exists(conn, id))?;
            conn.prepare_cached("INSERT INTO node (node_id, online_until) VALUES (?1, ?2)")?
                .execute(params![sql_id(node_id), sql_time(now_secs() + heartbeat_interval)])?;
            Ok(node_id)
        })
    }

    fn delete_node(&self, node_id: u64) -> StateResult<()> {
        self.write(Commit::Durable, |conn| {
            // Its key bindings go with it (ON DELETE CASCADE).
            let deleted = conn.prepare_cached("DELETE FROM node WHERE node_id = ?1")?.execute([sql_id(node_id)])?;
            if deleted == 0 {
                return Err(StateError::NodeNotFound(node_id));
            }
            Ok(())
        })
    }

    fn ack_node_heartbeat(&self, node_id: u64, interval: f64) -> StateResult<bool> {
        self.write(Commit::Relaxed, |conn| {
            let until = sql_time(now_secs() + HEARTBEAT_PATIENCE * interval);
            let updated = conn
                .prepare_cached("UPDATE node SET online_until = ?2 WHERE node_id = ?1")?
                .execute(params![sql_id(node_id), until])?;
            Ok(updated > 0)
        })
    }

    fn online_nodes(&self) -> StateResult<Vec<u64>> {
        let now = now_secs();
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT node_id FROM node WHERE online_until > ?1")?;
            let mut ids = stmt.query_map([now], |r| r.get::<_, i64>(0).map(id_of))?.collect::<Result<Vec<_>, _>>()?;
            ids.sort_unstable();
            Ok(ids)
        })
    }

    fn bind_public_key(&self, node_id: u64, key: &[u8]) -> StateResult<()> {
        self.write(Commit::Durable, |conn| {
            let in_use: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM node_key WHERE public_key = ?1)")?
                .query_row([key], |r| r.get(0))?;
            if in_use {
                return Err(StateError::PublicKeyInUse);
            }
            if !node_exists(conn, node_id)? {
                return Err(StateError::NodeNotFound(node_id));
            }
            conn.prepare_cached("INSERT INTO node_key (public_key, node_id) VALUES (?1, ?2)")?
                .execute(params![key, sql_id(node_id)])?;
            Ok(())
        })
    }

    fn node_for_key(&self, key: &[u8]) -> StateResult<Option<u64>> {
        self.read(|conn| {
            let id: Option<i64> = conn
                .prepare_cached("SELECT node_id FROM node_key WHERE public_key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?;
            Ok(id.map(id_of))
        })
    }

    fn store_instruction(&self, msg: StoredMessage) -> StateResult<Result<String, InstructionRejected>> {
        let meta = msg.metadata().clone();
        let (message, tree) = (msg.message.encode_to_vec(), msg.tree.encode_to_vec());
        self.write(Commit::Durable, |conn| {
            if !run_exists(conn, meta.run_id)? {
                return Ok(Err(InstructionRejected::UnknownRun(meta.run_id)));
            }
            if !node_exists(conn, meta.dst_node_id)? {
                return Ok(Err(InstructionRejected::UnknownNode(meta.dst_node_id)));
            }
            // The id is the message's content hash: storing it again changes nothing.
            conn.prepare_cached(
                "INSERT INTO instruction (message_id, run_id, dst_node_id, expires_at, message, tree) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (message_id) DO NOTHING",
            )?
            .execute(params![
                meta.message_id,
                sql_id(meta.run_id),
                sql_id(meta.dst_node_id),
                sql_time(meta.created_at + meta.ttl),
                message,
                tree,
            ])?;
            Ok(Ok(meta.message_id.clone()))
        })
    }

    fn next_instruction(&self, node_id: u64) -> StateResult<Option<StoredMessage>> {
        let now = now_secs();
        self.write(Commit::Durable, |conn| {
            // A NULL expiry is a NaN one, which never counts as expired.
            let row = conn
                .prepare_cached(
                    "SELECT seq, message, tree FROM instruction WHERE dst_node_id = ?1 AND delivered = 0 \
                     AND (expires_at IS NULL OR expires_at >= ?2) ORDER BY seq LIMIT 1",
                )?
                .query_row(params![sql_id(node_id), now], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?))
                })
                .optional()?;
            let Some((seq, message, tree)) = row else {
                return Ok(None);
            };
            conn.prepare_cached("UPDATE instruction SET delivered = 1 WHERE seq = ?1")?.execute([seq])?;
            decode_message(&message, &tree).map(Some)
        })
    }

    fn store_reply(&self, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>> {
        let now = now_secs();
        let meta = msg.metadata().clone();
        let (message, tree) = (msg.message.encode_to_vec(), msg.tree.encode_to_vec());
        self.write(Commit::Durable, |conn| {
            let ins_id = meta.reply_to_message_id.clone();
            let Some(ins) = load_instruction(conn, &ins_id)? else {
                let gone: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM gone WHERE run_id = ?1 AND message_id = ?2)")?
                    .query_row(params![sql_id(meta.run_id), ins_id], |r| r.get(0))?;
                return Ok(Err(if gone {
                    ReplyRejected::Gone(ins_id)
                } else {
                    ReplyRejected::UnknownInstruction(ins_id)
                }));
            };
            if let Err(rejected) = check_reply(ins.metadata(), &meta, now) {
                return Ok(Err(rejected));
            }
            // A newer reply to the same instruction replaces the older one.
            conn.prepare_cached(
                "INSERT INTO reply (instruction_id, message, tree) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (instruction_id) DO UPDATE SET message = excluded.message, tree = excluded.tree",
            )?
            .execute(params![ins_id, message, tree])?;
            Ok(Ok(meta.message_id.clone()))
        })
    }

    fn take_replies(&self, instruction_ids: &[String]) -> StateResult<Vec<ReplyLookup>> {
        let now = now_secs();
        self.write(Commit::Durable, |conn| {
            let mut out = Vec::with_capacity(instruction_ids.len());
            for id in instruction_ids {
                let lookup = lookup_reply(conn, id, now)?;
                if !matches!(lookup, ReplyLookup::Waiting) {
                    remove_instruction(conn, id)?;
                }
                out.push(lookup);
            }
            Ok(out)
        })
    }

    fn delete_messages(&self, instruction_ids: &[String]) -> StateResult<()> {
        self.write(Commit::Durable, |conn| {
            for id in instruction_ids {
                remove_instruction(conn, id)?;
            }
            Ok(())
        })
    }

    fn instruction_ids_of_run(&self, run_id: u64) -> StateResult<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT message_id FROM instruction WHERE run_id = ?1 ORDER BY seq")?;
            let ids = stmt.query_map([sql_id(run_id)], |r| r.get(0))?;
            Ok(ids.collect::<Result<Vec<String>, _>>()?)
        })
    }

    fn has_instruction_for(&self, node_id: u64) -> StateResult<bool> {
        let now = now_secs();
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM instruction WHERE dst_node_id = ?1 AND delivered = 0 \
                     AND (expires_at IS NULL OR expires_at >= ?2))",
                )?
                .query_row(params![sql_id(node_id), now], |r| r.get(0))?)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;

    use super::super::conformance::{self, message};
    use super::*;

    fn open(path: &Path) -> SqliteState {
        SqliteState::open(path).unwrap()
    }

    fn backend_error(path: &Path) -> String {
        match SqliteState::open(path) {
            Err(StateError::Backend(msg)) => msg,
            Err(other) => panic!("expected a backend error, got {other:?}"),
            Ok(_) => panic!("{} opened as a state database", path.display()),
        }
    }

    #[test]
    fn sqlite_state_passes_the_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = Cell::new(0);
        conformance::run_all(&|| {
            n.set(n.get() + 1);
            Box::new(open(&dir.path().join(format!("state-{}.db", n.get()))))
        });
    }

    #[test]
    fn reopened_sqlite_state_passes_the_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = Cell::new(0);
        conformance::run_all(&|| {
            n.set(n.get() + 1);
            let path = dir.path().join(format!("state-{}.db", n.get()));
            drop(open(&path));
            Box::new(open(&path))
        });
    }

    #[test]
    fn durability_settings_are_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(&dir.path().join("s.db"));
        let node = state.create_node(10.0).unwrap();
        // A relaxed commit puts FULL back afterwards.
        assert!(state.ack_node_heartbeat(node, 10.0).unwrap());
        let conn = state.lock();
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
        assert_eq!(pragma("synchronous"), "Integer(2)", "FULL");
        assert_eq!(pragma("foreign_keys"), "Integer(1)");
        assert_eq!(pragma("user_version"), format!("Integer({SCHEMA_VERSION})"));
        assert_eq!(pragma("application_id"), format!("Integer({APPLICATION_ID})"));
    }

    fn tree(id: &str) -> pb::ObjectTree {
        pb::ObjectTree {
            object_id: id.into(),
            children: vec![
                pb::ObjectTree { object_id: format!("{id}-content"), children: vec![] },
                pb::ObjectTree {
                    object_id: format!("{id}-record"),
                    children: vec![pb::ObjectTree { object_id: format!("{id}-array"), children: vec![] }],
                },
            ],
        }
    }

    fn with_tree(mut msg: StoredMessage) -> StoredMessage {
        msg.tree = tree(msg.id());
        msg
    }

    #[test]
    fn everything_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = open(&path);
        let new = NewRun {
            fab_id: "acme/app".into(),
            fab_version: "1.2.3".into(),
            fab_hash: "c0ffee".into(),
            override_config: HashMap::from([
                ("lr".to_string(), pb::Scalar { scalar: Some(pb::scalar::Scalar::Double(0.01)) }),
                ("big".to_string(), pb::Scalar { scalar: Some(pb::scalar::Scalar::Uint64(u64::MAX)) }),
            ]),
            federation_options: pb::ConfigRecord {
                items: vec![pb::config_record::Item {
                    key: "num-supernodes".into(),
                    value: Some(pb::ConfigRecordValue { value: Some(pb::config_record_value::Value::Sint64(10)) }),
                }],
            },
            flwr_aid: "alice".into(),
        };
        // A running run with a heartbeat and a context.
        let running = state.create_run(new.clone()).unwrap();
        assert_eq!(state.claim_pending_run().unwrap(), Some(running));
        assert!(state.update_run_status(running, status::status(status::RUNNING, "", "")).unwrap());
        assert!(state.ack_app_heartbeat(running, 600.0).unwrap());
        let context = pb::Context {
            run_id: running,
            node_id: 0,
            node_config: HashMap::new(),
            state: Some(pb::RecordDict {
                items: vec![pb::record_dict::Item {
                    key: "round".into(),
                    value: Some(pb::record_dict::item::Value::ConfigRecord(new.federation_options.clone())),
                }],
            }),
            run_config: new.override_config.clone(),
        };
        state.set_serverapp_context(running, context.clone()).unwrap();
        state.add_log(running, "running...\n").unwrap();
        // A finished run with logs.
        let finished = state.create_run(NewRun { flwr_aid: "bob".into(), ..new.clone() }).unwrap();
        assert_eq!(state.claim_pending_run().unwrap(), Some(finished));
        assert!(state.update_run_status(finished, status::status(status::RUNNING, "", "")).unwrap());
        for i in 0..50 {
            state.add_log(finished, &format!("round {i}\n")).unwrap();
        }
        assert!(state
            .update_run_status(finished, status::status(status::FINISHED, status::COMPLETED, "all good"))
            .unwrap());
        // A pending run.
        let pending = state.create_run(new.clone()).unwrap();
        // Nodes with keys.
        let a = state.create_node(600.0).unwrap();
        let b = state.create_node(600.0).unwrap();
        state.bind_public_key(a, b"key-a").unwrap();
        state.bind_public_key(b, b"key-b").unwrap();
        assert!(state.ack_node_heartbeat(b, 600.0).unwrap());
        // Messages: one undelivered, one delivered and answered, one deleted.
        let undelivered = with_tree(message(running, 1, a, "", "undelivered", 600.0));
        state.store_instruction(undelivered.clone()).unwrap().unwrap();
        state.store_instruction(with_tree(message(running, 1, b, "", "answered", 600.0))).unwrap().unwrap();
        assert_eq!(state.next_instruction(b).unwrap().unwrap().id(), "answered");
        let reply = with_tree(message(running, b, 1, "answered", "reply-b", 300.0));
        state.store_reply(reply.clone()).unwrap().unwrap();
        state.store_instruction(message(running, 1, a, "", "dropped", 600.0)).unwrap().unwrap();
        state.delete_messages(&["dropped".to_string()]).unwrap();
        state.store_fab("c0ffee", Bytes::from_static(b"PK\x03\x04 a fab")).unwrap();

        let runs: Vec<_> = [running, finished, pending].iter().map(|id| state.run(*id).unwrap().unwrap()).collect();
        let logs = state.logs_after(finished, 0.0).unwrap();
        let running_logs = state.logs_after(running, 0.0).unwrap();
        let run_ids = state.run_ids().unwrap();
        let online = state.online_nodes().unwrap();
        drop(state);

        let state = open(&path);
        assert_eq!(state.run_ids().unwrap(), run_ids);
        for run in &runs {
            assert_eq!(state.run(run.run_id).unwrap().as_ref(), Some(run), "run {} survives", run.run_id);
        }
        assert_eq!(runs[0].status, Some(status::status(status::RUNNING, "", "")));
        assert_eq!(runs[1].status, Some(status::status(status::FINISHED, status::COMPLETED, "all good")));
        assert_eq!(state.serverapp_context(running).unwrap(), Some(context));
        assert_eq!(state.federation_options(pending).unwrap(), Some(new.federation_options.clone()));
        assert_eq!(state.logs_after(finished, 0.0).unwrap(), logs);
        assert_eq!(logs.0, (0..50).map(|i| format!("round {i}\n")).collect::<String>());
        assert_eq!(state.logs_after(running, 0.0).unwrap(), running_logs);
        assert_eq!(state.pending_run_ids().unwrap(), vec![pending]);
        assert_eq!(state.online_nodes().unwrap(), online);
        assert_eq!(state.node_for_key(b"key-a").unwrap(), Some(a));
        assert_eq!(state.node_for_key(b"key-b").unwrap(), Some(b));
        assert!(matches!(state.bind_public_key(pending, b"key-a"), Err(StateError::PublicKeyInUse)));
        assert_eq!(state.fab("c0ffee").unwrap().unwrap(), Bytes::from_static(b"PK\x03\x04 a fab"));
        assert_eq!(state.instruction_ids_of_run(running).unwrap(), ["undelivered", "answered"]);
        // The undelivered instruction is delivered once, as it was stored.
        assert!(state.has_instruction_for(a).unwrap());
        assert_eq!(state.next_instruction(a).unwrap(), Some(undelivered));
        assert_eq!(state.next_instruction(a).unwrap(), None);
        assert_eq!(state.next_instruction(b).unwrap(), None, "the delivered flag survives");
        // The stored reply is still pullable, once.
        assert_eq!(state.take_replies(&["answered".to_string()]).unwrap(), vec![ReplyLookup::Reply(reply)]);
        assert_eq!(
            state.store_reply(message(running, a, 1, "dropped", "r", 30.0)).unwrap(),
            Err(ReplyRejected::Gone("dropped".into())),
            "tombstones survive"
        );
        // Writing after the restart continues where the state left off.
        state.add_log(finished, "after restart\n").unwrap();
        assert_eq!(state.logs_after(finished, logs.1).unwrap().0, "after restart\n");
        state.store_reply(message(running, a, 1, "undelivered", "reply-a", 30.0)).unwrap().unwrap();
        assert_eq!(state.claim_pending_run().unwrap(), Some(pending));
        let another = state.create_run(NewRun::default()).unwrap();
        drop(state);

        let state = open(&path);
        assert_eq!(state.run_ids().unwrap().len(), 4);
        assert_eq!(state.run(pending).unwrap().unwrap().status, Some(status::status(status::STARTING, "", "")));
        assert_eq!(state.pending_run_ids().unwrap(), vec![another]);
        assert!(matches!(&state.take_replies(&["undelivered".to_string()]).unwrap()[0],
            ReplyLookup::Reply(m) if m.id() == "reply-a"));
        assert!(state.instruction_ids_of_run(running).unwrap().is_empty());
    }

    #[test]
    fn a_heartbeat_missed_while_down_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = open(&path);
        let silent = state.create_run(NewRun::default()).unwrap();
        let alive = state.create_run(NewRun::default()).unwrap();
        let never = state.create_run(NewRun::default()).unwrap();
        for run_id in [silent, alive, never] {
            assert_eq!(state.claim_pending_run().unwrap(), Some(run_id));
            assert!(state.update_run_status(run_id, status::status(status::RUNNING, "", "")).unwrap());
        }
        // Deadline in one second: long enough to read it back as running under load.
        assert!(state.ack_app_heartbeat(silent, 0.5).unwrap());
        assert!(state.ack_app_heartbeat(alive, 600.0).unwrap());
        assert_eq!(state.run(silent).unwrap().unwrap().status.unwrap().status, status::RUNNING);
        drop(state);
        std::thread::sleep(Duration::from_millis(1200));

        let state = open(&path);
        let run = state.run(silent).unwrap().unwrap();
        assert_eq!(run.status, Some(status::status(status::FINISHED, status::FAILED, NO_HEARTBEAT_DETAILS)));
        assert!(!run.finished_at.is_empty());
        assert!(!state.ack_app_heartbeat(silent, 10.0).unwrap(), "too late to revive");
        assert_eq!(state.run(alive).unwrap().unwrap().status.unwrap().status, status::RUNNING);
        assert_eq!(
            state.run(never).unwrap().unwrap().status.unwrap().status,
            status::RUNNING,
            "a run that never sent a heartbeat has no deadline"
        );
        drop(state);

        let state = open(&path);
        assert_eq!(state.run(silent).unwrap().unwrap(), run, "the failure was recorded, not recomputed");
    }

    const CRASH_ENV: &str = "SEPAL_SQLITE_CRASH_DB";

    /// Run by [`acknowledged_writes_survive_a_crash`] in a child process: writes, then
    /// dies without closing the database. A no-op in an ordinary test run.
    #[test]
    fn crash_writer_child() {
        let Some(path) = std::env::var_os(CRASH_ENV) else {
            return;
        };
        let state = open(Path::new(&path));
        let run_id = state.create_run(NewRun { fab_id: "acme/crash".into(), ..Default::default() }).unwrap();
        let node = state.create_node(600.0).unwrap();
        state.bind_public_key(node, b"crash-key").unwrap();
        state.add_log(run_id, "last words\n").unwrap();
        state.store_instruction(message(run_id, 1, node, "", "crash-ins", 600.0)).unwrap().unwrap();
        std::process::abort();
    }

    #[test]
    fn acknowledged_writes_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "state::sqlite::tests::crash_writer_child", "--nocapture", "--test-threads=1"])
            .env(CRASH_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child was meant to abort");
        assert!(dir.path().join("state.db-wal").exists(), "the child died before closing the database");
        let state = open(&path);
        let run_id = *state.run_ids().unwrap().first().expect("the run survived");
        assert_eq!(state.run(run_id).unwrap().unwrap().fab_id, "acme/crash");
        assert_eq!(state.logs_after(run_id, 0.0).unwrap().0, "last words\n");
        let node = state.node_for_key(b"crash-key").unwrap().expect("the key binding survived");
        assert_eq!(state.next_instruction(node).unwrap().unwrap().id(), "crash-ins");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        let text = "these are my notes, not an SQLite database\n".repeat(100);
        std::fs::write(&path, &text).unwrap();
        let msg = backend_error(&path);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("not a database"), "{msg}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file is left alone");
        let short = dir.path().join("short");
        std::fs::write(&short, "junk").unwrap();
        let msg = backend_error(&short);
        assert!(msg.contains(&short.display().to_string()) && msg.contains("not a database"), "{msg}");
    }

    #[test]
    fn an_unwritable_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("state.db");
        let msg = backend_error(&missing);
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
        let msg = backend_error(dir.path());
        assert!(msg.contains(&dir.path().display().to_string()) && msg.contains("directory"), "{msg}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let under_file = file.join("state.db");
        let msg = backend_error(&under_file);
        assert!(msg.contains(&under_file.display().to_string()) && msg.contains("is not a directory"), "{msg}");
    }

    #[test]
    fn other_databases_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Flower's own database: tables, no Sepal marks.
        let flower = dir.path().join("flower.db");
        Connection::open(&flower).unwrap().execute_batch("CREATE TABLE run (run_id INTEGER UNIQUE);").unwrap();
        let msg = backend_error(&flower);
        assert!(msg.contains(&flower.display().to_string()) && msg.contains("not a Sepal state database"), "{msg}");
        let mode: String =
            Connection::open(&flower).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete", "a refused database is left as it was");
        // Another program's database.
        let other = dir.path().join("other.db");
        Connection::open(&other).unwrap().execute_batch("PRAGMA application_id = 42;").unwrap();
        let msg = backend_error(&other);
        assert!(msg.contains("another program"), "{msg}");
        // A newer Sepal's database.
        let newer = dir.path().join("newer.db");
        drop(open(&newer));
        Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
        let msg = backend_error(&newer);
        assert!(msg.contains(&newer.display().to_string()), "{msg}");
        assert!(msg.contains("schema version 99 is newer") && msg.contains(&format!("({SCHEMA_VERSION})")), "{msg}");
        // An empty file is a new database.
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        let state = open(&empty);
        assert!(state.run_ids().unwrap().is_empty());
    }
}
