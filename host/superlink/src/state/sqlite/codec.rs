//! How values map to SQL columns (SQLite, and PostgreSQL too): ids, times, and
//! prost-encoded BLOBs.
//!
//! Ids are `u64` stored as SQLite's signed 64-bit INTEGER (a bit-for-bit `as` cast, so ids
//! above `i64::MAX` are negative on disk); anything sorted by id is sorted in Rust, as
//! `u64`. Protobuf values are prost-encoded BLOBs. Times are REAL; a NaN time (a client
//! may send a NaN heartbeat interval) is stored as NULL, which SQL comparisons treat as
//! false, exactly as Rust treats NaN, so both backends agree on it.
//!
//! The PostgreSQL backend stores the same values in `bigint`, `double precision` and
//! `bytea` columns. PostgreSQL could store a NaN, but its NaN equals itself and sorts above
//! every number, unlike Rust's and Flower's, so there too a NaN time is NULL.

use std::collections::HashMap;

use sepal_proto::pb;

use crate::state::{StateError, StateResult, StoredMessage};

/// A run's override config as one protobuf value (Flower's `Run.override_config` map).
#[derive(Clone, PartialEq, prost::Message)]
pub(in crate::state) struct ScalarMap {
    #[prost(map = "string, message", tag = "1")]
    pub(in crate::state) entries: HashMap<String, pb::Scalar>,
}

/// A `u64` id as SQLite's signed INTEGER (bit-for-bit).
pub(in crate::state) fn sql_id(id: u64) -> i64 {
    id as i64
}

/// The `u64` id behind an INTEGER read back.
pub(in crate::state) fn id_of(v: i64) -> u64 {
    v as u64
}

/// A time for a REAL column: NaN becomes NULL (SQLite cannot store NaN).
pub(in crate::state) fn sql_time(t: f64) -> Option<f64> {
    (!t.is_nan()).then_some(t)
}

/// A time read back from a nullable REAL column.
pub(in crate::state) fn time_of(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

pub(in crate::state) fn decode<M: prost::Message + Default>(what: &str, bytes: &[u8]) -> StateResult<M> {
    M::decode(bytes).map_err(|e| StateError::Backend(format!("stored {what} is corrupt: {e}")))
}

pub(in crate::state) fn decode_message(message: &[u8], tree: &[u8]) -> StateResult<StoredMessage> {
    let msg = StoredMessage { message: decode("message", message)?, tree: decode("object tree", tree)? };
    if msg.message.metadata.is_none() {
        return Err(StateError::Backend("stored message has no metadata".into()));
    }
    Ok(msg)
}
