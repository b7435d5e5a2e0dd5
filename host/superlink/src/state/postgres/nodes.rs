//! Nodes: registration, liveness deadlines and public key bindings.

use deadpool_postgres::Pool;

use super::connect;
use super::sql::{exec, fresh_id, one, row, rows, Tx};
use crate::clock::now_secs;
use crate::state::sqlite::codec::{id_of, sql_id, sql_time};
use crate::state::{StateError, StateResult, HEARTBEAT_PATIENCE};

pub(super) async fn node_exists(tx: &Tx<'_>, node_id: u64) -> StateResult<bool> {
    Ok(one(tx, "SELECT EXISTS (SELECT 1 FROM node WHERE node_id = $1)", &[&sql_id(node_id)]).await?.try_get(0)?)
}

pub(super) async fn create(pool: Pool, heartbeat_interval: f64) -> StateResult<u64> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let until = sql_time(now_secs() + heartbeat_interval);
    let sql = "INSERT INTO node (node_id, online_until) VALUES ($1, $2) ON CONFLICT (node_id) DO NOTHING";
    let node_id = loop {
        let id = fresh_id();
        if exec(&tx, sql, &[&sql_id(id), &until]).await? == 1 {
            break id;
        }
    };
    tx.commit().await?;
    Ok(node_id)
}

pub(super) async fn delete(pool: Pool, node_id: u64) -> StateResult<()> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    // Its key bindings go with it (ON DELETE CASCADE).
    if exec(&tx, "DELETE FROM node WHERE node_id = $1", &[&sql_id(node_id)]).await? == 0 {
        return Err(StateError::NodeNotFound(node_id));
    }
    tx.commit().await?;
    Ok(())
}

/// Sets a node's liveness from `interval` with `sql` ($1 the node, $2 the new end).
pub(super) async fn set_liveness(pool: Pool, node_id: u64, interval: f64, sql: &'static str) -> StateResult<bool> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let until = sql_time(now_secs() + HEARTBEAT_PATIENCE * interval);
    let updated = exec(&tx, sql, &[&sql_id(node_id), &until]).await?;
    tx.commit().await?;
    Ok(updated > 0)
}

pub(super) async fn online(pool: Pool) -> StateResult<Vec<u64>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let found = rows(&tx, "SELECT node_id FROM node WHERE online_until > $1", &[&now_secs()]).await?;
    tx.commit().await?;
    let mut ids = found.iter().map(|r| Ok(id_of(r.try_get(0)?))).collect::<StateResult<Vec<u64>>>()?;
    ids.sort_unstable();
    Ok(ids)
}

pub(super) async fn bind_key(pool: Pool, node_id: u64, key: Vec<u8>) -> StateResult<()> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    if row(&tx, "SELECT 1 FROM node_key WHERE public_key = $1", &[&key]).await?.is_some() {
        return Err(StateError::PublicKeyInUse);
    }
    // Locked against deletion until the binding is committed.
    if row(&tx, "SELECT 1 FROM node WHERE node_id = $1 FOR KEY SHARE", &[&sql_id(node_id)]).await?.is_none() {
        return Err(StateError::NodeNotFound(node_id));
    }
    // Another replica may bind the same key between the check and here.
    let sql = "INSERT INTO node_key (public_key, node_id) VALUES ($1, $2) ON CONFLICT (public_key) DO NOTHING";
    if exec(&tx, sql, &[&key, &sql_id(node_id)]).await? == 0 {
        return Err(StateError::PublicKeyInUse);
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn for_key(pool: Pool, key: Vec<u8>) -> StateResult<Option<u64>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let found = row(&tx, "SELECT node_id FROM node_key WHERE public_key = $1", &[&key]).await?;
    tx.commit().await?;
    Ok(found.map(|r| r.try_get(0)).transpose()?.map(id_of))
}
