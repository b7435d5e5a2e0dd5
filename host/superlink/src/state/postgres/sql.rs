//! Running statements: prepared once per connection (the pool's statement cache), every
//! driver error turned into a [`StateError::Backend`] naming PostgreSQL and the cause.

use std::error::Error as _;

use rand::Rng;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::state::{StateError, StateResult, SUPERLINK_NODE_ID};

/// A transaction on a pooled connection.
pub(super) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Statement parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl From<tokio_postgres::Error> for StateError {
    fn from(e: tokio_postgres::Error) -> Self {
        StateError::Backend(format!("PostgreSQL: {}", describe(&e)))
    }
}

/// The driver's error with its cause: the server's message for a database error, the
/// I/O error for a broken connection (the driver's own text is terse: "db error").
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({}: {})", db.message(), db.severity(), db.code().code());
    }
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Runs a statement; returns how many rows it changed.
pub(super) async fn exec(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> StateResult<u64> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&stmt, params).await?)
}

/// Runs a query; returns its rows.
pub(super) async fn rows(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> StateResult<Vec<Row>> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query(&stmt, params).await?)
}

/// Runs a query that returns at most one row.
pub(super) async fn row(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> StateResult<Option<Row>> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query_opt(&stmt, params).await?)
}

/// Runs a query that returns exactly one row (an aggregate, `EXISTS`).
pub(super) async fn one(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> StateResult<Row> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query_one(&stmt, params).await?)
}

/// A random id above the SuperLink's, for a new run or node. The caller inserts it with
/// `ON CONFLICT DO NOTHING` and draws again on a clash: checking first and inserting
/// after would race with another replica drawing the same id.
pub(super) fn fresh_id() -> u64 {
    let mut rng = rand::thread_rng();
    loop {
        let id: u64 = rng.gen();
        if id > SUPERLINK_NODE_ID {
            return id;
        }
    }
}
