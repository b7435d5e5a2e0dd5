//! Runs: creating, reading and moving them through their statuses, their ServerApp
//! heartbeat deadline, context and federation options. A run that a call changes is
//! locked (`FOR NO KEY UPDATE`) from the read to the commit, so that replicas apply
//! Flower's transition rules one after the other, never on a stale status.

use deadpool_postgres::Pool;
use prost::Message as _;
use sepal_proto::pb;
use tokio_postgres::Row;

use super::connect;
use super::sql::{exec, fresh_id, one, row, rows, Tx};
use crate::clock::{now_iso, now_secs};
use crate::state::sqlite::codec::{decode, id_of, sql_id, sql_time, time_of, ScalarMap};
use crate::state::status::{self, RunState};
use crate::state::{NewRun, StateError, StateResult, HEARTBEAT_NEVER, HEARTBEAT_PATIENCE};

/// A run row as the state keeps it.
struct RunRow {
    run: pb::Run,
    active_until: f64,
}

macro_rules! select_run {
    ($lock:literal) => {
        concat!(
            "SELECT run_id, fab_id, fab_version, fab_hash, override_config, flwr_aid, status, sub_status, ",
            "details, pending_at, starting_at, running_at, finished_at, active_until FROM run WHERE run_id = $1",
            $lock
        )
    };
}

fn run_of(r: &Row) -> StateResult<RunRow> {
    let text = |i: usize| r.try_get::<_, String>(i);
    let override_config = decode::<ScalarMap>("override config", r.try_get(4)?)?.entries;
    let run = pb::Run {
        run_id: id_of(r.try_get(0)?),
        fab_id: text(1)?,
        fab_version: text(2)?,
        fab_hash: text(3)?,
        override_config,
        flwr_aid: text(5)?,
        status: Some(pb::RunStatus { status: text(6)?, sub_status: text(7)?, details: text(8)? }),
        pending_at: text(9)?,
        starting_at: text(10)?,
        running_at: text(11)?,
        finished_at: text(12)?,
    };
    Ok(RunRow { run, active_until: time_of(r.try_get(13)?) })
}

/// The run; with `lock`, locked until the transaction ends.
async fn load_run(tx: &Tx<'_>, run_id: u64, lock: bool) -> StateResult<Option<RunRow>> {
    let sql = if lock { select_run!(" FOR NO KEY UPDATE") } else { select_run!("") };
    row(tx, sql, &[&sql_id(run_id)]).await?.map(|r| run_of(&r)).transpose()
}

/// Writes back what changes on a run: its status, timestamps and heartbeat deadline.
async fn save_run(tx: &Tx<'_>, row: &RunRow) -> StateResult<()> {
    let status = row.run.status.clone().unwrap_or_default();
    let sql = "UPDATE run SET status = $2, sub_status = $3, details = $4, starting_at = $5, running_at = $6, \
               finished_at = $7, active_until = $8 WHERE run_id = $1";
    let r = &row.run;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &sql_id(r.run_id),
        &status.status,
        &status.sub_status,
        &status.details,
        &r.starting_at,
        &r.running_at,
        &r.finished_at,
        &sql_time(row.active_until),
    ];
    exec(tx, sql, &params).await?;
    Ok(())
}

/// The run, locked, with a starting/running run whose ServerApp stopped sending
/// heartbeats turned finished:failed (and saved so).
async fn live_run(tx: &Tx<'_>, run_id: u64) -> StateResult<Option<RunRow>> {
    let Some(mut row) = load_run(tx, run_id, true).await? else {
        return Ok(None);
    };
    if status::fail_if_silent(&mut row.run, row.active_until, now_secs()) {
        save_run(tx, &row).await?;
    }
    Ok(Some(row))
}

pub(super) async fn run_exists(tx: &Tx<'_>, run_id: u64) -> StateResult<bool> {
    Ok(one(tx, "SELECT EXISTS (SELECT 1 FROM run WHERE run_id = $1)", &[&sql_id(run_id)]).await?.try_get(0)?)
}

pub(super) async fn create(pool: Pool, new: NewRun) -> StateResult<u64> {
    let config = ScalarMap { entries: new.override_config }.encode_to_vec();
    let options = new.federation_options.encode_to_vec();
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let sql = "INSERT INTO run (run_id, fab_id, fab_version, fab_hash, override_config, federation_options, \
               flwr_aid, status, sub_status, details, pending_at, starting_at, running_at, finished_at, \
               active_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', '', $9, '', '', '', 0.0) \
               ON CONFLICT (run_id) DO NOTHING";
    let pending_at = now_iso();
    let run_id = loop {
        let id = fresh_id();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &sql_id(id),
            &new.fab_id,
            &new.fab_version,
            &new.fab_hash,
            &config,
            &options,
            &new.flwr_aid,
            &status::PENDING,
            &pending_at,
        ];
        if exec(&tx, sql, &params).await? == 1 {
            break id;
        }
    };
    let context = pb::Context { run_id, state: Some(pb::RecordDict::default()), ..Default::default() };
    let sql = "INSERT INTO context (run_id, context) VALUES ($1, $2)";
    exec(&tx, sql, &[&sql_id(run_id), &context.encode_to_vec()]).await?;
    tx.commit().await?;
    Ok(run_id)
}

pub(super) async fn get(pool: Pool, run_id: u64) -> StateResult<Option<pb::Run>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    // A pure read, unless the run has just missed its heartbeats.
    let row = match load_run(&tx, run_id, false).await? {
        Some(row) if status::heartbeat_missed(&row.run, row.active_until, now_secs()) => live_run(&tx, run_id).await?,
        row => row,
    };
    tx.commit().await?;
    Ok(row.map(|r| r.run))
}

pub(super) async fn ids(pool: Pool) -> StateResult<Vec<u64>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let mut ids = id_column(rows(&tx, "SELECT run_id FROM run", &[]).await?)?;
    tx.commit().await?;
    ids.sort_unstable();
    Ok(ids)
}

/// Ids of the runs whose status is one of `statuses`, in submission order.
pub(super) async fn ids_with_status(pool: Pool, statuses: &'static [&'static str]) -> StateResult<Vec<u64>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let statuses: Vec<&str> = statuses.to_vec();
    let found = rows(&tx, "SELECT run_id FROM run WHERE status = ANY($1) ORDER BY seq", &[&statuses]).await?;
    tx.commit().await?;
    id_column(found)
}

fn id_column(rows: Vec<Row>) -> StateResult<Vec<u64>> {
    rows.iter().map(|r| Ok(id_of(r.try_get(0)?))).collect()
}

pub(super) async fn update_status(pool: Pool, run_id: u64, new: pb::RunStatus) -> StateResult<bool> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let mut row = live_run(&tx, run_id).await?.ok_or(StateError::RunNotFound(run_id))?;
    let applied = status::apply_transition(&mut row.run, &mut row.active_until, new);
    if applied {
        save_run(&tx, &row).await?;
    }
    // Committed either way: a silent run's failure is saved even when the change is not.
    tx.commit().await?;
    Ok(applied)
}

pub(super) async fn claim_pending(pool: Pool) -> StateResult<Option<u64>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    // SKIP LOCKED: a run another replica is claiming right now is not waited for; it
    // will be starting when that replica commits, so the next pending one is ours.
    let sql = "SELECT run_id FROM run WHERE status = $1 ORDER BY seq LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED";
    let Some(found) = row(&tx, sql, &[&status::PENDING]).await? else {
        return Ok(None);
    };
    let run_id: i64 = found.try_get(0)?;
    let sql = "UPDATE run SET status = $2, sub_status = '', details = '', starting_at = $3, active_until = $4 \
               WHERE run_id = $1";
    exec(&tx, sql, &[&run_id, &status::STARTING, &now_iso(), &HEARTBEAT_NEVER]).await?;
    tx.commit().await?;
    Ok(Some(id_of(run_id)))
}

pub(super) async fn ack_heartbeat(pool: Pool, run_id: u64, interval: f64) -> StateResult<bool> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let Some(mut row) = live_run(&tx, run_id).await? else {
        return Ok(false);
    };
    let live = matches!(RunState::of(&row.run), Some(RunState::Starting | RunState::Running));
    if live {
        row.active_until = now_secs() + HEARTBEAT_PATIENCE * interval;
        save_run(&tx, &row).await?;
    }
    tx.commit().await?;
    Ok(live)
}

pub(super) async fn context(pool: Pool, run_id: u64) -> StateResult<Option<pb::Context>> {
    read_value(pool, "context", "SELECT context FROM context WHERE run_id = $1", run_id).await
}

pub(super) async fn set_context(pool: Pool, run_id: u64, context: pb::Context) -> StateResult<()> {
    let blob = context.encode_to_vec();
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    live_run(&tx, run_id).await?.ok_or(StateError::RunNotFound(run_id))?;
    let sql = "INSERT INTO context (run_id, context) VALUES ($1, $2) \
               ON CONFLICT (run_id) DO UPDATE SET context = excluded.context";
    exec(&tx, sql, &[&sql_id(run_id), &blob]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn federation_options(pool: Pool, run_id: u64) -> StateResult<Option<pb::ConfigRecord>> {
    read_value(pool, "federation options", "SELECT federation_options FROM run WHERE run_id = $1", run_id).await
}

/// The protobuf value that `sql` selects for a run (its one parameter), if the run has one.
async fn read_value<M: prost::Message + Default>(
    pool: Pool,
    what: &str,
    sql: &str,
    run_id: u64,
) -> StateResult<Option<M>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let found = row(&tx, sql, &[&sql_id(run_id)]).await?;
    tx.commit().await?;
    found.map(|r| decode(what, r.try_get(0)?)).transpose()
}
