//! Values of metric and config records, mirroring the protobuf `oneof`s.

/// A value of a [`MetricRecord`](super::MetricRecord) (`flwr.proto.MetricRecordValue`).
///
/// Python `int`s become `Sint64`, or `Uint64` above `i64::MAX`; a list holding such a value
/// becomes a `UintList`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A float.
    Double(f64),
    /// A signed integer.
    Sint64(i64),
    /// An integer above `i64::MAX`.
    Uint64(u64),
    /// A list of floats.
    DoubleList(Vec<f64>),
    /// A list of signed integers.
    SintList(Vec<i64>),
    /// A list of integers some of which exceed `i64::MAX`.
    UintList(Vec<u64>),
}

/// A value of a [`ConfigRecord`](super::ConfigRecord) (`flwr.proto.ConfigRecordValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// A float.
    Double(f64),
    /// A signed integer.
    Sint64(i64),
    /// An integer above `i64::MAX`.
    Uint64(u64),
    /// A boolean.
    Bool(bool),
    /// A string.
    String(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A list of floats.
    DoubleList(Vec<f64>),
    /// A list of signed integers.
    SintList(Vec<i64>),
    /// A list of integers some of which exceed `i64::MAX`.
    UintList(Vec<u64>),
    /// A list of booleans (also what Python makes of an empty list).
    BoolList(Vec<bool>),
    /// A list of strings.
    StringList(Vec<String>),
    /// A list of byte strings.
    BytesList(Vec<Vec<u8>>),
}

macro_rules! from_scalar {
    ($enum:ident: $($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for $enum {
            fn from(v: $t) -> Self {
                $enum::$variant(v.into())
            }
        })*
    };
}

from_scalar!(MetricValue: f64 => Double, i64 => Sint64, Vec<f64> => DoubleList,
    Vec<i64> => SintList);
from_scalar!(ConfigValue: f64 => Double, i64 => Sint64, bool => Bool, String => String,
    &str => String, Vec<u8> => Bytes, Vec<f64> => DoubleList, Vec<i64> => SintList,
    Vec<bool> => BoolList, Vec<String> => StringList, Vec<Vec<u8>> => BytesList);

/// Python's rule: an integer is `sint64` unless it exceeds `i64::MAX`.
macro_rules! from_unsigned {
    ($enum:ident) => {
        impl From<u64> for $enum {
            fn from(v: u64) -> Self {
                match i64::try_from(v) {
                    Ok(v) => $enum::Sint64(v),
                    Err(_) => $enum::Uint64(v),
                }
            }
        }

        impl From<Vec<u64>> for $enum {
            fn from(v: Vec<u64>) -> Self {
                match v.iter().map(|&x| i64::try_from(x)).collect() {
                    Ok(signed) => $enum::SintList(signed),
                    Err(_) => $enum::UintList(v),
                }
            }
        }
    };
}

from_unsigned!(MetricValue);
from_unsigned!(ConfigValue);
