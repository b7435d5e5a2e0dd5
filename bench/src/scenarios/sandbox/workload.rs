//! What the scenario sends: its sizes, the aggregation and trivial messages (Flower
//! protobuf bytes, as a SuperNode hands them to a ClientApp), and reading the result back.

use anyhow::{Context as _, Result};
use sepal_sdk::prelude::*;

use super::app::{RESULT, WEIGHTS};

/// Sizes and counts of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// ArrayRecords aggregated per message (the number of clients).
    pub records: usize,
    /// float32 elements of each record's one array.
    pub elements: usize,
    /// How many times the aggregation is measured (the median is reported).
    pub repeats: usize,
    /// Trivial calls measured for the per-message overhead.
    pub calls: usize,
    /// Trivial calls made first and not measured.
    pub warmup: usize,
}

impl Sizes {
    /// Smoke: 10 × 256 KiB arrays, 20 calls. Full: 10 × 25 MB arrays (6.25 M float32
    /// each), 1000 calls.
    pub fn new(smoke: bool) -> Sizes {
        if smoke {
            Sizes { records: 10, elements: 256 * 1024 / 4, repeats: 3, calls: 20, warmup: 3 }
        } else {
            Sizes { records: 10, elements: 25_000_000 / 4, repeats: 5, calls: 1000, warmup: 20 }
        }
    }

    /// Bytes of one array's elements.
    pub fn array_bytes(&self) -> u64 {
        self.elements as u64 * 4
    }
}

/// The name of the `i`th client's ArrayRecord.
fn record_name(i: usize) -> String {
    format!("client-{i}")
}

/// Deterministic, distinct values for record `i` (in [0, 1), exact in float32).
fn values(i: usize, n: usize) -> Vec<f32> {
    (0..n).map(|j| ((j * 31 + i * 17) % 1024) as f32 / 1024.0).collect()
}

/// The `train` message: ArrayRecords `client-0` .. `client-<records-1>`, each holding one
/// 1-D float32 array `w` of `elements` values, and their weights (100, 110, ...) in the
/// MetricRecord `weights`, as protobuf bytes.
pub fn aggregation_message(sizes: &Sizes) -> Vec<u8> {
    let mut weights = MetricRecord::new();
    let mut content = RecordDict::new();
    for i in 0..sizes.records {
        let w = Array::vector_f32(&values(i, sizes.elements));
        content.insert(record_name(i), ArrayRecord::new().with("w", w).into());
        weights.insert(record_name(i), MetricValue::Sint64(100 + 10 * i as i64));
    }
    content.insert(WEIGHTS, weights.into());
    Message::new(content, 7, "train").into_proto_bytes()
}

/// A `query` message with no content: the trivial handler's input.
pub fn ping_message() -> Vec<u8> {
    Message::new(RecordDict::new(), 7, "query").into_proto_bytes()
}

/// The node's context (run 1, node 7), as protobuf bytes.
pub fn context() -> Vec<u8> {
    Context::new(1, 7).into_proto_bytes()
}

/// The averaged ArrayRecord in a `train` reply.
pub fn result_of(reply: &[u8]) -> Result<ArrayRecord> {
    let reply = Message::from_proto_bytes(reply).map_err(|e| anyhow::anyhow!("{e}"))?;
    reply.content().array_record(RESULT).cloned().context("the reply has no averaged arrays")
}

#[cfg(test)]
mod tests {
    use super::super::app;
    use super::*;

    #[test]
    fn the_app_averages_the_message_by_its_weights() {
        let sizes = Sizes { records: 3, elements: 100, repeats: 1, calls: 1, warmup: 0 };
        let (reply, _, _) = app::handle_timed(&app::client_app(), aggregation_message(&sizes), &context()).unwrap();
        let w = result_of(&reply).unwrap().get("w").unwrap().to_f32().unwrap();
        assert_eq!(w.len(), 100);
        // Weights 100, 110, 120 over values(i, n).
        let expect = |j: usize| (0..3).map(|i| values(i, 100)[j] as f64 * (100 + 10 * i) as f64 / 330.0).sum::<f64>();
        for j in [0, 1, 57, 99] {
            assert!((w[j] as f64 - expect(j)).abs() < 1e-6, "{j}: {} vs {}", w[j], expect(j));
        }
    }

    #[test]
    fn the_trivial_handler_replies_empty() {
        let (reply, context, _) = app::handle_timed(&app::client_app(), ping_message(), &context()).unwrap();
        let reply = Message::from_proto_bytes(&reply).unwrap();
        assert!(reply.content().is_empty() && !reply.has_error());
        assert!(!context.is_empty());
    }

    #[test]
    fn timings_survive_the_log_line() {
        let t = app::Timings {
            decode: std::time::Duration::from_nanos(12),
            handle: std::time::Duration::from_millis(3),
            encode: std::time::Duration::from_secs(1),
        };
        assert_eq!(app::Timings::parse(&t.log_line(1 << 30)), Some((t, 1 << 30)));
        assert_eq!(app::Timings::parse("bench-timing decode_ns=1"), None);
        assert_eq!(app::Timings::parse("something else"), None);
    }
}
