//! Values of every kind a run's config, federation options and context can hold, for the
//! round-trip checks.

use std::collections::HashMap;

use sepal_proto::pb;

pub(super) fn scalar(s: pb::scalar::Scalar) -> pb::Scalar {
    pb::Scalar { scalar: Some(s) }
}

fn config_item(key: &str, v: pb::config_record_value::Value) -> pb::config_record::Item {
    pb::config_record::Item { key: key.into(), value: Some(pb::ConfigRecordValue { value: Some(v) }) }
}

pub(super) fn every_config_value() -> pb::ConfigRecord {
    use pb::config_record_value::Value as V;
    pb::ConfigRecord {
        items: vec![
            config_item("double", V::Double(-2.5e-300)),
            config_item("inf", V::Double(f64::INFINITY)),
            config_item("sint", V::Sint64(i64::MIN)),
            config_item("uint", V::Uint64(u64::MAX)),
            config_item("bool", V::Bool(true)),
            config_item("string", V::String("grüße \u{0} 🌸".into())),
            config_item("bytes", V::Bytes(vec![0, 255, 1])),
            config_item("doubles", V::DoubleList(pb::DoubleList { vals: vec![1.5, -0.0] })),
            config_item("sints", V::SintList(pb::SintList { vals: vec![i64::MAX, -1] })),
            config_item("uints", V::UintList(pb::UintList { vals: vec![u64::MAX, 0] })),
            config_item("bools", V::BoolList(pb::BoolList { vals: vec![false, true] })),
            config_item("strings", V::StringList(pb::StringList { vals: vec!["a".into(), String::new()] })),
            config_item("bytes_list", V::BytesList(pb::BytesList { vals: vec![vec![], vec![7]] })),
        ],
    }
}

pub(super) fn every_scalar() -> HashMap<String, pb::Scalar> {
    use pb::scalar::Scalar as S;
    HashMap::from([
        ("double".to_string(), scalar(S::Double(0.1))),
        ("neg".to_string(), scalar(S::Double(-1e308))),
        ("uint".to_string(), scalar(S::Uint64(u64::MAX))),
        ("sint".to_string(), scalar(S::Sint64(i64::MIN))),
        ("bool".to_string(), scalar(S::Bool(false))),
        ("string".to_string(), scalar(S::String("lr = 0.01 ✓".into()))),
        ("bytes".to_string(), scalar(S::Bytes(vec![0, 1, 2, 255]))),
        ("empty".to_string(), scalar(S::String(String::new()))),
    ])
}
