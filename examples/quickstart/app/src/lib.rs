//! Sepal quickstart: federated logistic regression, written with `sepal-sdk`.
//!
//! - [`data`]: a synthetic two-blob data set; each node keeps its own partition, chosen by
//!   its node config (`partition-id`, `num-partitions`).
//! - [`model`]: logistic regression with mini-batch SGD.
//! - [`client_app`]: trains on the local partition (`train`) and evaluates on its test
//!   split (`evaluate`).
//! - [`server_app`]: FedAvg for `num-server-rounds` rounds, weighted by `num-examples`,
//!   with a central evaluation on a held-out set.
//!
//! The `client` and `server` crates export these two apps as Wasm components; everything
//! here is also tested natively with `cargo test`.

pub mod data;
pub mod model;

use std::time::Duration;

use sepal_sdk::prelude::*;
use sepal_sdk::strategy::{FedAvg, StartOptions, Strategy};
use sepal_sdk::{info, warn};

use data::Dataset;
use model::LogisticRegression;

/// The ClientApp: `train` and `evaluate` handlers.
pub fn client_app() -> ClientApp {
    ClientApp::new().train(train).evaluate(evaluate)
}

/// The ServerApp: FedAvg rounds of train and evaluate.
pub fn server_app() -> ServerApp {
    ServerApp::new(server_main)
}

/// This node's (train, test) split, from its node config.
fn local_data(ctx: &Context) -> Result<(Dataset, Dataset), AppError> {
    let partition_id = ctx.node_config.get_u64_or("partition-id", 0);
    let num_partitions = ctx.node_config.get_u64_or("num-partitions", 1);
    Ok(data::partition(usize::try_from(partition_id)?, usize::try_from(num_partitions)?)?)
}

/// The global model the instruction carries.
fn received_model(msg: &Message) -> Result<LogisticRegression, AppError> {
    let arrays = msg.content().array_record("arrays").ok_or("the instruction carries no \"arrays\" record")?;
    LogisticRegression::from_arrays(arrays)
}

fn train(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
    let mut model = received_model(&msg)?;
    let (train_set, _) = local_data(ctx)?;
    let config = msg.content().config_record("config");
    let lr = config.and_then(|c| c.get_f64("lr")).unwrap_or_else(|| ctx.run_config.get_f64_or("lr", 0.1));
    let round = config.and_then(|c| c.get_u64("server-round")).unwrap_or(0);
    let epochs = ctx.run_config.get_u64_or("local-epochs", 1);
    let partition_id = ctx.node_config.get_u64_or("partition-id", 0);
    let seed = (partition_id << 32) ^ round;
    let loss = model.train(&train_set, usize::try_from(epochs)?, lr as f32, seed);

    let metrics =
        MetricRecord::new().with("train_loss", loss.into()).with("num-examples", (train_set.len() as i64).into());
    Ok(msg.reply(RecordDict::new().with("arrays", model.to_arrays().into()).with("metrics", metrics.into())))
}

fn evaluate(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
    let model = received_model(&msg)?;
    let (_, test_set) = local_data(ctx)?;
    let (loss, accuracy) = model.evaluate(&test_set);
    let metrics = MetricRecord::new()
        .with("eval_loss", loss.into())
        .with("eval_acc", accuracy.into())
        .with("num-examples", (test_set.len() as i64).into());
    Ok(msg.reply(RecordDict::new().with("metrics", metrics.into())))
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
    info!(
        "quickstart: logistic regression on {}-D Gaussian blobs, {rounds} rounds, lr {lr}, \
         waiting for {min_nodes} nodes",
        data::DIM
    );

    let test_set = data::central_test_set();
    let mut strategy = FedAvg::new()
        .min_available_nodes(min_nodes)
        .min_train_nodes(min_nodes)
        .min_evaluate_nodes(min_nodes)
        .node_wait_timeout(node_wait);
    let options = StartOptions::new(rounds)
        .timeout(Some(timeout))
        .train_config(ConfigRecord::new().with("lr", lr.into()))
        .evaluate_fn(|_round, arrays| {
            // The strategy logs these ("Global evaluation") after each round.
            let (loss, accuracy) = LogisticRegression::from_arrays(arrays)?.evaluate(&test_set);
            Ok(Some(MetricRecord::new().with("loss", loss.into()).with("accuracy", accuracy.into())))
        });
    let result = strategy.start(grid, LogisticRegression::new().to_arrays(), options)?;

    for (round, metrics) in &result.evaluate_metrics {
        info!(
            "round {round}: federated evaluation loss {:.4}, accuracy {:.4}",
            metrics.get_f64("eval_loss").unwrap_or(f64::NAN),
            metrics.get_f64("eval_acc").unwrap_or(f64::NAN)
        );
    }
    let central = |round: u64, key: &str| {
        result.central_evaluate_metrics.get(&round).and_then(|m| m.get_f64(key)).unwrap_or(f64::NAN)
    };
    let (initial, last) = (central(0, "accuracy"), central(rounds, "accuracy"));
    let last_loss = central(rounds, "loss");
    if result.evaluate_metrics.len() as u64 != rounds {
        warn!("only {} of {rounds} rounds were evaluated by the nodes", result.evaluate_metrics.len());
    }
    info!(
        "quickstart finished: {rounds} rounds, accuracy {initial:.4} -> {last:.4}, \
         final loss {last_loss:.4}"
    );

    // The final model and scores stay in the run's context.
    let summary = MetricRecord::new()
        .with("rounds", (rounds as i64).into())
        .with("initial-accuracy", initial.into())
        .with("accuracy", last.into())
        .with("loss", last_loss.into());
    ctx.state.insert("final-arrays", result.arrays.into());
    ctx.state.insert("final-metrics", summary.into());
    Ok(())
}

#[cfg(test)]
mod tests;
