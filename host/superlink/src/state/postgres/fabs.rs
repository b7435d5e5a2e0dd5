//! FAB archives, stored once under their hash.

use bytes::Bytes;
use deadpool_postgres::Pool;

use super::connect;
use super::sql::{exec, row};
use crate::state::StateResult;

pub(super) async fn store(pool: Pool, hash: String, content: Bytes) -> StateResult<()> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let sql = "INSERT INTO fab (hash, content) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING";
    exec(&tx, sql, &[&hash, &content.as_ref()]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn get(pool: Pool, hash: String) -> StateResult<Option<Bytes>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let found = row(&tx, "SELECT content FROM fab WHERE hash = $1", &[&hash]).await?;
    tx.commit().await?;
    Ok(found.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?.map(Bytes::from))
}
