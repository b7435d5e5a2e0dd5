//! Owned conversions into the protobuf types.
//!
//! `sepal-core` converts records to protobuf by reference, which copies every array's
//! data. The SDK owns what it encodes, so it moves the data instead: a reply's arrays are
//! copied once, by the protobuf encoder.

use sepal_proto::pb;
use sepal_proto::pb::record_dict::item::Value as PRecord;

use crate::records::{Array, ArrayRecord, Record, RecordDict};

fn array_into_pb(a: Array) -> pb::Array {
    pb::Array {
        dtype: a.dtype,
        shape: a.shape,
        stype: a.stype,
        // Free when the `Bytes` is the sole owner of a `Vec` (as `Array::from_f32` makes).
        data: Vec::from(a.data),
    }
}

fn array_record_into_pb(r: ArrayRecord) -> pb::ArrayRecord {
    pb::ArrayRecord {
        items: r.into_iter().map(|(key, a)| pb::array_record::Item { key, value: Some(array_into_pb(a)) }).collect(),
    }
}

/// Converts a [`RecordDict`] into its protobuf form, moving array data.
pub(crate) fn record_dict_into_pb(rd: RecordDict) -> pb::RecordDict {
    pb::RecordDict {
        items: rd
            .into_iter()
            .map(|(key, record)| {
                let value = match record {
                    Record::Array(r) => PRecord::ArrayRecord(array_record_into_pb(r)),
                    Record::Metric(r) => PRecord::MetricRecord((&r).into()),
                    Record::Config(r) => PRecord::ConfigRecord((&r).into()),
                };
                pb::record_dict::Item { key, value: Some(value) }
            })
            .collect(),
    }
}
