//! Payload objects of messages in flight, by object id (the sha256 of the bytes, so a row
//! never changes). They live in the database rather than in one process's memory so that
//! any replica can serve a payload another replica received.

use std::collections::HashMap;

use bytes::Bytes;
use deadpool_postgres::Pool;

use super::connect;
use super::sql::{exec, rows};
use crate::state::StateResult;

pub(super) async fn keep(pool: Pool, objects: Vec<(String, Bytes)>) -> StateResult<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let sql = "INSERT INTO object (object_id, content) VALUES ($1, $2) ON CONFLICT (object_id) DO NOTHING";
    for (id, content) in &objects {
        exec(&tx, sql, &[id, &content.as_ref()]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The kept objects among `ids`, in the order of `ids`.
pub(super) async fn kept(pool: Pool, ids: Vec<String>) -> StateResult<Vec<(String, Bytes)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let found = rows(&tx, "SELECT object_id, content FROM object WHERE object_id = ANY($1)", &[&ids]).await?;
    tx.commit().await?;
    let mut by_id = HashMap::with_capacity(found.len());
    for r in found {
        by_id.insert(r.try_get::<_, String>(0)?, Bytes::from(r.try_get::<_, Vec<u8>>(1)?));
    }
    Ok(ids.into_iter().filter_map(|id| by_id.remove(&id).map(|b| (id, b))).collect())
}

pub(super) async fn forget(pool: Pool, ids: Vec<String>) -> StateResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    exec(&tx, "DELETE FROM object WHERE object_id = ANY($1)", &[&ids]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn sizes(pool: Pool) -> StateResult<Vec<(String, u64)>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let found = rows(&tx, "SELECT object_id, octet_length(content)::bigint FROM object", &[]).await?;
    tx.commit().await?;
    found.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64))).collect()
}
