//! The mlflow test app's ServerApp: one MLflow run per Sepal run (experiment from run
//! config `experiment`, tracking server `mlflow-url`), and per round, once a node is
//! online, the metrics `nodes` (nodes online) and `round-value` (round / 10).

use std::time::Duration;

use sepal_sdk::mlflow::MlflowRun;
use sepal_sdk::prelude::*;

fn server_main(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
    let url = ctx.run_config.require_str("mlflow-url")?.to_string();
    let experiment = ctx.run_config.get_str_or("experiment", "sepal-e2e").to_string();
    let rounds = ctx.run_config.get_u64_or("num-server-rounds", 3);
    let mut run = MlflowRun::start(&url, &experiment, &format!("sepal-run-{}", ctx.run_id))?;
    for round in 1..=rounds {
        let nodes = grid.wait_for_nodes(1, Some(Duration::from_secs(60)))?;
        run.log_metrics(round, &[("nodes", nodes.len() as f64), ("round-value", round as f64 / 10.0)])?;
        sepal_sdk::info!("round {round}: logged to MLflow run {}", run.run_id());
    }
    run.finish()?;
    Ok(())
}

sepal_sdk::export_server_app!(ServerApp::new(server_main));
