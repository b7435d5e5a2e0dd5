//! Federated strategies: what a ServerApp runs round after round.
//!
//! A [`Strategy`] says how to build each round's train and evaluate instructions and how to
//! aggregate the replies; its provided [`Strategy::start`] runs the rounds (as Flower's
//! `strategy.start(grid, initial_arrays, ...)`). [`FedAvg`] is the first one; the
//! [`aggregate`] functions are the building blocks for others.
//!
//! Messages follow Flower's conventions: an instruction's content holds the global arrays
//! under `"arrays"` and a config under `"config"` (with `"server-round"` set); a train
//! reply holds the updated arrays under `"arrays"` and metrics under `"metrics"`,
//! including the example count (`"num-examples"`) that weights it; an evaluate reply holds
//! `"metrics"` with the same count.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::error::AppError;
use crate::message::Message;
use crate::records::{ArrayRecord, ConfigRecord, MetricRecord, MetricValue};
use crate::server::Grid;

pub mod aggregate;
mod fedavg;

pub use fedavg::FedAvg;

/// A central (server-side) evaluation: given the round (0 = before training) and the
/// global arrays, returns metrics, or `None` to skip.
pub type EvaluateFn<'a> = Box<dyn FnMut(u64, &ArrayRecord) -> Result<Option<MetricRecord>, AppError> + 'a>;

/// How [`Strategy::start`] runs.
pub struct StartOptions<'a> {
    /// Number of rounds (default 3).
    pub num_rounds: u64,
    /// How long to wait for each round's replies (default 3600 s, as Flower; `None`: no
    /// limit of the app's own).
    pub timeout: Option<Duration>,
    /// Sent with every train instruction, plus `"server-round"`.
    pub train_config: ConfigRecord,
    /// Sent with every evaluate instruction, plus `"server-round"`.
    pub evaluate_config: ConfigRecord,
    /// Central evaluation, run before the first round and after each round.
    pub evaluate_fn: Option<EvaluateFn<'a>>,
}

impl Default for StartOptions<'_> {
    fn default() -> Self {
        StartOptions {
            num_rounds: 3,
            timeout: Some(Duration::from_secs(3600)),
            train_config: ConfigRecord::new(),
            evaluate_config: ConfigRecord::new(),
            evaluate_fn: None,
        }
    }
}

impl<'a> StartOptions<'a> {
    /// Defaults with `num_rounds` rounds.
    pub fn new(num_rounds: u64) -> Self {
        StartOptions { num_rounds, ..Self::default() }
    }

    /// Builder: the per-round reply timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builder: the train config.
    pub fn train_config(mut self, config: ConfigRecord) -> Self {
        self.train_config = config;
        self
    }

    /// Builder: the evaluate config.
    pub fn evaluate_config(mut self, config: ConfigRecord) -> Self {
        self.evaluate_config = config;
        self
    }

    /// Builder: a central evaluation function.
    pub fn evaluate_fn<F>(mut self, f: F) -> Self
    where
        F: FnMut(u64, &ArrayRecord) -> Result<Option<MetricRecord>, AppError> + 'a,
    {
        self.evaluate_fn = Some(Box::new(f));
        self
    }
}

/// What [`Strategy::start`] returns (Flower's `Result`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrategyResult {
    /// The final global arrays.
    pub arrays: ArrayRecord,
    /// Aggregated train metrics by round.
    pub train_metrics: BTreeMap<u64, MetricRecord>,
    /// Aggregated federated evaluation metrics by round.
    pub evaluate_metrics: BTreeMap<u64, MetricRecord>,
    /// Central evaluation metrics by round (round 0 = the initial arrays).
    pub central_evaluate_metrics: BTreeMap<u64, MetricRecord>,
}

/// A federated strategy (Flower's `Strategy`, message API).
pub trait Strategy {
    /// A short name for logs, e.g. `FedAvg`.
    fn name(&self) -> &str;

    /// Builds the train instructions for `round` (may wait for nodes through `grid`).
    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: ConfigRecord,
        grid: &mut dyn Grid,
    ) -> Result<Vec<Message>, AppError>;

    /// Aggregates the train replies (error replies included) into new global arrays and
    /// train metrics; `None` keeps the arrays as they are.
    fn aggregate_train(
        &mut self,
        round: u64,
        replies: Vec<Message>,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), AppError>;

    /// Builds the evaluate instructions for `round`.
    fn configure_evaluate(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: ConfigRecord,
        grid: &mut dyn Grid,
    ) -> Result<Vec<Message>, AppError>;

    /// Aggregates the evaluate replies into metrics.
    fn aggregate_evaluate(&mut self, round: u64, replies: Vec<Message>) -> Result<Option<MetricRecord>, AppError>;

    /// Runs `options.num_rounds` rounds of train then evaluate, starting from
    /// `initial_arrays`, and logs progress as Flower does.
    fn start(
        &mut self,
        grid: &mut dyn Grid,
        initial_arrays: ArrayRecord,
        mut options: StartOptions<'_>,
    ) -> Result<StrategyResult, AppError> {
        let started = Instant::now();
        crate::info!("Starting {} strategy:", self.name());
        crate::info!("\t> Number of rounds: {}", options.num_rounds);
        let mut result = StrategyResult { arrays: initial_arrays, ..StrategyResult::default() };
        if let Some(evaluate) = options.evaluate_fn.as_mut() {
            if let Some(metrics) = evaluate(0, &result.arrays)? {
                crate::info!("Initial global evaluation results: {}", format_metrics(&metrics));
                result.central_evaluate_metrics.insert(0, metrics);
            }
        }
        for round in 1..=options.num_rounds {
            crate::info!("");
            crate::info!("[ROUND {round}/{}]", options.num_rounds);

            let instructions = self.configure_train(round, &result.arrays, options.train_config.clone(), grid)?;
            let replies = if instructions.is_empty() {
                Vec::new()
            } else {
                grid.send_and_receive(instructions, options.timeout)?
            };
            let (arrays, metrics) = self.aggregate_train(round, replies)?;
            if let Some(arrays) = arrays {
                result.arrays = arrays;
            }
            if let Some(metrics) = metrics {
                crate::info!("\t└──> Aggregated MetricRecord: {}", format_metrics(&metrics));
                result.train_metrics.insert(round, metrics);
            }

            let instructions = self.configure_evaluate(round, &result.arrays, options.evaluate_config.clone(), grid)?;
            let replies = if instructions.is_empty() {
                Vec::new()
            } else {
                grid.send_and_receive(instructions, options.timeout)?
            };
            if let Some(metrics) = self.aggregate_evaluate(round, replies)? {
                crate::info!("\t└──> Aggregated MetricRecord: {}", format_metrics(&metrics));
                result.evaluate_metrics.insert(round, metrics);
            }

            if let Some(evaluate) = options.evaluate_fn.as_mut() {
                if let Some(metrics) = evaluate(round, &result.arrays)? {
                    crate::info!("Global evaluation: {}", format_metrics(&metrics));
                    result.central_evaluate_metrics.insert(round, metrics);
                }
            }
        }
        crate::info!("");
        crate::info!("Strategy execution finished in {:.2}s", started.elapsed().as_secs_f64());
        Ok(result)
    }
}

/// A MetricRecord as Flower logs one: `{'loss': 0.25, 'acc': 0.9}` (floats to 4
/// significant digits).
pub fn format_metrics(metrics: &MetricRecord) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in metrics.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "'{key}': ");
        let _ = match value {
            MetricValue::Double(x) => write!(out, "{}", format_float(*x)),
            MetricValue::Sint64(x) => write!(out, "{x}"),
            MetricValue::Uint64(x) => write!(out, "{x}"),
            MetricValue::DoubleList(xs) => {
                let items: Vec<String> = xs.iter().map(|x| format_float(*x)).collect();
                write!(out, "[{}]", items.join(", "))
            }
            MetricValue::SintList(xs) => write!(out, "{xs:?}"),
            MetricValue::UintList(xs) => write!(out, "{xs:?}"),
        };
    }
    out.push('}');
    out
}

fn format_float(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-4) {
        format!("{x:.4e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
