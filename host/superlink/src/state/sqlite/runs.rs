//! Runs: creating, reading and moving them through their statuses, their ServerApp
//! heartbeat deadline, context and federation options.

use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension};
use sepal_proto::pb;

use super::codec::{decode, id_of, sql_id, sql_time, time_of, ScalarMap};
use super::{Commit, SqliteState};
use crate::clock::{now_iso, now_secs};
use crate::state::status::{self, RunState};
use crate::state::{random_id, NewRun, StateError, StateResult, HEARTBEAT_NEVER, HEARTBEAT_PATIENCE};

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

/// The run, with a starting/running run whose ServerApp stopped sending heartbeats
/// turned finished:failed (and saved so).
fn live_run(conn: &Connection, run_id: u64) -> StateResult<Option<RunRow>> {
    let Some(mut row) = load_run(conn, run_id)? else {
        return Ok(None);
    };
    if status::fail_if_silent(&mut row.run, row.active_until, now_secs()) {
        save_run(conn, &row)?;
    }
    Ok(Some(row))
}

pub(super) fn run_exists(conn: &Connection, run_id: u64) -> StateResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM run WHERE run_id = ?1)")?
        .query_row([sql_id(run_id)], |r| r.get(0))?)
}

pub(super) fn create(state: &SqliteState, new: NewRun) -> StateResult<u64> {
    let config = ScalarMap { entries: new.override_config }.encode_to_vec();
    let options = new.federation_options.encode_to_vec();
    state.write(Commit::Durable, |conn| {
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

pub(super) fn get(state: &SqliteState, run_id: u64) -> StateResult<Option<pb::Run>> {
    // A pure read, unless the run has just missed its heartbeats.
    let row = state.read(|conn| load_run(conn, run_id))?;
    match row {
        Some(row) if status::heartbeat_missed(&row.run, row.active_until, now_secs()) => {
            state.write(Commit::Durable, |conn| Ok(live_run(conn, run_id)?.map(|r| r.run)))
        }
        row => Ok(row.map(|r| r.run)),
    }
}

pub(super) fn ids(state: &SqliteState) -> StateResult<Vec<u64>> {
    state.read(|conn| {
        let mut stmt = conn.prepare_cached("SELECT run_id FROM run")?;
        let mut ids = stmt.query_map([], |r| r.get::<_, i64>(0).map(id_of))?.collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    })
}

pub(super) fn update_status(state: &SqliteState, run_id: u64, new: pb::RunStatus) -> StateResult<bool> {
    state.write(Commit::Durable, |conn| {
        let mut row = live_run(conn, run_id)?.ok_or(StateError::RunNotFound(run_id))?;
        if !status::apply_transition(&mut row.run, &mut row.active_until, new) {
            return Ok(false);
        }
        save_run(conn, &row)?;
        Ok(true)
    })
}

pub(super) fn claim_pending(state: &SqliteState) -> StateResult<Option<u64>> {
    state.write(Commit::Durable, |conn| {
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

pub(super) fn pending_ids(state: &SqliteState) -> StateResult<Vec<u64>> {
    state.read(|conn| {
        let mut stmt = conn.prepare_cached("SELECT run_id FROM run WHERE status = ?1 ORDER BY seq")?;
        let ids = stmt.query_map([status::PENDING], |r| r.get::<_, i64>(0).map(id_of))?;
        Ok(ids.collect::<Result<Vec<_>, _>>()?)
    })
}

pub(super) fn active_ids(state: &SqliteState) -> StateResult<Vec<u64>> {
    state.read(|conn| {
        let mut stmt = conn.prepare_cached("SELECT run_id FROM run WHERE status IN (?1, ?2) ORDER BY seq")?;
        let ids = stmt.query_map([status::STARTING, status::RUNNING], |r| r.get::<_, i64>(0).map(id_of))?;
        Ok(ids.collect::<Result<Vec<_>, _>>()?)
    })
}

pub(super) fn ack_heartbeat(state: &SqliteState, run_id: u64, interval: f64) -> StateResult<bool> {
    state.write(Commit::Relaxed, |conn| {
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

pub(super) fn context(state: &SqliteState, run_id: u64) -> StateResult<Option<pb::Context>> {
    state.read(|conn| read_blob(conn, "context", "SELECT context FROM context WHERE run_id = ?1", run_id))
}

pub(super) fn set_context(state: &SqliteState, run_id: u64, context: pb::Context) -> StateResult<()> {
    let blob = context.encode_to_vec();
    state.write(Commit::Durable, |conn| {
        live_run(conn, run_id)?.ok_or(StateError::RunNotFound(run_id))?;
        conn.prepare_cached("INSERT OR REPLACE INTO context (run_id, context) VALUES (?1, ?2)")?
            .execute(params![sql_id(run_id), blob])?;
        Ok(())
    })
}

pub(super) fn federation_options(state: &SqliteState, run_id: u64) -> StateResult<Option<pb::ConfigRecord>> {
    let sql = "SELECT federation_options FROM run WHERE run_id = ?1";
    state.read(|conn| read_blob(conn, "federation options", sql, run_id))
}

/// The protobuf value that `sql` selects for a run (its one parameter), if the run has one.
fn read_blob<M: prost::Message + Default>(
    conn: &Connection,
    what: &str,
    sql: &str,
    run_id: u64,
) -> StateResult<Option<M>> {
    let blob: Option<Vec<u8>> = conn.prepare_cached(sql)?.query_row([sql_id(run_id)], |r| r.get(0)).optional()?;
    blob.map(|b| decode(what, &b)).transpose()
}
