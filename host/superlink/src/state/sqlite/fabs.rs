//! FAB archives, stored once under their hash.

use bytes::Bytes;
use rusqlite::{params, OptionalExtension};

use super::{Commit, SqliteState};
use crate::state::StateResult;

pub(super) fn store(state: &SqliteState, hash: &str, content: Bytes) -> StateResult<()> {
    state.write(Commit::Durable, |conn| {
        conn.prepare_cached("INSERT INTO fab (hash, content) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING")?
            .execute(params![hash, &content[..]])?;
        Ok(())
    })
}

pub(super) fn get(state: &SqliteState, hash: &str) -> StateResult<Option<Bytes>> {
    state.read(|conn| {
        let blob: Option<Vec<u8>> = conn
            .prepare_cached("SELECT content FROM fab WHERE hash = ?1")?
            .query_row([hash], |r| r.get(0))
            .optional()?;
        Ok(blob.map(Bytes::from))
    })
}
