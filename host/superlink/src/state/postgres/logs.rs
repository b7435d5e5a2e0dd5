//! Run logs: entries stamped in strictly increasing order per run. The run's row is
//! locked while a line is added, so that replicas appending to one run stamp in turn.

use deadpool_postgres::Pool;

use super::connect;
use super::sql::{exec, one, row, rows};
use crate::clock::now_secs;
use crate::state::sqlite::codec::sql_id;
use crate::state::{StateError, StateResult};

pub(super) async fn add(pool: Pool, run_id: u64, text: String) -> StateResult<()> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let id = sql_id(run_id);
    if row(&tx, "SELECT 1 FROM run WHERE run_id = $1 FOR NO KEY UPDATE", &[&id]).await?.is_none() {
        return Err(StateError::RunNotFound(run_id));
    }
    let last: Option<f64> = one(&tx, "SELECT max(stamp) FROM log WHERE run_id = $1", &[&id]).await?.try_get(0)?;
    // Stamps strictly increase so "after this stamp" never skips or repeats a line.
    let stamp = now_secs().max(last.unwrap_or(0.0) + 1e-6);
    let sql = "INSERT INTO log (run_id, stamp, text) VALUES ($1, $2, $3)";
    exec(&tx, sql, &[&id, &stamp, &text.as_bytes()]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn after(pool: Pool, run_id: u64, after: f64) -> StateResult<(String, f64)> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let id = sql_id(run_id);
    if !one(&tx, "SELECT EXISTS (SELECT 1 FROM run WHERE run_id = $1)", &[&id]).await?.try_get::<_, bool>(0)? {
        return Err(StateError::RunNotFound(run_id));
    }
    let sql = "SELECT text, stamp FROM log WHERE run_id = $1 AND stamp > $2 ORDER BY seq";
    let found = rows(&tx, sql, &[&id, &after]).await?;
    tx.commit().await?;
    let (mut text, mut latest) = (String::new(), 0.0);
    for r in found {
        let line = std::str::from_utf8(r.try_get(0)?)
            .map_err(|e| StateError::Backend(format!("stored log text is not UTF-8: {e}")))?;
        text.push_str(line);
        latest = r.try_get(1)?;
    }
    Ok((text, latest))
}
