//! Config values as Flower's wire `Scalar`s (run config, node config, overrides).

use std::collections::HashMap;

use sepal_proto::pb;
use sepal_proto::pb::scalar::Scalar;

use crate::config::{fuse_run_config, ConfigMap, ConfigValue};
use crate::error::{Error, Result};

/// A TOML-typed value as a wire scalar (bool, sint64, double or string, as Flower maps them).
pub fn to_scalar(value: &ConfigValue) -> pb::Scalar {
    let s = match value {
        ConfigValue::Bool(b) => Scalar::Bool(*b),
        ConfigValue::Int(i) => Scalar::Sint64(*i),
        ConfigValue::Float(f) => Scalar::Double(*f),
        ConfigValue::Str(s) => Scalar::String(s.clone()),
    };
    pb::Scalar { scalar: Some(s) }
}

/// A config as wire scalars.
pub fn to_scalars(config: &ConfigMap) -> HashMap<String, pb::Scalar> {
    config.iter().map(|(k, v)| (k.clone(), to_scalar(v))).collect()
}

/// A wire scalar as a config value; `None` for values a run config cannot hold (bytes,
/// unsigned integers above `i64::MAX`, an empty scalar).
pub fn from_scalar(scalar: &pb::Scalar) -> Option<ConfigValue> {
    Some(match scalar.scalar.as_ref()? {
        Scalar::Bool(b) => ConfigValue::Bool(*b),
        Scalar::Sint64(i) => ConfigValue::Int(*i),
        Scalar::Uint64(u) => ConfigValue::Int(i64::try_from(*u).ok()?),
        Scalar::Double(f) => ConfigValue::Float(*f),
        Scalar::String(s) => ConfigValue::Str(s.clone()),
        Scalar::Bytes(_) => return None,
    })
}

/// The app's run config (`[tool.flwr.app.config]`) with a run's wire overrides applied,
/// as wire scalars. An override of a key the app does not define is an error, as in
/// Flower.
pub fn fuse_wire_run_config(
    defaults: &ConfigMap,
    overrides: &HashMap<String, pb::Scalar>,
) -> Result<HashMap<String, pb::Scalar>> {
    let mut parsed = ConfigMap::new();
    for (key, scalar) in overrides {
        let value = from_scalar(scalar).ok_or_else(|| Error::ConfigValue {
            key: key.clone(),
            problem: "an override that is not a bool, integer, float or string".into(),
        })?;
        parsed.insert(key.clone(), value);
    }
    Ok(to_scalars(&fuse_run_config(defaults, &parsed)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config_overrides;

    #[test]
    fn overrides_replace_defaults_and_unknown_keys_fail() {
        let defaults = parse_config_overrides("lr=0.1 rounds=3 name=\"x\" on=true").unwrap();
        let mut overrides = HashMap::new();
        overrides.insert("rounds".to_string(), pb::Scalar { scalar: Some(Scalar::Sint64(5)) });
        let fused = fuse_wire_run_config(&defaults, &overrides).unwrap();
        assert_eq!(fused["rounds"].scalar, Some(Scalar::Sint64(5)));
        assert_eq!(fused["lr"].scalar, Some(Scalar::Double(0.1)));
        assert_eq!(fused["name"].scalar, Some(Scalar::String("x".into())));
        assert_eq!(fused["on"].scalar, Some(Scalar::Bool(true)));
        overrides.insert("nope".to_string(), pb::Scalar { scalar: Some(Scalar::Bool(true)) });
        let err = fuse_wire_run_config(&defaults, &overrides).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn bytes_cannot_override_a_run_config_value() {
        let defaults = parse_config_overrides("lr=0.1").unwrap();
        let mut overrides = HashMap::new();
        overrides.insert("lr".to_string(), pb::Scalar { scalar: Some(Scalar::Bytes(vec![1])) });
        assert!(fuse_wire_run_config(&defaults, &overrides).is_err());
    }
}
