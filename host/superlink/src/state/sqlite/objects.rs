//! Payload objects kept with the state, so that messages in flight at a restart keep their
//! payload: an object's bytes by its id (the sha256 of the bytes, so a row never changes).

use bytes::Bytes;
use rusqlite::params;

use super::{Commit, SqliteState};
use crate::state::StateResult;

pub(super) fn keep(state: &SqliteState, objects: &[(String, Bytes)]) -> StateResult<()> {
    if objects.is_empty() {
        return Ok(());
    }
    state.write(Commit::Durable, |conn| {
        let mut stmt = conn.prepare_cached("INSERT OR IGNORE INTO object (object_id, content) VALUES (?1, ?2)")?;
        for (id, content) in objects {
            stmt.execute(params![id, content.as_ref()])?;
        }
        Ok(())
    })
}

pub(super) fn kept(state: &SqliteState, ids: &[String]) -> StateResult<Vec<(String, Bytes)>> {
    state.read(|conn| {
        let mut stmt = conn.prepare_cached("SELECT content FROM object WHERE object_id = ?1")?;
        let mut out = Vec::new();
        for id in ids {
            let mut rows = stmt.query([id])?;
            if let Some(row) = rows.next()? {
                out.push((id.clone(), Bytes::from(row.get::<_, Vec<u8>>(0)?)));
            }
        }
        Ok(out)
    })
}

pub(super) fn forget(state: &SqliteState, ids: &[String]) -> StateResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    // Losing a deletion to a power cut only leaves a row the next start cleans up.
    state.write(Commit::Relaxed, |conn| {
        let mut stmt = conn.prepare_cached("DELETE FROM object WHERE object_id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    })
}

pub(super) fn sizes(state: &SqliteState) -> StateResult<Vec<(String, u64)>> {
    state.read(|conn| {
        let mut stmt = conn.prepare_cached("SELECT object_id, length(content) FROM object")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}
