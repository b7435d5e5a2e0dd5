//! Weighted aggregation of records: the numeric core of [`FedAvg`](super::FedAvg).
//!
//! Each function takes records paired with raw weights (for FedAvg, the example counts),
//! normalizes the weights to sum to 1 and sums `value * weight`, as Flower's
//! `aggregate_arrayrecords` / `aggregate_metricrecords` do.
//!
//! The accumulation kernels ([`weighted_accumulate_f32`], [`weighted_accumulate_f64`])
//! work on blocks of [`BLOCK`] elements so that the compiler vectorizes them (SSE/AVX
//! natively, simd128 in Wasm when built with `-C target-feature=+simd128`) and so that a
//! Wasm host's per-loop-iteration interruption check (epoch or fuel) is paid once per block
//! rather than once per element. Results are the same on every target: a multiply then an
//! add per element, in the same order, never fused.

use crate::error::AppError;
use crate::records::{Array, ArrayExt, ArrayRecord, MetricRecord, MetricValue};

/// Elements per unrolled block of the accumulation kernels.
pub const BLOCK: usize = 64;

/// `acc[i] += w * x[i]` for every `i`. Panics if the lengths differ.
pub fn weighted_accumulate_f32(acc: &mut [f32], x: &[f32], w: f32) {
    assert_eq!(acc.len(), x.len(), "accumulator and input lengths differ");
    let mut acc_blocks = acc.chunks_exact_mut(BLOCK);
    let mut x_blocks = x.chunks_exact(BLOCK);
    for (a, b) in (&mut acc_blocks).zip(&mut x_blocks) {
        let a: &mut [f32; BLOCK] = a.try_into().expect("exact chunk");
        let b: &[f32; BLOCK] = b.try_into().expect("exact chunk");
        for i in 0..BLOCK {
            a[i] += w * b[i];
        }
    }
    let tail = acc_blocks.into_remainder();
    for (a, b) in tail.iter_mut().zip(x_blocks.remainder()) {
        *a += w * *b;
    }
}

/// `acc[i] += w * x[i]` for every `i`. Panics if the lengths differ.
pub fn weighted_accumulate_f64(acc: &mut [f64], x: &[f64], w: f64) {
    assert_eq!(acc.len(), x.len(), "accumulator and input lengths differ");
    let mut acc_blocks = acc.chunks_exact_mut(BLOCK);
    let mut x_blocks = x.chunks_exact(BLOCK);
    for (a, b) in (&mut acc_blocks).zip(&mut x_blocks) {
        let a: &mut [f64; BLOCK] = a.try_into().expect("exact chunk");
        let b: &[f64; BLOCK] = b.try_into().expect("exact chunk");
        for i in 0..BLOCK {
            a[i] += w * b[i];
        }
    }
    let tail = acc_blocks.into_remainder();
    for (a, b) in tail.iter_mut().zip(x_blocks.remainder()) {
        *a += w * *b;
    }
}

/// Weights normalized to sum to 1; errors unless every weight is finite and non-negative
/// and their sum positive.
pub fn normalize_weights(weights: &[f64]) -> Result<Vec<f64>, AppError> {
    if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(AppError::new(format!("aggregation weight {w} is not a finite, non-negative number")));
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return Err(AppError::new(format!("aggregation weights sum to {total}; nothing to average")));
    }
    Ok(weights.iter().map(|w| w / total).collect())
}

/// One array's running weighted sum, in its numeric type.
enum Accumulator {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// The elements of `array` in the accumulator's type: `float32` stays `f32`; `float64` and
/// integer arrays become `f64` (as numpy's `int_array * float` does).
fn add_array(acc: &mut Option<Accumulator>, key: &str, array: &Array, w: f64) -> Result<(), AppError> {
    let err = |e: sepal_core::NpyError| AppError::new(format!("array {key:?}: {e}"));
    match array.dtype.as_str() {
        "float32" => {
            let x = array.to_f32().map_err(err)?;
            let a = acc.get_or_insert_with(|| Accumulator::F32(vec![0.0; x.len()]));
            match a {
                Accumulator::F32(a) if a.len() == x.len() => weighted_accumulate_f32(a, &x, w as f32),
                _ => return Err(mismatch(key)),
            }
        }
        dtype => {
            let x: Vec<f64> = match dtype {
                "float64" => array.to_f64().map_err(err)?,
                "int64" => array.to_i64().map_err(err)?.into_iter().map(|v| v as f64).collect(),
                "int32" => array.to_values::<i32>().map_err(err)?.into_iter().map(f64::from).collect(),
                other => {
                    return Err(AppError::new(format!(
                        "array {key:?} has dtype {other:?}; FedAvg averages float32, float64, \
                         int32 and int64 arrays"
                    )))
                }
            };
            let a = acc.get_or_insert_with(|| Accumulator::F64(vec![0.0; x.len()]));
            match a {
                Accumulator::F64(a) if a.len() == x.len() => weighted_accumulate_f64(a, &x, w),
                _ => return Err(mismatch(key)),
            }
        }
    }
    Ok(())
}

fn mismatch(key: &str) -> AppError {
    AppError::new(format!("array {key:?} differs in dtype or size between the records being aggregated"))
}

/// The weighted average of ArrayRecords, key by key (Flower's `aggregate_arrayrecords`).
///
/// Every record must hold the same keys, and each key the same shape and kind of dtype in
/// every record; weights are normalized first. `float32` arrays are averaged in `f32`;
/// `float64`, `int32` and `int64` arrays in `f64`, giving `float64` results. Keys keep
/// the first record's order.
pub fn aggregate_arrayrecords(records: &[(&ArrayRecord, f64)]) -> Result<ArrayRecord, AppError> {
    let Some((first, _)) = records.first() else {
        return Err(AppError::new("no ArrayRecords to aggregate"));
    };
    let weights: Vec<f64> = records.iter().map(|(_, w)| *w).collect();
    let factors = normalize_weights(&weights)?;
    let mut out = ArrayRecord::new();
    for (key, first_array) in first.iter() {
        let shape = first_array.dims();
        let mut acc = None;
        for ((record, _), &w) in records.iter().zip(&factors) {
            let array =
                record.get(key).ok_or_else(|| AppError::new(format!("array {key:?} is missing from a record")))?;
            if array.dims() != shape {
                return Err(AppError::new(format!(
                    "array {key:?} has shape {:?} in one record and {shape:?} in another",
                    array.dims()
                )));
            }
            add_array(&mut acc, key, array, w)?;
        }
        let array = match acc {
            Some(Accumulator::F32(values)) => Array::from_f32(&values, &shape)?,
            Some(Accumulator::F64(values)) => Array::from_f64(&values, &shape)?,
            None => continue,
        };
        out.insert(key, array);
    }
    if let Some((record, _)) = records.iter().find(|(r, _)| r.len() != first.len()) {
        return Err(AppError::new(format!(
            "records hold different arrays: {:?} and {:?}",
            first.keys().collect::<Vec<_>>(),
            record.keys().collect::<Vec<_>>()
        )));
    }
    Ok(out)
}

fn metric_as_f64(v: &MetricValue) -> Option<f64> {
    match v {
        MetricValue::Double(x) => Some(*x),
        MetricValue::Sint64(x) => Some(*x as f64),
        MetricValue::Uint64(x) => Some(*x as f64),
        _ => None,
    }
}

fn metric_as_f64_list(v: &MetricValue) -> Option<Vec<f64>> {
    match v {
        MetricValue::DoubleList(x) => Some(x.clone()),
        MetricValue::SintList(x) => Some(x.iter().map(|&v| v as f64).collect()),
        MetricValue::UintList(x) => Some(x.iter().map(|&v| v as f64).collect()),
        _ => None,
    }
}

/// The weight a record reports under `key`, as a float.
pub fn metric_weight(record: &MetricRecord, key: &str) -> Option<f64> {
    record.get(key).and_then(metric_as_f64)
}

/// The weighted average of MetricRecords, key by key (Flower's `aggregate_metricrecords`).
///
/// Weights are normalized first; each metric is the sum of `value * weight` over the
/// records that have it. Numbers become [`MetricValue::Double`], lists
/// [`MetricValue::DoubleList`] (element by element; a list whose length differs from the
/// first one seen is an error). `exclude_key` (the weighting metric) is left out.
pub fn aggregate_metricrecords(records: &[(&MetricRecord, f64)], exclude_key: &str) -> Result<MetricRecord, AppError> {
    let weights: Vec<f64> = records.iter().map(|(_, w)| *w).collect();
    let factors = normalize_weights(&weights)?;
    let mut out = MetricRecord::new();
    for ((record, _), &w) in records.iter().zip(&factors) {
        for (key, value) in record.iter() {
            if key == exclude_key {
                continue;
            }
            if let Some(x) = metric_as_f64(value) {
                match out.get_mut(key) {
                    Some(MetricValue::Double(sum)) => *sum += x * w,
                    Some(_) => return Err(metric_kind(key)),
                    None => {
                        out.insert(key, MetricValue::Double(x * w));
                    }
                }
            } else if let Some(xs) = metric_as_f64_list(value) {
                match out.get_mut(key) {
                    Some(MetricValue::DoubleList(sums)) if sums.len() == xs.len() => {
                        weighted_accumulate_f64(sums, &xs, w)
                    }
                    Some(_) => return Err(metric_kind(key)),
                    None => {
                        out.insert(key, MetricValue::DoubleList(xs.iter().map(|x| x * w).collect()));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn metric_kind(key: &str) -> AppError {
    AppError::new(format!(
        "metric {key:?} is a number in one record and a list (or a list of another length) \
         in another"
    ))
}
