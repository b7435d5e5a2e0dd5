//! The ServerApp: FedAvg with federated evaluation, each round's scores logged to MLflow.

use std::time::Duration;

use quickstart_app::model::LogisticRegression;
use sepal_sdk::mlflow::MlflowRun;
use sepal_sdk::prelude::*;
use sepal_sdk::strategy::{FedAvg, StartOptions, Strategy};
use sepal_sdk::{info, warn};

/// The MLflow experiment every run logs to (one MLflow run per Sepal run).
pub const EXPERIMENT: &str = "clinic";

/// The ServerApp.
pub fn server_app() -> ServerApp {
    ServerApp::new(server_main)
}

/// A config value in seconds as a `Duration` (negative or NaN: zero; too large: forever).
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

fn server_main(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
    let rc = &ctx.run_config;
    let rounds = rc.get_u64_or("num-server-rounds", 3);
    let min_nodes = usize::try_from(rc.get_u64_or("min-nodes", 2))?;
    let lr = rc.get_f64_or("lr", 0.5);
    let timeout = seconds(rc.get_f64_or("round-timeout", 600.0));
    let node_wait = rc.get_f64("node-wait-timeout").map(seconds);
    let mlflow_url = rc.get_str_or("mlflow-url", "");

    // Start tracking first: a tracking server that is not reachable (or not granted)
    // fails the run before any site spends time training.
    let mut mlflow = if mlflow_url.is_empty() {
        info!("clinic: MLflow tracking is off (run config mlflow-url is empty)");
        None
    } else {
        let run_name = format!("sepal-run-{}", ctx.run_id);
        let run = MlflowRun::start(mlflow_url, EXPERIMENT, &run_name)
            .map_err(|e| AppError::new(format!("starting MLflow run {run_name:?}: {e}")))?;
        info!("clinic: logging to MLflow at {mlflow_url}, experiment {EXPERIMENT:?}, run {run_name:?}");
        Some(run)
    };
    info!("clinic: {rounds} rounds of FedAvg, lr {lr}, waiting for {min_nodes} sites");

    let fedavg = FedAvg::new()
        .min_available_nodes(min_nodes)
        .min_train_nodes(min_nodes)
        .min_evaluate_nodes(min_nodes)
        .node_wait_timeout(node_wait);
    let mut strategy = Tracked { fedavg, mlflow: mlflow.as_mut() };
    let options =
        StartOptions::new(rounds).timeout(Some(timeout)).train_config(ConfigRecord::new().with("lr", lr.into()));
    let result = strategy.start(grid, LogisticRegression::new().to_arrays(), options)?;
    if let Some(run) = mlflow {
        run.finish().map_err(|e| AppError::new(format!("ending the MLflow run: {e}")))?;
    }

    let last = result.evaluate_metrics.last_key_value().map(|(_, m)| m);
    let score = |key: &str| last.and_then(|m| m.get_f64(key)).unwrap_or(f64::NAN);
    let (loss, accuracy) = (score("eval_loss"), score("eval_acc"));
    info!("clinic finished: {rounds} rounds, federated evaluation loss {loss:.4}, accuracy {accuracy:.4}");
    ctx.state.insert("final-arrays", result.arrays.into());
    let summary = MetricRecord::new().with("loss", loss.into()).with("accuracy", accuracy.into());
    ctx.state.insert("final-metrics", summary.into());
    Ok(())
}

/// FedAvg that fails the run when a round gets no usable reply (saying what the sites
/// answered) and logs each round's federated evaluation to MLflow.
struct Tracked<'r> {
    fedavg: FedAvg,
    mlflow: Option<&'r mut MlflowRun>,
}

/// The error replies among `replies`, as "node N: reason".
fn node_errors(replies: &[Message]) -> Vec<String> {
    replies.iter().filter_map(|r| r.error().map(|e| format!("node {}: {}", r.src_node_id(), e.reason))).collect()
}

fn no_result(round: u64, what: &str, errors: &[String]) -> AppError {
    let why = if errors.is_empty() { "no usable reply".to_string() } else { errors.join("; ") };
    AppError::new(format!("round {round}: no site {what} the model: {why}"))
}

impl Strategy for Tracked<'_> {
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
        self.fedavg.configure_train(round, arrays, config, grid)
    }

    fn aggregate_train(
        &mut self,
        round: u64,
        replies: Vec<Message>,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), AppError> {
        let errors = node_errors(&replies);
        match self.fedavg.aggregate_train(round, replies)? {
            (None, _) => Err(no_result(round, "trained", &errors)),
            aggregated => Ok(aggregated),
        }
    }

    fn configure_evaluate(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: ConfigRecord,
        grid: &mut dyn Grid,
    ) -> Result<Vec<Message>, AppError> {
        self.fedavg.configure_evaluate(round, arrays, config, grid)
    }

    fn aggregate_evaluate(&mut self, round: u64, replies: Vec<Message>) -> Result<Option<MetricRecord>, AppError> {
        let errors = node_errors(&replies);
        let metrics =
            self.fedavg.aggregate_evaluate(round, replies)?.ok_or_else(|| no_result(round, "evaluated", &errors))?;
        let (Some(loss), Some(accuracy)) = (metrics.get_f64("eval_loss"), metrics.get_f64("eval_acc")) else {
            warn!("round {round}: the sites sent no eval_loss/eval_acc; nothing to log");
            return Ok(Some(metrics));
        };
        info!("round {round}: federated evaluation loss {loss:.4}, accuracy {accuracy:.4}");
        if let Some(run) = self.mlflow.as_deref_mut() {
            run.log_metrics(round, &[("loss", loss), ("accuracy", accuracy)])
                .map_err(|e| AppError::new(format!("round {round}: logging to MLflow: {e}")))?;
        }
        Ok(Some(metrics))
    }
}
