//! The SQLite [`LinkState`] (Flower's `--database <file>`), with Sepal's own schema.
//!
//! This file opens the database and runs each call in one transaction; `schema` holds
//! the tables, `codec` how values are stored in them, and one module per area (`runs`,
//! `logs`, `fabs`, `nodes`, `messages`, `objects`) the SQL of its calls.
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

pub(in crate::state) mod codec;
mod fabs;
mod logs;
mod messages;
mod nodes;
mod objects;
mod runs;
mod schema;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use sepal_proto::pb;

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

use super::{
    InstructionRejected, LinkState, LiveMessage, NewRun, Pick, ReplyLookup, ReplyRejected, StateError, StateResult,
    StoredMessage,
};

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
        schema::init(&mut conn).map_err(|e| {
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

// Each call picks its transaction and commit mode in its area module.
impl LinkState for SqliteState {
    fn create_run(&self, new: NewRun) -> StateResult<u64> {
        runs::create(self, new)
    }

    fn run(&self, run_id: u64) -> StateResult<Option<pb::Run>> {
        runs::get(self, run_id)
    }

    fn run_ids(&self) -> StateResult<Vec<u64>> {
        runs::ids(self)
    }

    fn update_run_status(&self, run_id: u64, status: pb::RunStatus) -> StateResult<bool> {
        runs::update_status(self, run_id, status)
    }

    fn claim_pending_run(&self) -> StateResult<Option<u64>> {
        runs::claim_pending(self)
    }

    fn pending_run_ids(&self) -> StateResult<Vec<u64>> {
        runs::pending_ids(self)
    }

    fn active_run_ids(&self) -> StateResult<Vec<u64>> {
        runs::active_ids(self)
    }

    fn ack_app_heartbeat(&self, run_id: u64, interval: f64) -> StateResult<bool> {
        runs::ack_heartbeat(self, run_id, interval)
    }

    fn serverapp_context(&self, run_id: u64) -> StateResult<Option<pb::Context>> {
        runs::context(self, run_id)
    }

    fn set_serverapp_context(&self, run_id: u64, context: pb::Context) -> StateResult<()> {
        runs::set_context(self, run_id, context)
    }

    fn federation_options(&self, run_id: u64) -> StateResult<Option<pb::ConfigRecord>> {
        runs::federation_options(self, run_id)
    }

    fn add_log(&self, run_id: u64, text: &str) -> StateResult<()> {
        logs::add(self, run_id, text)
    }

    fn logs_after(&self, run_id: u64, after: f64) -> StateResult<(String, f64)> {
        logs::after(self, run_id, after)
    }

    fn store_fab(&self, hash: &str, content: Bytes) -> StateResult<()> {
        fabs::store(self, hash, content)
    }

    fn fab(&self, hash: &str) -> StateResult<Option<Bytes>> {
        fabs::get(self, hash)
    }

    fn create_node(&self, heartbeat_interval: f64) -> StateResult<u64> {
        nodes::create(self, heartbeat_interval)
    }

    fn delete_node(&self, node_id: u64) -> StateResult<()> {
        nodes::delete(self, node_id)
    }

    fn ack_node_heartbeat(&self, node_id: u64, interval: f64) -> StateResult<bool> {
        nodes::set_liveness(self, node_id, interval, "UPDATE node SET online_until = ?2 WHERE node_id = ?1")
    }

    fn keep_node_online(&self, node_id: u64, interval: f64) -> StateResult<bool> {
        let sql = "UPDATE node SET online_until = MAX(online_until, ?2) WHERE node_id = ?1";
        nodes::set_liveness(self, node_id, interval, sql)
    }

    fn online_nodes(&self) -> StateResult<Vec<u64>> {
        nodes::online(self)
    }

    fn bind_public_key(&self, node_id: u64, key: &[u8]) -> StateResult<()> {
        nodes::bind_key(self, node_id, key)
    }

    fn node_for_key(&self, key: &[u8]) -> StateResult<Option<u64>> {
        nodes::for_key(self, key)
    }

    fn store_instruction(&self, msg: StoredMessage) -> StateResult<Result<String, InstructionRejected>> {
        messages::store_instruction(self, msg)
    }

    fn next_instruction(&self, node_id: u64, pick: &Pick) -> StateResult<Option<StoredMessage>> {
        messages::next_instruction(self, node_id, pick)
    }

    fn store_reply(&self, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>> {
        messages::store_reply(self, msg)
    }

    fn take_replies(&self, instruction_ids: &[String]) -> StateResult<Vec<ReplyLookup>> {
        messages::take_replies(self, instruction_ids)
    }

    fn delete_messages(&self, instruction_ids: &[String]) -> StateResult<()> {
        messages::delete(self, instruction_ids)
    }

    fn instruction_ids_of_run(&self, run_id: u64) -> StateResult<Vec<String>> {
        messages::instruction_ids_of_run(self, run_id)
    }

    fn instruction_count(&self, run_id: u64) -> StateResult<usize> {
        messages::instruction_count(self, run_id)
    }

    fn drop_run_messages(&self, run_id: u64) -> StateResult<usize> {
        messages::drop_run(self, run_id)
    }

    fn live_messages(&self) -> StateResult<Vec<LiveMessage>> {
        messages::live(self)
    }

    fn keeps_objects(&self) -> bool {
        true
    }

    fn keep_objects(&self, objects: &[(String, Bytes)]) -> StateResult<()> {
        objects::keep(self, objects)
    }

    fn kept_objects(&self, ids: &[String]) -> StateResult<Vec<(String, Bytes)>> {
        objects::kept(self, ids)
    }

    fn forget_objects(&self, ids: &[String]) -> StateResult<()> {
        objects::forget(self, ids)
    }

    fn kept_object_sizes(&self) -> StateResult<Vec<(String, u64)>> {
        objects::sizes(self)
    }
}
