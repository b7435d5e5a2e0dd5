//! Nodes: registration, liveness deadlines and public key bindings.

use rusqlite::{params, Connection, OptionalExtension};

use super::codec::{id_of, sql_id, sql_time};
use super::{Commit, SqliteState};
use crate::clock::now_secs;
use crate::state::{random_id, StateError, StateResult, HEARTBEAT_PATIENCE};

pub(super) fn node_exists(conn: &Connection, node_id: u64) -> StateResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM node WHERE node_id = ?1)")?
        .query_row([sql_id(node_id)], |r| r.get(0))?)
}

pub(super) fn create(state: &SqliteState, heartbeat_interval: f64) -> StateResult<u64> {
    state.write(Commit::Durable, |conn| {
        let node_id = random_id(|id| node_exists(conn, id))?;
        conn.prepare_cached("INSERT INTO node (node_id, online_until) VALUES (?1, ?2)")?
            .execute(params![sql_id(node_id), sql_time(now_secs() + heartbeat_interval)])?;
        Ok(node_id)
    })
}

pub(super) fn delete(state: &SqliteState, node_id: u64) -> StateResult<()> {
    state.write(Commit::Durable, |conn| {
        // Its key bindings go with it (ON DELETE CASCADE).
        let deleted = conn.prepare_cached("DELETE FROM node WHERE node_id = ?1")?.execute([sql_id(node_id)])?;
        if deleted == 0 {
            return Err(StateError::NodeNotFound(node_id));
        }
        Ok(())
    })
}

/// Sets a node's liveness from `interval` with `sql` (?1 the node, ?2 the new end).
pub(super) fn set_liveness(state: &SqliteState, node_id: u64, interval: f64, sql: &str) -> StateResult<bool> {
    state.write(Commit::Relaxed, |conn| {
        let until = sql_time(now_secs() + HEARTBEAT_PATIENCE * interval);
        let updated = conn.prepare_cached(sql)?.execute(params![sql_id(node_id), until])?;
        Ok(updated > 0)
    })
}

pub(super) fn online(state: &SqliteState) -> StateResult<Vec<u64>> {
    let now = now_secs();
    state.read(|conn| {
        let mut stmt = conn.prepare_cached("SELECT node_id FROM node WHERE online_until > ?1")?;
        let mut ids = stmt.query_map([now], |r| r.get::<_, i64>(0).map(id_of))?.collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    })
}

pub(super) fn bind_key(state: &SqliteState, node_id: u64, key: &[u8]) -> StateResult<()> {
    state.write(Commit::Durable, |conn| {
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

pub(super) fn for_key(state: &SqliteState, key: &[u8]) -> StateResult<Option<u64>> {
    state.read(|conn| {
        let id: Option<i64> = conn
            .prepare_cached("SELECT node_id FROM node_key WHERE public_key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        Ok(id.map(id_of))
    })
}
