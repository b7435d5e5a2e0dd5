//! Subprocess isolation: a ServerApp process that cannot start or dies early fails its
//! run, and the reason reaches the run's log (what `flwr log` shows).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use sepal_proto::pb;
use sepal_proto::pb::exec_client::ExecClient;
use sepal_superlink::{Config, Isolation};
use sepal_tests::kit::{self, PyProject, TestLink};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// A SuperLink in subprocess isolation that starts `serverapp_bin` for Python FABs.
async fn start(serverapp_bin: PathBuf) -> (TestLink, ExecClient<Channel>) {
    let link = TestLink::with(Config { serverapp_bin, ..Config::new(Isolation::Subprocess) }).await;
    let exec = link.exec_client().await;
    (link, exec)
}

fn fab() -> pb::Fab {
    kit::fab(&PyProject::new("probe"))
}

/// Submits a run, follows its log to the end, and returns (status, log).
async fn run_to_end(exec: &mut ExecClient<Channel>) -> (pb::RunStatus, String) {
    let req = pb::StartRunRequest { fab: Some(fab()), ..Default::default() };
    let run_id = exec.start_run(req).await.unwrap().into_inner().run_id.unwrap();
    let mut stream =
        exec.stream_logs(pb::StreamLogsRequest { run_id, after_timestamp: 0.0 }).await.unwrap().into_inner();
    let mut log = String::new();
    let follow = async {
        while let Some(frame) = stream.next().await {
            log.push_str(&frame.unwrap().log_output);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), follow).await.expect("the log stream ends when the run finishes");
    let runs = exec.list_runs(pb::ListRunsRequest { run_id: Some(run_id) }).await.unwrap().into_inner();
    (runs.run_dict[&run_id].status.clone().unwrap(), log)
}

#[tokio::test]
async fn missing_serverapp_executable_fails_the_run_with_a_clear_reason() {
    let (_link, mut exec) = start("/nonexistent/flwr-serverapp".into()).await;
    let (status, log) = run_to_end(&mut exec).await;
    assert_eq!((status.status.as_str(), status.sub_status.as_str()), ("finished", "failed"));
    assert!(status.details.contains("could not start the ServerApp process"), "{}", status.details);
    assert!(log.contains("/nonexistent/flwr-serverapp"), "the log names the missing program: {log}");
}

#[tokio::test]
async fn serverapp_that_dies_early_fails_the_run_and_its_output_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dying-serverapp");
    std::fs::write(&script, "#!/bin/sh\necho \"ModuleNotFoundError: no module named probe\" >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_link, mut exec) = start(script).await;
    let (status, log) = run_to_end(&mut exec).await;
    assert_eq!((status.status.as_str(), status.sub_status.as_str()), ("finished", "failed"));
    assert!(status.details.contains("exit status: 3"), "{}", status.details);
    assert!(log.contains("ModuleNotFoundError: no module named probe"), "{log}");

    // The SuperLink keeps launching: the next run is handled the same way.
    let (status, _) = run_to_end(&mut exec).await;
    assert_eq!(status.sub_status, "failed");
}
