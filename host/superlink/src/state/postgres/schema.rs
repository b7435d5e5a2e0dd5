//! The schema, as an ordered list of migrations, and the setup that applies the missing
//! ones or refuses a database this code does not know.
//!
//! `sepal_schema` lists the migrations applied (version, what it did, when). Opening a
//! database applies each missing migration in its own transaction, under a transaction-
//! scoped advisory lock, so that replicas starting together apply each exactly once (the
//! second waits, then finds it applied). A database whose version is newer than this
//! build's is refused: an older Sepal must not write a schema it does not understand.
//!
//! A later version extends [`MIGRATIONS`] with a new entry; it never edits an old one.
//!
//! # Tables (version 1; the same as the SQLite backend's, see `sqlite::schema`)
//!
//! `run`, `context`, `log`, `fab`, `node`, `node_key`, `instruction`, `reply`, `gone` and
//! `object` (payload objects of messages in flight, so that any replica can serve them).
//! Ids are `bigint` (the `u64` bit for bit), times `double precision` (NULL for NaN),
//! protobuf values and log text `bytea` (a log line may hold NUL, which `text` refuses).
//!
//! Version 2 adds `run_lease`: which replica runs a run's ServerApp, and until when.

use deadpool_postgres::Pool;

use super::connect;
use super::sql::{exec, one, Tx};
use crate::clock::now_iso;
use crate::state::{StateError, StateResult};

/// One step of the schema.
struct Migration {
    version: i32,
    what: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first; versions count up from 1.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, what: "the SuperLink state tables", sql: V1 },
    Migration { version: 2, what: "leases on runs' ServerApps (replicas)", sql: V2 },
];

/// The schema this code reads and writes.
pub const SCHEMA_VERSION: i32 = 2;
const _: () = assert!(MIGRATIONS[MIGRATIONS.len() - 1].version == SCHEMA_VERSION);

/// The advisory lock taken while migrating ("SEPL" + "SCHM").
const MIGRATION_LOCK: i64 = 0x5345_504C_5343_484D;

const V1: &str = "
CREATE TABLE run (
    seq                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id             bigint NOT NULL UNIQUE,
    fab_id             text NOT NULL,
    fab_version        text NOT NULL,
    fab_hash           text NOT NULL,
    override_config    bytea NOT NULL,
    federation_options bytea NOT NULL,
    flwr_aid           text NOT NULL,
    status             text NOT NULL,
    sub_status         text NOT NULL,
    details            text NOT NULL,
    pending_at         text NOT NULL,
    starting_at        text NOT NULL,
    running_at         text NOT NULL,
    finished_at        text NOT NULL,
    active_until       double precision
);
CREATE INDEX run_by_status ON run (status, seq);

CREATE TABLE context (
    run_id  bigint PRIMARY KEY REFERENCES run (run_id) ON DELETE CASCADE,
    context bytea NOT NULL
);

CREATE TABLE log (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES run (run_id) ON DELETE CASCADE,
    stamp  double precision NOT NULL,
    text   bytea NOT NULL
);
CREATE INDEX log_by_run ON log (run_id, stamp);

CREATE TABLE fab (
    hash    text PRIMARY KEY,
    content bytea NOT NULL
);

CREATE TABLE node (
    node_id      bigint PRIMARY KEY,
    online_until double precision
);

CREATE TABLE node_key (
    public_key bytea PRIMARY KEY,
    node_id    bigint NOT NULL REFERENCES node (node_id) ON DELETE CASCADE
);
CREATE INDEX node_key_by_node ON node_key (node_id);

CREATE TABLE instruction (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  text NOT NULL UNIQUE,
    run_id      bigint NOT NULL REFERENCES run (run_id) ON DELETE CASCADE,
    dst_node_id bigint NOT NULL,
    expires_at  double precision,
    delivered   boolean NOT NULL DEFAULT false,
    message     bytea NOT NULL,
    tree        bytea NOT NULL
);
CREATE INDEX instruction_by_node ON instruction (dst_node_id, delivered, seq);
CREATE INDEX instruction_by_run ON instruction (run_id, seq);

CREATE TABLE reply (
    instruction_id text PRIMARY KEY REFERENCES instruction (message_id) ON DELETE CASCADE,
    message        bytea NOT NULL,
    tree           bytea NOT NULL
);

CREATE TABLE object (
    object_id text PRIMARY KEY,
    content   bytea NOT NULL
);

CREATE TABLE gone (
    run_id     bigint NOT NULL,
    message_id text NOT NULL,
    PRIMARY KEY (run_id, message_id)
);
";

/// Which replica runs a run's ServerApp, until when (the database's clock).
const V2: &str = "
CREATE TABLE run_lease (
    run_id     bigint PRIMARY KEY REFERENCES run (run_id) ON DELETE CASCADE,
    owner      text NOT NULL,
    expires_at timestamptz NOT NULL
);
";

/// Applies the migrations the database lacks, each in its own transaction.
pub(super) async fn migrate(pool: Pool) -> StateResult<()> {
    let mut conn = connect(&pool).await?;
    for migration in MIGRATIONS {
        let tx = conn.transaction().await?;
        let current = locked_version(&tx).await?;
        if current >= migration.version {
            tx.commit().await?;
            continue;
        }
        if current == 0 {
            refuse_foreign_tables(&tx).await?;
        }
        tx.batch_execute(migration.sql).await?;
        let sql = "INSERT INTO sepal_schema (version, what, applied_at) VALUES ($1, $2, $3)";
        exec(&tx, sql, &[&migration.version, &migration.what, &now_iso()]).await?;
        tx.commit().await?;
        tracing::info!(version = migration.version, what = migration.what, "PostgreSQL state schema migrated");
    }
    Ok(())
}

/// Takes the migration lock (held until the transaction ends), makes sure the version
/// table exists, and returns the version applied so far; refuses a newer one.
async fn locked_version(tx: &Tx<'_>) -> StateResult<i32> {
    one(tx, "SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sepal_schema (
            version    integer PRIMARY KEY,
            what       text NOT NULL,
            applied_at text NOT NULL
        )",
    )
    .await?;
    let version: i32 = one(tx, "SELECT COALESCE(MAX(version), 0) FROM sepal_schema", &[]).await?.try_get(0)?;
    if version > SCHEMA_VERSION {
        return Err(StateError::Backend(format!(
            "its schema version {version} is newer than this Sepal understands ({SCHEMA_VERSION}); \
             run a newer Sepal or use another database"
        )));
    }
    Ok(version)
}

/// Refuses a database without a Sepal schema that already has tables of the names Sepal
/// would create (another program's, or a Flower database).
async fn refuse_foreign_tables(tx: &Tx<'_>) -> StateResult<()> {
    let ours = ["run", "context", "log", "fab", "node", "node_key", "instruction", "reply", "object", "gone"];
    let ours: Vec<String> = ours.iter().map(|s| s.to_string()).collect();
    let sql = "SELECT COUNT(*) FROM information_schema.tables \
               WHERE table_schema = current_schema() AND table_name = ANY($1)";
    let clashes: i64 = one(tx, sql, &[&ours]).await?.try_get(0)?;
    if clashes > 0 {
        return Err(StateError::Backend(
            "it has tables named like Sepal's but no Sepal schema version; it is not a Sepal state database".into(),
        ));
    }
    Ok(())
}
