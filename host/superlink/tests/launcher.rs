//! Subprocess isolation: a ServerApp process that cannot start or dies early fails its
//! run, and the reason reaches the run's log (what `flwr log` shows).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sepal_proto::pb;
use sepal_proto::pb::exec_client::ExecClient;
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::{serve, Config, Isolation, Listeners};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// Starts a SuperLink in subprocess isolation with `serverapp_bin`; returns an Exec client.
async fn start(serverapp_bin: PathBuf) -> (ExecClient<Channel>, tokio::sync::oneshot::Sender<()>) {
    let any = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind(any, any, any).await.unwrap();
    let exec = listeners.exec.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = Config { serverapp_bin, ..Config::new(Isolation::Subprocess) };
    tokio::spawn(serve(config, listeners, Arc::new(MemoryState::new()), async {
        let _ = rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{exec}")).unwrap().connect().await.unwrap();
    (ExecClient::new(channel), tx)
}

fn fab() -> pb::Fab {
    let dir = tempfile::tempdir().unwrap();
    let manifest = "[project]\nname = \"probe\"\nversion = \"1.0.0\"\n\n[tool.flwr.app]\npublisher = \"sepal\"\n\n\
                    [tool.flwr.app.components]\nserverapp = \"probe.server:app\"\nclientapp = \"probe.client:app\"\n";
    std::fs::write(dir.path().join("pyproject.toml"), manifest).unwrap();
    let (content, hash_str, _) = sepal_fab::build_fab(dir.path()).unwrap();
    pb::Fab { hash_str, content }
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
    let (mut exec, _stop) = start("/nonexistent/flwr-serverapp".into()).await;
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
    let (mut exec, _stop) = start(script).await;
    let (status, log) = run_to_end(&mut exec).await;
    assert_eq!((status.status.as_str(), status.sub_status.as_str()), ("finished", "failed"));
    assert!(status.details.contains("exit status: 3"), "{}", status.details);
    assert!(log.contains("ModuleNotFoundError: no module named probe"), "{log}");

    // The SuperLink keeps launching: the next run is handled the same way.
    let (status, _) = run_to_end(&mut exec).await;
    assert_eq!(status.sub_status, "failed");
}
