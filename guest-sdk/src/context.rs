//! [`Context`]: what an app knows about where it runs, and its persistent state.

use std::collections::BTreeMap;

use sepal_proto::pb;

use crate::error::AppError;
use crate::records::RecordDict;

/// One configuration value (Flower's `Scalar`), as run and node configs hold them.
///
/// Values from `pyproject.toml` arrive as Flower writes them: TOML integers as
/// [`Scalar::Sint64`], floats as [`Scalar::Double`], booleans and strings as such.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A float.
    Double(f64),
    /// An integer above `i64::MAX`.
    Uint64(u64),
    /// A signed integer.
    Sint64(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    String(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

macro_rules! scalar_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Scalar {
            fn from(v: $t) -> Self {
                Scalar::$variant(v.into())
            }
        })*
    };
}

scalar_from!(f64 => Double, i64 => Sint64, i32 => Sint64, bool => Bool, String => String,
    &str => String, Vec<u8> => Bytes);

impl From<u64> for Scalar {
    /// Python's rule: `Sint64` unless the value exceeds `i64::MAX`.
    fn from(v: u64) -> Self {
        match i64::try_from(v) {
            Ok(v) => Scalar::Sint64(v),
            Err(_) => Scalar::Uint64(v),
        }
    }
}

/// A run or node configuration: string keys to [`Scalar`]s, with typed getters.
///
/// The `get_*` getters return `None` when the key is absent or holds another kind of
/// value; integers are accepted where a float is asked for. The `*_or` forms fall back to
/// a default, and the `require_*` forms turn a missing value into an [`AppError`].
///
/// ```
/// use sepal_sdk::Config;
///
/// let config = Config::new().with("num-server-rounds", 3).with("lr", 0.5);
/// assert_eq!(config.get_i64_or("num-server-rounds", 1), 3);
/// assert_eq!(config.get_f64("lr"), Some(0.5));
/// assert_eq!(config.get_f64("num-server-rounds"), Some(3.0));
/// assert!(config.require_str("missing").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    values: BTreeMap<String, Scalar>,
}

impl Config {
    /// An empty config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Scalar>) -> Option<Scalar> {
        self.values.insert(key.into(), value.into())
    }

    /// Builder form of [`Config::insert`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Scalar>) -> Self {
        self.insert(key, value);
        self
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&Scalar> {
        self.values.get(key)
    }

    /// `key` as a signed integer (from `Sint64`, or a `Uint64` that fits).
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Scalar::Sint64(v) => Some(*v),
            Scalar::Uint64(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// `key` as an unsigned integer (from a non-negative `Sint64`, or `Uint64`).
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Scalar::Sint64(v) => u64::try_from(*v).ok(),
            Scalar::Uint64(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as a float (from `Double`, or an integer).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Scalar::Double(v) => Some(*v),
            Scalar::Sint64(v) => Some(*v as f64),
            Scalar::Uint64(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// `key` as a boolean.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Scalar::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Scalar::String(v) => Some(v),
            _ => None,
        }
    }

    /// `key` as bytes.
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        match self.get(key)? {
            Scalar::Bytes(v) => Some(v),
            _ => None,
        }
    }

    /// [`Config::get_i64`], or `default`.
    pub fn get_i64_or(&self, key: &str, default: i64) -> i64 {
        self.get_i64(key).unwrap_or(default)
    }

    /// [`Config::get_u64`], or `default`.
    pub fn get_u64_or(&self, key: &str, default: u64) -> u64 {
        self.get_u64(key).unwrap_or(default)
    }

    /// [`Config::get_f64`], or `default`.
    pub fn get_f64_or(&self, key: &str, default: f64) -> f64 {
        self.get_f64(key).unwrap_or(default)
    }

    /// [`Config::get_bool`], or `default`.
    pub fn get_bool_or(&self, key: &str, default: bool) -> bool {
        self.get_bool(key).unwrap_or(default)
    }

    /// [`Config::get_str`], or `default`.
    pub fn get_str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get_str(key).unwrap_or(default)
    }

    /// [`Config::get_i64`], or an error naming the key.
    pub fn require_i64(&self, key: &str) -> Result<i64, AppError> {
        self.get_i64(key).ok_or_else(|| missing(key, "an integer"))
    }

    /// [`Config::get_u64`], or an error naming the key.
    pub fn require_u64(&self, key: &str) -> Result<u64, AppError> {
        self.get_u64(key).ok_or_else(|| missing(key, "a non-negative integer"))
    }

    /// [`Config::get_f64`], or an error naming the key.
    pub fn require_f64(&self, key: &str) -> Result<f64, AppError> {
        self.get_f64(key).ok_or_else(|| missing(key, "a number"))
    }

    /// [`Config::get_bool`], or an error naming the key.
    pub fn require_bool(&self, key: &str) -> Result<bool, AppError> {
        self.get_bool(key).ok_or_else(|| missing(key, "a boolean"))
    }

    /// [`Config::get_str`], or an error naming the key.
    pub fn require_str(&self, key: &str) -> Result<&str, AppError> {
        self.get_str(key).ok_or_else(|| missing(key, "a string"))
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Scalar)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the config is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

fn missing(key: &str, what: &str) -> AppError {
    AppError::new(format!("config key {key:?} is missing or not {what}"))
}

impl<K: Into<String>, V: Into<Scalar>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config { values: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
}

/// What an app knows about where it runs (Flower's `Context`).
///
/// A ClientApp gets the node's context with every message; whatever it leaves in
/// [`Context::state`] is there again for the next message of the same run on that node.
/// A ServerApp gets the run's context once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The run this call belongs to.
    pub run_id: u64,
    /// The node the app runs on (1 for the ServerApp side).
    pub node_id: u64,
    /// The node's configuration (`--node-config`), e.g. `partition-id`.
    pub node_config: Config,
    /// The run's configuration (`[tool.flwr.app.config]` plus overrides).
    pub run_config: Config,
    /// State that persists across the run's messages on this node.
    pub state: RecordDict,
}

impl Context {
    /// An empty context for `run_id` on `node_id`.
    pub fn new(run_id: u64, node_id: u64) -> Self {
        Context { run_id, node_id, ..Self::default() }
    }

    /// Builder: sets the run config.
    pub fn with_run_config(mut self, run_config: Config) -> Self {
        self.run_config = run_config;
        self
    }

    /// Builder: sets the node config.
    pub fn with_node_config(mut self, node_config: Config) -> Self {
        self.node_config = node_config;
        self
    }

    /// Decodes a `flwr.proto.Context` (the bytes that cross the Wasm boundary).
    pub fn from_proto_bytes(bytes: &[u8]) -> Result<Self, AppError> {
        let pb: pb::Context = prost::Message::decode(bytes)?;
        Context::try_from(pb)
    }

    /// Encodes as a `flwr.proto.Context`.
    pub fn to_proto_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&pb::Context::from(self))
    }

    /// [`Context::to_proto_bytes`], consuming the context.
    pub fn into_proto_bytes(self) -> Vec<u8> {
        let pb = pb::Context {
            run_id: self.run_id,
            node_id: self.node_id,
            node_config: config_to_pb(&self.node_config),
            state: Some((&self.state).into()),
            run_config: config_to_pb(&self.run_config),
        };
        prost::Message::encode_to_vec(&pb)
    }
}

impl From<pb::Scalar> for Scalar {
    fn from(s: pb::Scalar) -> Self {
        use pb::scalar::Scalar as P;
        match s.scalar {
            Some(P::Double(v)) => Scalar::Double(v),
            Some(P::Uint64(v)) => Scalar::Uint64(v),
            Some(P::Sint64(v)) => Scalar::Sint64(v),
            Some(P::Bool(v)) => Scalar::Bool(v),
            Some(P::String(v)) => Scalar::String(v),
            Some(P::Bytes(v)) => Scalar::Bytes(v),
            // An unset oneof carries no value; Flower never sends one. Treat it as "".
            None => Scalar::String(String::new()),
        }
    }
}

impl From<&Scalar> for pb::Scalar {
    fn from(s: &Scalar) -> Self {
        use pb::scalar::Scalar as P;
        let v = match s.clone() {
            Scalar::Double(v) => P::Double(v),
            Scalar::Uint64(v) => P::Uint64(v),
            Scalar::Sint64(v) => P::Sint64(v),
            Scalar::Bool(v) => P::Bool(v),
            Scalar::String(v) => P::String(v),
            Scalar::Bytes(v) => P::Bytes(v),
        };
        pb::Scalar { scalar: Some(v) }
    }
}

fn config_from_pb(map: std::collections::HashMap<String, pb::Scalar>) -> Config {
    map.into_iter().map(|(k, v)| (k, Scalar::from(v))).collect()
}

fn config_to_pb(config: &Config) -> std::collections::HashMap<String, pb::Scalar> {
    config.iter().map(|(k, v)| (k.to_owned(), pb::Scalar::from(v))).collect()
}

impl TryFrom<pb::Context> for Context {
    type Error = AppError;

    fn try_from(c: pb::Context) -> Result<Self, AppError> {
        Ok(Context {
            run_id: c.run_id,
            node_id: c.node_id,
            node_config: config_from_pb(c.node_config),
            run_config: config_from_pb(c.run_config),
            state: c.state.map(RecordDict::try_from).transpose()?.unwrap_or_default(),
        })
    }
}

impl From<&Context> for pb::Context {
    fn from(c: &Context) -> Self {
        pb::Context {
            run_id: c.run_id,
            node_id: c.node_id,
            node_config: config_to_pb(&c.node_config),
            state: Some((&c.state).into()),
            run_config: config_to_pb(&c.run_config),
        }
    }
}
