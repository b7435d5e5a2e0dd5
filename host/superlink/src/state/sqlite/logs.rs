//! Run logs: entries stamped in strictly increasing order per run.

use rusqlite::params;

use super::codec::sql_id;
use super::runs::run_exists;
use super::{Commit, SqliteState};
use crate::clock::now_secs;
use crate::state::{StateError, StateResult};

pub(super) fn add(state: &SqliteState, run_id: u64, text: &str) -> StateResult<()> {
    state.write(Commit::Durable, |conn| {
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

pub(super) fn after(state: &SqliteState, run_id: u64, after: f64) -> StateResult<(String, f64)> {
    state.read(|conn| {
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
