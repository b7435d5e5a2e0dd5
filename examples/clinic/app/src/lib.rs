//! Sepal's clinic example: federated logistic regression where each site's data stays in
//! the site's own database, and the server tracks the training in MLflow.
//!
//! - [`data`]: a site's samples, from PostgreSQL (node config `db-url`, table
//!   `train (x real[], y smallint)`) or from a CSV file under the operator's read-only
//!   data directory (node config `data-file`).
//! - [`client_app`]: trains the quickstart's logistic regression on the site's train
//!   split (`train`) and scores the global model on its test split (`evaluate`).
//! - [`server_app`]: FedAvg with federated evaluation, logging `loss` and `accuracy` per
//!   round (step = round) to the MLflow server at run config `mlflow-url`.
//!
//! The database and the tracking server are reachable only if the operator grants them
//! (`--wasm-allow-connect` on the SuperNodes, `--wasm-allow-http` on the SuperLink); a
//! refused connection fails the message or the run with an error naming it.

pub mod data;
mod server;

use quickstart_app::model::LogisticRegression;
use sepal_sdk::prelude::*;

use data::Source;

pub use server::{server_app, EXPERIMENT};

/// The ClientApp: `train` and `evaluate` on this site's data.
pub fn client_app() -> ClientApp {
    ClientApp::new().train(train).evaluate(evaluate)
}

/// The global model the instruction carries.
fn received_model(msg: &Message) -> Result<LogisticRegression, AppError> {
    let arrays = msg.content().array_record("arrays").ok_or("the instruction carries no \"arrays\" record")?;
    LogisticRegression::from_arrays(arrays)
}

fn train(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
    let mut model = received_model(&msg)?;
    let (train_set, _) = data::split(&Source::from_node_config(&ctx.node_config)?.load()?);
    if train_set.is_empty() {
        return Err("this site has no training samples".into());
    }
    let config = msg.content().config_record("config");
    let lr = config.and_then(|c| c.get_f64("lr")).unwrap_or_else(|| ctx.run_config.get_f64_or("lr", 0.1));
    let round = config.and_then(|c| c.get_u64("server-round")).unwrap_or(0);
    let epochs = usize::try_from(ctx.run_config.get_u64_or("local-epochs", 1))?;
    let loss = model.train(&train_set, epochs, lr as f32, ctx.node_id ^ (round << 32));

    let metrics =
        MetricRecord::new().with("train_loss", loss.into()).with("num-examples", (train_set.len() as i64).into());
    Ok(msg.reply(RecordDict::new().with("arrays", model.to_arrays().into()).with("metrics", metrics.into())))
}

fn evaluate(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
    let model = received_model(&msg)?;
    let (_, test_set) = data::split(&Source::from_node_config(&ctx.node_config)?.load()?);
    if test_set.is_empty() {
        return Err("this site has no test samples".into());
    }
    let (loss, accuracy) = model.evaluate(&test_set);
    let metrics = MetricRecord::new()
        .with("eval_loss", loss.into())
        .with("eval_acc", accuracy.into())
        .with("num-examples", (test_set.len() as i64).into());
    Ok(msg.reply(RecordDict::new().with("metrics", metrics.into())))
}

#[cfg(test)]
mod tests;
