//! The database's schema (DDL), and the setup that creates it or refuses a file that
//! is not a Sepal state database of a version this code knows.
//!
//! # Schema (version 2, `PRAGMA user_version`; `PRAGMA application_id` marks the file)
//!
//! Version 2 added `object`; a version 1 file gets it when opened (every table is created
//! if missing), so opening upgrades it.
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
//! | `object` | payload objects of messages in flight, by object id (the sha256 of the bytes) |

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::state::{StateError, StateResult};

/// The schema this code reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 2;

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

CREATE TABLE IF NOT EXISTS object (
    object_id TEXT PRIMARY KEY,
    content   BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS gone (
    run_id     INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (run_id, message_id)
) WITHOUT ROWID;
";

/// Sets the connection up and creates or checks the schema.
pub(super) fn init(conn: &mut Connection) -> StateResult<()> {
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
