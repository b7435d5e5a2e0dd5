//! SuperNode settings and Flower's config values.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use sepal_fab::{ConfigMap, ConfigValue};
use sepal_proto::pb;
use sepal_proto::pb::scalar::Scalar;

use crate::retry::RetryPolicy;

/// Who runs ClientApps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The SuperNode starts a ClientApp process per message.
    Subprocess,
    /// An external ClientApp process connects over ClientAppIo.
    Process,
}

/// How a SuperNode runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SuperLink's Fleet address (`host:port`).
    pub superlink: String,
    /// This node's config (`--node-config`), given to every ClientApp.
    pub node_config: HashMap<String, pb::Scalar>,
    /// Where ClientAppIo listens.
    pub clientappio: SocketAddr,
    /// Who runs ClientApps.
    pub isolation: Isolation,
    /// The `flwr-clientapp` executable for subprocess isolation.
    pub clientapp_bin: PathBuf,
    /// Passed on to `flwr-clientapp` as `--flwr-dir`.
    pub flwr_dir: Option<PathBuf>,
    /// When to give up reconnecting.
    pub retry: RetryPolicy,
    /// The longest a ClientApp may take on one message (it is also always stopped
    /// early enough for its error reply to arrive within the message's TTL).
    pub clientapp_timeout: Option<std::time::Duration>,
}

/// A TOML-typed value as Flower's wire `Scalar`.
pub fn scalar(value: &ConfigValue) -> pb::Scalar {
    let s = match value {
        ConfigValue::Bool(b) => Scalar::Bool(*b),
        ConfigValue::Int(i) => Scalar::Sint64(*i),
        ConfigValue::Float(f) => Scalar::Double(*f),
        ConfigValue::Str(s) => Scalar::String(s.clone()),
    };
    pb::Scalar { scalar: Some(s) }
}

/// A parsed config (`--node-config`, `--run-config`) as wire scalars.
pub fn scalars(config: &ConfigMap) -> HashMap<String, pb::Scalar> {
    config.iter().map(|(k, v)| (k.clone(), scalar(v))).collect()
}

/// The FAB's run config with the run's overrides applied; an override of a key the
/// app does not define is an error (as in Flower).
pub fn fuse_run_config(
    defaults: &ConfigMap,
    overrides: &HashMap<String, pb::Scalar>,
) -> Result<HashMap<String, pb::Scalar>, String> {
    let mut fused = scalars(defaults);
    for (key, value) in overrides {
        if !defaults.contains_key(key) {
            return Err(format!("Key '{key}' is not present in the main dictionary"));
        }
        fused.insert(key.clone(), value.clone());
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_defaults_and_unknown_keys_fail() {
        let defaults = sepal_fab::parse_config_overrides("lr=0.1 rounds=3 name=\"x\"").unwrap();
        let mut overrides = HashMap::new();
        overrides.insert("rounds".to_string(), pb::Scalar { scalar: Some(Scalar::Sint64(5)) });
        let fused = fuse_run_config(&defaults, &overrides).unwrap();
        assert_eq!(fused["rounds"].scalar, Some(Scalar::Sint64(5)));
        assert_eq!(fused["lr"].scalar, Some(Scalar::Double(0.1)));
        assert_eq!(fused["name"].scalar, Some(Scalar::String("x".into())));
        overrides.insert("nope".to_string(), pb::Scalar { scalar: Some(Scalar::Bool(true)) });
        assert!(fuse_run_config(&defaults, &overrides).unwrap_err().contains("'nope'"));
    }
}
