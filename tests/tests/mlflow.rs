//! A Wasm ServerApp logs to a real MLflow tracking server (pinned `mlflow server`, SQLite
//! backend) through `sepal_sdk::mlflow`, when the operator grants the server's origin with
//! `sepal superlink --wasm-allow-http`; without the grant the run's log names the refused
//! origin and MLflow gets nothing.

use std::time::Duration;

use sepal_tests::mlflow::MlflowServer;
use sepal_tests::wasm_apps::{wasm_app, SepalFederation};

const TIMEOUT: Duration = Duration::from_secs(120);

fn run_config(mlflow: &MlflowServer, experiment: &str) -> String {
    format!("mlflow-url=\"{}\" experiment=\"{experiment}\" num-server-rounds=3", mlflow.url())
}

fn close(points: &[(u64, f64)], expected: &[(u64, f64)]) -> bool {
    points.len() == expected.len() && points.iter().zip(expected).all(|(p, e)| p.0 == e.0 && (p.1 - e.1).abs() < 1e-9)
}

#[test]
fn a_granted_serverapp_logs_one_point_per_round() {
    let mlflow = MlflowServer::start().unwrap();
    let fed = SepalFederation::start(1, &["--wasm-allow-http", mlflow.url()], &[]).unwrap();
    let run_id = fed.submit(&wasm_app("mlflow"), &run_config(&mlflow, "granted")).unwrap();
    let run = fed.wait_finished(run_id, TIMEOUT).unwrap();
    let log = fed.log_show(run_id).unwrap();
    assert_eq!(run.status, "finished:completed", "{}\n{log}\nmlflow:\n{}", run.details, mlflow.log());

    let experiment = mlflow.experiment_id("granted").unwrap().expect("the app created the experiment");
    let runs = mlflow.runs(&experiment).unwrap();
    assert_eq!(runs.len(), 1, "one MLflow run per Sepal run: {runs:?}");
    let info = &runs[0]["info"];
    assert_eq!(info["run_name"], format!("sepal-run-{run_id}"));
    assert_eq!(info["status"], "FINISHED");
    let ml_run = info["run_id"].as_str().expect("a run id");
    let rounds = mlflow.metric_history(ml_run, "round-value").unwrap();
    assert!(close(&rounds, &[(1, 0.1), (2, 0.2), (3, 0.3)]), "{rounds:?}");
    let nodes = mlflow.metric_history(ml_run, "nodes").unwrap();
    assert!(close(&nodes, &[(1, 1.0), (2, 1.0), (3, 1.0)]), "{nodes:?}");
}

#[test]
fn without_the_grant_the_run_log_names_the_refused_origin_and_mlflow_has_no_run() {
    let mlflow = MlflowServer::start().unwrap();
    // Another origin is granted: only exactly the granted one is reachable.
    let fed = SepalFederation::start(1, &["--wasm-allow-http", "http://127.0.0.1:9"], &[]).unwrap();
    let run_id = fed.submit(&wasm_app("mlflow"), &run_config(&mlflow, "refused")).unwrap();
    let run = fed.wait_finished(run_id, TIMEOUT).unwrap();
    let log = fed.log_show(run_id).unwrap();
    assert_eq!(run.status, "finished:failed", "{}\n{log}", run.details);
    let refused = format!("connection refused by the sandbox: origin {} not granted", mlflow.url());
    assert!(log.contains(&refused), "the app's error names the origin:\n{log}");
    assert!(
        log.contains(&format!("SANDBOX : HTTP request to {0} refused: origin {0} not granted", mlflow.url())),
        "{log}"
    );
    assert_eq!(mlflow.experiment_id("refused").unwrap(), None, "nothing reached MLflow");
}
