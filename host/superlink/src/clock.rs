//! Wall-clock helpers: Flower stores times as Unix seconds (f64) and ISO-8601 strings.

pub use sepal_core::routing::now_secs;
pub use sepal_wire::time::{iso, now_iso, parse_iso};
