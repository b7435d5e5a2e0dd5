//! [`FedAvg`]: federated averaging weighted by example counts.

use std::time::Duration;

use super::aggregate::{aggregate_arrayrecords, aggregate_metricrecords, metric_weight};
use super::Strategy;
use crate::error::AppError;
use crate::message::{message_type, Message};
use crate::records::{ArrayRecord, ConfigRecord, ConfigValue, MetricRecord, Record, RecordDict};
use crate::server::Grid;

/// Federated averaging (McMahan et al.), as Flower's `FedAvg`.
///
/// Each round samples `fraction_train` of the online nodes (at least `min_train_nodes`,
/// after waiting for `min_available_nodes`), sends them the global arrays and the train
/// config, and replaces the global arrays with the average of the returned arrays,
/// weighted by the count each reply reports under `weighted_by_key` (default
/// `"num-examples"`). Train and evaluate metrics are averaged with the same weights.
///
/// A reply that carries an error, lacks an ArrayRecord (train) or a MetricRecord with
/// the weighting key, or whose arrays do not match the others' keys and shapes counts as a
/// failure: it is logged and left out.
///
/// ```
/// use sepal_sdk::strategy::FedAvg;
///
/// let strategy = FedAvg::new().min_available_nodes(3).fraction_evaluate(0.5);
/// assert_eq!(strategy.weighted_by_key, "num-examples");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FedAvg {
    /// Fraction of online nodes to train on each round (0 skips training).
    pub fraction_train: f64,
    /// Fraction of online nodes to evaluate on each round (0 skips evaluation).
    pub fraction_evaluate: f64,
    /// Least number of nodes to train on.
    pub min_train_nodes: usize,
    /// Least number of nodes to evaluate on.
    pub min_evaluate_nodes: usize,
    /// Nodes that must be online before a round starts.
    pub min_available_nodes: usize,
    /// The metric that weights each reply (an example count).
    pub weighted_by_key: String,
    /// Where instructions carry the arrays, and train replies return them.
    pub arrayrecord_key: String,
    /// Where instructions carry the config.
    pub configrecord_key: String,
    /// How long to wait for `min_available_nodes` (`None`: no limit of the app's own).
    pub node_wait_timeout: Option<Duration>,
}

impl Default for FedAvg {
    fn default() -> Self {
        FedAvg {
            fraction_train: 1.0,
            fraction_evaluate: 1.0,
            min_train_nodes: 2,
            min_evaluate_nodes: 2,
            min_available_nodes: 2,
            weighted_by_key: "num-examples".to_owned(),
            arrayrecord_key: "arrays".to_owned(),
            configrecord_key: "config".to_owned(),
            node_wait_timeout: None,
        }
    }
}

impl FedAvg {
    /// FedAvg with Flower's defaults: all nodes, at least 2.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder: [`FedAvg::fraction_train`].
    pub fn fraction_train(mut self, fraction: f64) -> Self {
        self.fraction_train = fraction;
        self
    }

    /// Builder: [`FedAvg::fraction_evaluate`].
    pub fn fraction_evaluate(mut self, fraction: f64) -> Self {
        self.fraction_evaluate = fraction;
        self
    }

    /// Builder: [`FedAvg::min_train_nodes`].
    pub fn min_train_nodes(mut self, n: usize) -> Self {
        self.min_train_nodes = n;
        self
    }

    /// Builder: [`FedAvg::min_evaluate_nodes`].
    pub fn min_evaluate_nodes(mut self, n: usize) -> Self {
        self.min_evaluate_nodes = n;
        self
    }

    /// Builder: [`FedAvg::min_available_nodes`].
    pub fn min_available_nodes(mut self, n: usize) -> Self {
        self.min_available_nodes = n;
        self
    }

    /// Builder: [`FedAvg::weighted_by_key`].
    pub fn weighted_by_key(mut self, key: impl Into<String>) -> Self {
        self.weighted_by_key = key.into();
        self
    }

    /// Builder: [`FedAvg::arrayrecord_key`].
    pub fn arrayrecord_key(mut self, key: impl Into<String>) -> Self {
        self.arrayrecord_key = key.into();
        self
    }

    /// Builder: [`FedAvg::configrecord_key`].
    pub fn configrecord_key(mut self, key: impl Into<String>) -> Self {
        self.configrecord_key = key.into();
        self
    }

    /// Builder: [`FedAvg::node_wait_timeout`].
    pub fn node_wait_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.node_wait_timeout = timeout;
        self
    }

    /// Samples nodes and builds one instruction per node.
    #[allow(clippy::too_many_arguments)]
    fn configure(
        &self,
        stage: &str,
        fraction: f64,
        min_nodes: usize,
        round: u64,
        arrays: &ArrayRecord,
        mut config: ConfigRecord,
        grid: &mut dyn Grid,
    ) -> Result<Vec<Message>, AppError> {
        if fraction <= 0.0 {
            return Ok(Vec::new());
        }
        let mut nodes = grid.wait_for_nodes(min_nodes.max(self.min_available_nodes), self.node_wait_timeout)?;
        let total = nodes.len();
        let wanted = ((total as f64 * fraction) as usize).max(min_nodes);
        sample(&mut nodes, wanted, round);
        crate::info!("configure_{stage}: Sampled {} nodes (out of {total})", nodes.len());
        config.insert("server-round", ConfigValue::from(round));
        let content = RecordDict::new()
            .with(self.arrayrecord_key.as_str(), Record::Array(arrays.clone()))
            .with(self.configrecord_key.as_str(), Record::Config(config));
        let message_type = if stage == "train" { message_type::TRAIN } else { message_type::EVALUATE };
        Ok(nodes
            .into_iter()
            .map(|node| Message::new(content.clone(), node, message_type).with_group_id(round.to_string()))
            .collect())
    }

    /// Splits replies into usable ones (with their weight) and logs the failures.
    fn valid_replies<'m>(
        &self,
        stage: &str,
        replies: &'m [Message],
        need_arrays: bool,
    ) -> Vec<(&'m Message, f64, &'m MetricRecord)> {
        let mut valid = Vec::new();
        let mut failures = Vec::new();
        for reply in replies {
            if let Some(error) = reply.error() {
                failures.push(format!("node {}: error {} {}", reply.src_node_id(), error.code, error.reason));
                continue;
            }
            let metrics = reply.content().iter().find_map(|(_, r)| match r {
                Record::Metric(m) if m.contains_key(&self.weighted_by_key) => Some(m),
                _ => None,
            });
            let Some(metrics) = metrics else {
                failures.push(format!("node {}: no MetricRecord with {:?}", reply.src_node_id(), self.weighted_by_key));
                continue;
            };
            let Some(weight) = metric_weight(metrics, &self.weighted_by_key) else {
                failures.push(format!("node {}: {:?} is not a number", reply.src_node_id(), self.weighted_by_key));
                continue;
            };
            if need_arrays && reply_arrays(reply, &self.arrayrecord_key).is_none() {
                failures.push(format!("node {}: no ArrayRecord", reply.src_node_id()));
                continue;
            }
            valid.push((reply, weight, metrics));
        }
        crate::info!("aggregate_{stage}: Received {} results and {} failures", valid.len(), failures.len());
        for failure in &failures {
            crate::warn!("\t> Left out the reply of {failure}");
        }
        valid
    }
}

/// The reply's arrays: the ArrayRecord under `key`, else its only ArrayRecord.
fn reply_arrays<'m>(reply: &'m Message, key: &str) -> Option<&'m ArrayRecord> {
    let content = reply.content();
    content.array_record(key).or_else(|| {
        let mut arrays = content.iter().filter_map(|(_, r)| match r {
            Record::Array(a) => Some(a),
            _ => None,
        });
        match (arrays.next(), arrays.next()) {
            (Some(a), None) => Some(a),
            _ => None,
        }
    })
}

/// Keeps `k` of `nodes`: all of them if `k` covers them, else a window of the sorted ids
/// that moves with the round (deterministic, so runs are reproducible).
fn sample(nodes: &mut Vec<u64>, k: usize, round: u64) {
    nodes.sort_unstable();
    if k >= nodes.len() {
        return;
    }
    // xorshift64* of the round picks the window's start.
    let mut x = round.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let start = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % nodes.len() as u64) as usize;
    nodes.rotate_left(start);
    nodes.truncate(k);
    nodes.sort_unstable();
}

impl Strategy for FedAvg {
    fn name(&self) -> &str {
        "FedAvg"
    }

    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: ConfigRecord,
        grid: &mut dyn Grid,
    ) -> Result<Vec<Message>, AppError> {
        self.configure("train", self.fraction_train, self.min_train_nodes, round, arrays, config, grid)
    }

    fn aggregate_train(
        &mut self,
        _round: u64,
        replies: Vec<Message>,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), AppError> {
        let mut valid = self.valid_replies("train", &replies, true);
        if valid.is_empty() {
            return Ok((None, None));
        }
        // Replies whose arrays do not match the first one's keys and shapes are left out.
        let reference = reply_arrays(valid[0].0, &self.arrayrecord_key).expect("checked");
        valid.retain(|(reply, _, _)| {
            let arrays = reply_arrays(reply, &self.arrayrecord_key).expect("checked");
            let matches = arrays.len() == reference.len()
                && reference
                    .iter()
                    .all(|(k, a)| arrays.get(k).is_some_and(|b| b.shape == a.shape && b.dtype == a.dtype));
            if !matches {
                crate::warn!(
                    "\t> Left out the reply of node {}: its arrays do not match the others'",
                    reply.src_node_id()
                );
            }
            matches
        });
        let arrays: Vec<(&ArrayRecord, f64)> = valid
            .iter()
            .map(|(reply, w, _)| {
                let arrays = reply_arrays(reply, &self.arrayrecord_key).expect("checked");
                (arrays, *w)
            })
            .collect();
        let metrics: Vec<(&MetricRecord, f64)> = valid.iter().map(|(_, w, m)| (*m, *w)).collect();
        let aggregated = aggregate_arrayrecords(&arrays)?;
        let metrics = aggregate_metricrecords(&metrics, &self.weighted_by_key)?;
        Ok((Some(aggregated), Some(metrics)))
    }

    fn configure_evaluate(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: ConfigRecord,
        grid: &mut dyn Grid,
    ) -> Result<Vec<Message>, AppError> {
        self.configure("evaluate", self.fraction_evaluate, self.min_evaluate_nodes, round, arrays, config, grid)
    }

    fn aggregate_evaluate(&mut self, _round: u64, replies: Vec<Message>) -> Result<Option<MetricRecord>, AppError> {
        let valid = self.valid_replies("evaluate", &replies, false);
        if valid.is_empty() {
            return Ok(None);
        }
        let metrics: Vec<(&MetricRecord, f64)> = valid.iter().map(|(_, w, m)| (*m, *w)).collect();
        Ok(Some(aggregate_metricrecords(&metrics, &self.weighted_by_key)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_keeps_all_or_a_sorted_window() {
        let mut all = vec![5, 3, 9];
        sample(&mut all, 3, 1);
        assert_eq!(all, vec![3, 5, 9]);
        for round in 0..20 {
            let mut some = vec![5, 3, 9, 1, 7];
            sample(&mut some, 2, round);
            assert_eq!(some.len(), 2);
            assert!(some[0] < some[1]);
        }
    }
}
