//! Flower's records: the typed payload of a [`Message`](crate::Message).
//!
//! These are `sepal-core`'s types, re-exported: a [`RecordDict`] maps names to records, and
//! a record is an [`ArrayRecord`] (named tensors), a [`MetricRecord`] (named numbers) or a
//! [`ConfigRecord`] (named configuration values). All keep insertion order, like Python
//! dicts. [`ArrayExt`] adds shortcuts for building and reading [`Array`]s.
//!
//! ```
//! use sepal_sdk::prelude::*;
//!
//! let weights = Array::from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
//! let arrays = ArrayRecord::new()
//!     .with("weight", weights)
//!     .with("bias", Array::vector_f32(&[0.5]));
//! let content = RecordDict::new()
//!     .with("arrays", arrays.into())
//!     .with("config", ConfigRecord::new().with("lr", 0.1.into()).into());
//!
//! let w = content.array_record("arrays").unwrap().get("weight").unwrap();
//! assert_eq!(w.dims(), vec![2, 2]);
//! assert_eq!(w.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
//! ```

pub use sepal_core::{
    Array, ArrayRecord, ConfigRecord, ConfigValue, MetricRecord, MetricValue, OrderedMap, Record, RecordDict,
};

/// Shortcuts on [`Array`] (bring into scope with `use sepal_sdk::prelude::*`).
pub trait ArrayExt {
    /// A one-dimensional `float32` array (use [`Array::from_f32`] for other shapes).
    ///
    /// Panics if `values` holds more than `i32::MAX` elements (Flower's shape limit).
    fn vector_f32(values: &[f32]) -> Array;
    /// A one-dimensional `float64` array (use [`Array::from_f64`] for other shapes).
    ///
    /// Panics if `values` holds more than `i32::MAX` elements (Flower's shape limit).
    fn vector_f64(values: &[f64]) -> Array;
    /// The shape as `usize`s (a negative dimension, which Flower never writes, reads as 0).
    fn dims(&self) -> Vec<usize>;
    /// The number of elements the shape holds.
    fn numel(&self) -> usize;
}

impl ArrayExt for Array {
    fn vector_f32(values: &[f32]) -> Array {
        Array::from_f32(values, &[values.len()]).expect("a 1-D shape always matches")
    }

    fn vector_f64(values: &[f64]) -> Array {
        Array::from_f64(values, &[values.len()]).expect("a 1-D shape always matches")
    }

    fn dims(&self) -> Vec<usize> {
        self.shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect()
    }

    fn numel(&self) -> usize {
        self.dims().iter().product()
    }
}

/// Typed getters on [`ConfigRecord`] (bring into scope with `use sepal_sdk::prelude::*`).
///
/// Each returns `None` when the key is absent or holds another kind of value; integers
/// are accepted where a float is asked for.
///
/// ```
/// use sepal_sdk::prelude::*;
///
/// let config = ConfigRecord::new().with("lr", 0.5.into()).with("server-round", 2i64.into());
/// assert_eq!(config.get_f64("lr"), Some(0.5));
/// assert_eq!(config.get_i64("server-round"), Some(2));
/// assert_eq!(config.get_f64("server-round"), Some(2.0));
/// assert_eq!(config.get_str("lr"), None);
/// ```
pub trait ConfigRecordExt {
    /// `key` as a float (from a double or an integer).
    fn get_f64(&self, key: &str) -> Option<f64>;
    /// `key` as a signed integer.
    fn get_i64(&self, key: &str) -> Option<i64>;
    /// `key` as an unsigned integer.
    fn get_u64(&self, key: &str) -> Option<u64>;
    /// `key` as a boolean.
    fn get_bool(&self, key: &str) -> Option<bool>;
    /// `key` as a string.
    fn get_str(&self, key: &str) -> Option<&str>;
}

impl ConfigRecordExt for ConfigRecord {
    fn get_f64(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            ConfigValue::Double(v) => Some(*v),
            ConfigValue::Sint64(v) => Some(*v as f64),
            ConfigValue::Uint64(v) => Some(*v as f64),
            _ => None,
        }
    }

    fn get_i64(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            ConfigValue::Sint64(v) => Some(*v),
            ConfigValue::Uint64(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    fn get_u64(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            ConfigValue::Sint64(v) => u64::try_from(*v).ok(),
            ConfigValue::Uint64(v) => Some(*v),
            _ => None,
        }
    }

    fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            ConfigValue::Bool(v) => Some(*v),
            _ => None,
        }
    }

    fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            ConfigValue::String(v) => Some(v),
            _ => None,
        }
    }
}

/// Typed getters on [`MetricRecord`] (bring into scope with `use sepal_sdk::prelude::*`).
///
/// ```
/// use sepal_sdk::prelude::*;
///
/// let metrics = MetricRecord::new().with("num-examples", 40i64.into()).with("acc", 0.9.into());
/// assert_eq!(metrics.get_f64("acc"), Some(0.9));
/// assert_eq!(metrics.get_f64("num-examples"), Some(40.0));
/// assert_eq!(metrics.get_i64("num-examples"), Some(40));
/// ```
pub trait MetricRecordExt {
    /// `key` as a float (from a double or an integer).
    fn get_f64(&self, key: &str) -> Option<f64>;
    /// `key` as a signed integer.
    fn get_i64(&self, key: &str) -> Option<i64>;
}

impl MetricRecordExt for MetricRecord {
    fn get_f64(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            MetricValue::Double(v) => Some(*v),
            MetricValue::Sint64(v) => Some(*v as f64),
            MetricValue::Uint64(v) => Some(*v as f64),
            _ => None,
        }
    }

    fn get_i64(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            MetricValue::Sint64(v) => Some(*v),
            MetricValue::Uint64(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }
}
