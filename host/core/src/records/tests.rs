//! Record semantics and protobuf conversions.

use sepal_proto::pb;

use super::*;
use crate::error::RecordError;

#[test]
fn insert_keeps_the_position_of_a_replaced_key() {
    let mut m = MetricRecord::new().with("a", 1i64.into()).with("b", 2i64.into());
    assert_eq!(m.insert("a", 3i64.into()), Some(MetricValue::Sint64(1)));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(m.get("a"), Some(&MetricValue::Sint64(3)));
    assert_eq!(m.remove("a"), Some(MetricValue::Sint64(3)));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["b"]);
    assert!(!m.contains_key("a") && m.len() == 1);
}

#[test]
fn unsigned_integers_follow_python() {
    assert_eq!(MetricValue::from(5u64), MetricValue::Sint64(5));
    assert_eq!(MetricValue::from(u64::MAX), MetricValue::Uint64(u64::MAX));
    assert_eq!(ConfigValue::from(vec![1u64, 2]), ConfigValue::SintList(vec![1, 2]));
    let big = vec![1u64, 1 << 63];
    assert_eq!(ConfigValue::from(big.clone()), ConfigValue::UintList(big));
}

fn sample() -> Message {
    let arrays = ArrayRecord::new().with("w", Array::from_f32(&[1.0], &[1]).unwrap());
    let config = ConfigRecord::new().with("s", "x".into()).with("b", vec![b"raw".to_vec()].into());
    let content = RecordDict::new()
        .with("arrays", arrays.into())
        .with("metrics", MetricRecord::new().with("m", 0.5.into()).into())
        .with("config", config.into());
    let metadata = Metadata { run_id: 3, message_id: "id".into(), message_type: "train".into(), ..Metadata::default() };
    Message::with_content(metadata, content)
}

#[test]
fn message_round_trips_through_protobuf() {
    let message = sample();
    let proto = pb::Message::from(&message);
    assert_eq!(Message::try_from(proto).unwrap(), message);
    let error = Message::with_error(Metadata::default(), Error::new(Error::NODE_UNAVAILABLE, "x"));
    assert_eq!(Message::try_from(pb::Message::from(&error)).unwrap(), error);
}

#[test]
fn wire_form_carries_an_empty_record_dict() {
    let wire = sample().to_wire_pb();
    assert_eq!(wire.content, Some(pb::RecordDict::default()));
    assert_eq!(wire.metadata.unwrap().message_id, "id");
    let error = Message::with_error(Metadata::default(), Error::new(2, "boom"));
    let wire = error.to_wire_pb();
    assert!(wire.content.is_none());
    assert_eq!(wire.error.unwrap().reason, "boom");
}

#[test]
fn protobuf_without_values_is_rejected() {
    let proto = pb::MetricRecord { items: vec![pb::metric_record::Item { key: "k".into(), value: None }] };
    let err = MetricRecord::try_from(proto).unwrap_err();
    assert_eq!(err, RecordError::MissingValue { record: "MetricRecord", key: "k".into() });
    let err = Message::try_from(pb::Message::default()).unwrap_err();
    assert_eq!(err, RecordError::MissingMetadata);
}

#[test]
fn typed_record_accessors() {
    let content = sample().content.unwrap();
    assert!(content.array_record("arrays").is_some());
    assert!(content.metric_record("metrics").is_some());
    assert!(content.config_record("config").is_some());
    assert!(content.array_record("metrics").is_none());
}
