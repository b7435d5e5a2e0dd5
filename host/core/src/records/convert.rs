//! Conversions between the record types and the `flwr.proto` messages.
//!
//! Records convert to protobuf infallibly; the way back fails only when a `oneof` is unset
//! or a message has no metadata.

use sepal_proto::pb;
use sepal_proto::pb::config_record_value::Value as PConfig;
use sepal_proto::pb::metric_record_value::Value as PMetric;
use sepal_proto::pb::record_dict::item::Value as PRecord;

use super::{
    Array, ArrayRecord, ConfigRecord, ConfigValue, Error, Message, Metadata, MetricRecord, MetricValue, Record,
    RecordDict,
};
use crate::error::RecordError;

impl From<&Array> for pb::Array {
    fn from(a: &Array) -> Self {
        pb::Array { dtype: a.dtype.clone(), shape: a.shape.clone(), stype: a.stype.clone(), data: a.data.clone() }
    }
}

impl From<pb::Array> for Array {
    fn from(a: pb::Array) -> Self {
        Array { dtype: a.dtype, shape: a.shape, stype: a.stype, data: a.data }
    }
}

impl From<&MetricValue> for pb::MetricRecordValue {
    fn from(v: &MetricValue) -> Self {
        let value = match v.clone() {
            MetricValue::Double(x) => PMetric::Double(x),
            MetricValue::Sint64(x) => PMetric::Sint64(x),
            MetricValue::Uint64(x) => PMetric::Uint64(x),
            MetricValue::DoubleList(vals) => PMetric::DoubleList(pb::DoubleList { vals }),
            MetricValue::SintList(vals) => PMetric::SintList(pb::SintList { vals }),
            MetricValue::UintList(vals) => PMetric::UintList(pb::UintList { vals }),
        };
        pb::MetricRecordValue { value: Some(value) }
    }
}

impl From<PMetric> for MetricValue {
    fn from(v: PMetric) -> Self {
        match v {
            PMetric::Double(x) => MetricValue::Double(x),
            PMetric::Sint64(x) => MetricValue::Sint64(x),
            PMetric::Uint64(x) => MetricValue::Uint64(x),
            PMetric::DoubleList(l) => MetricValue::DoubleList(l.vals),
            PMetric::SintList(l) => MetricValue::SintList(l.vals),
            PMetric::UintList(l) => MetricValue::UintList(l.vals),
        }
    }
}

impl From<&ConfigValue> for pb::ConfigRecordValue {
    fn from(v: &ConfigValue) -> Self {
        let value = match v.clone() {
            ConfigValue::Double(x) => PConfig::Double(x),
            ConfigValue::Sint64(x) => PConfig::Sint64(x),
            ConfigValue::Uint64(x) => PConfig::Uint64(x),
            ConfigValue::Bool(x) => PConfig::Bool(x),
            ConfigValue::String(x) => PConfig::String(x),
            ConfigValue::Bytes(x) => PConfig::Bytes(x),
            ConfigValue::DoubleList(vals) => PConfig::DoubleList(pb::DoubleList { vals }),
            ConfigValue::SintList(vals) => PConfig::SintList(pb::SintList { vals }),
            ConfigValue::UintList(vals) => PConfig::UintList(pb::UintList { vals }),
            ConfigValue::BoolList(vals) => PConfig::BoolList(pb::BoolList { vals }),
            ConfigValue::StringList(vals) => PConfig::StringList(pb::StringList { vals }),
            ConfigValue::BytesList(vals) => PConfig::BytesList(pb::BytesList { vals }),
        };
        pb::ConfigRecordValue { value: Some(value) }
    }
}

impl From<PConfig> for ConfigValue {
    fn from(v: PConfig) -> Self {
        match v {
            PConfig::Double(x) => ConfigValue::Double(x),
            PConfig::Sint64(x) => ConfigValue::Sint64(x),
            PConfig::Uint64(x) => ConfigValue::Uint64(x),
            PConfig::Bool(x) => ConfigValue::Bool(x),
            PConfig::String(x) => ConfigValue::String(x),
            PConfig::Bytes(x) => ConfigValue::Bytes(x),
            PConfig::DoubleList(l) => ConfigValue::DoubleList(l.vals),
            PConfig::SintList(l) => ConfigValue::SintList(l.vals),
            PConfig::UintList(l) => ConfigValue::UintList(l.vals),
            PConfig::BoolList(l) => ConfigValue::BoolList(l.vals),
            PConfig::StringList(l) => ConfigValue::StringList(l.vals),
            PConfig::BytesList(l) => ConfigValue::BytesList(l.vals),
        }
    }
}

fn missing(record: &'static str, key: String) -> RecordError {
    RecordError::MissingValue { record, key }
}

impl From<&ArrayRecord> for pb::ArrayRecord {
    fn from(r: &ArrayRecord) -> Self {
        let items = r.iter().map(|(k, a)| pb::array_record::Item { key: k.to_owned(), value: Some(a.into()) });
        pb::ArrayRecord { items: items.collect() }
    }
}

impl TryFrom<pb::ArrayRecord> for ArrayRecord {
    type Error = RecordError;

    fn try_from(r: pb::ArrayRecord) -> Result<Self, RecordError> {
        r.items
            .into_iter()
            .map(|item| match item.value {
                Some(a) => Ok((item.key, Array::from(a))),
                None => Err(missing("ArrayRecord", item.key)),
            })
            .collect()
    }
}

impl From<&MetricRecord> for pb::MetricRecord {
    fn from(r: &MetricRecord) -> Self {
        let items = r.iter().map(|(k, v)| pb::metric_record::Item { key: k.to_owned(), value: Some(v.into()) });
        pb::MetricRecord { items: items.collect() }
    }
}

impl TryFrom<pb::MetricRecord> for MetricRecord {
    type Error = RecordError;

    fn try_from(r: pb::MetricRecord) -> Result<Self, RecordError> {
        r.items
            .into_iter()
            .map(|item| match item.value.and_then(|v| v.value) {
                Some(v) => Ok((item.key, MetricValue::from(v))),
                None => Err(missing("MetricRecord", item.key)),
            })
            .collect()
    }
}

impl From<&ConfigRecord> for pb::ConfigRecord {
    fn from(r: &ConfigRecord) -> Self {
        let items = r.iter().map(|(k, v)| pb::config_record::Item { key: k.to_owned(), value: Some(v.into()) });
        pb::ConfigRecord { items: items.collect() }
    }
}

impl TryFrom<pb::ConfigRecord> for ConfigRecord {
    type Error = RecordError;

    fn try_from(r: pb::ConfigRecord) -> Result<Self, RecordError> {
        r.items
            .into_iter()
            .map(|item| match item.value.and_then(|v| v.value) {
                Some(v) => Ok((item.key, ConfigValue::from(v))),
                None => Err(missing("ConfigRecord", item.key)),
            })
            .collect()
    }
}

impl From<&Record> for PRecord {
    fn from(r: &Record) -> Self {
        match r {
            Record::Array(r) => PRecord::ArrayRecord(r.into()),
            Record::Metric(r) => PRecord::MetricRecord(r.into()),
            Record::Config(r) => PRecord::ConfigRecord(r.into()),
        }
    }
}

impl TryFrom<PRecord> for Record {
    type Error = RecordError;

    fn try_from(r: PRecord) -> Result<Self, RecordError> {
        Ok(match r {
            PRecord::ArrayRecord(r) => Record::Array(r.try_into()?),
            PRecord::MetricRecord(r) => Record::Metric(r.try_into()?),
            PRecord::ConfigRecord(r) => Record::Config(r.try_into()?),
        })
    }
}

impl From<&RecordDict> for pb::RecordDict {
    fn from(rd: &RecordDict) -> Self {
        let items = rd.iter().map(|(k, r)| pb::record_dict::Item { key: k.to_owned(), value: Some(r.into()) });
        pb::RecordDict { items: items.collect() }
    }
}

impl TryFrom<pb::RecordDict> for RecordDict {
    type Error = RecordError;

    fn try_from(rd: pb::RecordDict) -> Result<Self, RecordError> {
        rd.items
            .into_iter()
            .map(|item| match item.value {
                Some(v) => Ok((item.key, Record::try_from(v)?)),
                None => Err(missing("RecordDict", item.key)),
            })
            .collect()
    }
}

impl From<&Metadata> for pb::Metadata {
    fn from(m: &Metadata) -> Self {
        pb::Metadata {
            run_id: m.run_id,
            message_id: m.message_id.clone(),
            src_node_id: m.src_node_id,
            dst_node_id: m.dst_node_id,
            reply_to_message_id: m.reply_to_message_id.clone(),
            group_id: m.group_id.clone(),
            ttl: m.ttl,
            message_type: m.message_type.clone(),
            created_at: m.created_at,
        }
    }
}

impl From<pb::Metadata> for Metadata {
    fn from(m: pb::Metadata) -> Self {
        Metadata {
            run_id: m.run_id,
            message_id: m.message_id,
            src_node_id: m.src_node_id,
            dst_node_id: m.dst_node_id,
            reply_to_message_id: m.reply_to_message_id,
            group_id: m.group_id,
            ttl: m.ttl,
            message_type: m.message_type,
            created_at: m.created_at,
        }
    }
}

impl From<&Error> for pb::Error {
    fn from(e: &Error) -> Self {
        pb::Error { code: e.code, reason: e.reason.clone() }
    }
}

impl From<pb::Error> for Error {
    fn from(e: pb::Error) -> Self {
        Error { code: e.code, reason: e.reason }
    }
}

/// The full protobuf form, content inline (as in `Context.state` or across the Wasm boundary).
impl From<&Message> for pb::Message {
    fn from(m: &Message) -> Self {
        pb::Message {
            metadata: Some((&m.metadata).into()),
            content: m.content.as_ref().map(Into::into),
            error: m.error.as_ref().map(Into::into),
        }
    }
}

impl TryFrom<pb::Message> for Message {
    type Error = RecordError;

    fn try_from(m: pb::Message) -> Result<Self, RecordError> {
        Ok(Message {
            metadata: m.metadata.ok_or(RecordError::MissingMetadata)?.into(),
            content: m.content.map(RecordDict::try_from).transpose()?,
            error: m.error.map(Into::into),
        })
    }
}

impl Message {
    /// The form Push/PullMessages carry: metadata, plus an empty `RecordDict` as content
    /// for a message with content, or the error for an error message (Flower's
    /// `remove_content_from_message`). The payload travels as objects.
    pub fn to_wire_pb(&self) -> pb::Message {
        pb::Message {
            metadata: Some((&self.metadata).into()),
            content: self.has_content().then(pb::RecordDict::default),
            error: self.error.as_ref().map(Into::into),
        }
    }
}
