//! How the runner starts `flwr-clientapp`: forked when it can be, spawned otherwise; and
//! what a message gets when its process fails.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sepal_executor::AppCode;
use sepal_proto::pb;
use tokio::time::Instant;

use super::*;
use crate::clientapps::forkserver::tests::{alive, fake_program, gone, seen, ENTRY};

fn runner_with(program: &Path, fork_server: bool) -> PythonRunner {
    let mode = PythonMode::Subprocess {
        program: program.to_path_buf(),
        clientappio: "127.0.0.1:1".into(),
        flwr_dir: Some("/some/flwr dir".into()),
        fork_server,
    };
    PythonRunner::with_entry(Arc::new(NodeState::default()), mode, ENTRY)
}

fn runner(program: &Path) -> PythonRunner {
    runner_with(program, true)
}

async fn fork_server_pid(runner: &PythonRunner) -> Option<u32> {
    match &runner.forks.lock().await.forks {
        Forks::Ready(server) => Some(server.pid()),
        _ => None,
    }
}

async fn is_off(runner: &PythonRunner) -> bool {
    matches!(runner.forks.lock().await.forks, Forks::Off)
}

fn kill9(pid: u32) {
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
}

/// A message of run 1 that must be answered within `time`.
fn job(time: Duration) -> Job {
    Job {
        run: pb::Run { run_id: 1, ..Default::default() },
        app: AppCode::Python("app:app".into()),
        instruction: pb::Message::default(),
        tree: pb::ObjectTree::default(),
        deadline: Instant::now() + time,
    }
}

/// The spare's token and process id.
async fn spare(runner: &PythonRunner) -> (String, u32) {
    let spare = runner.spare.lock().await;
    let spare = spare.as_ref().expect("a spare");
    let pid = match &spare.process {
        AppProcess::Forked(f) => f.id(),
        AppProcess::Spawned(c) => c.id().unwrap(),
    };
    (spare.token.clone(), pid)
}

async fn spare_ended(runner: &PythonRunner) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while runner.spare.lock().await.as_mut().is_some_and(|s| s.process.is_running()) {
        assert!(std::time::Instant::now() < deadline, "the spare still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_program_that_is_no_python_script_is_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("clientapp.sh");
    std::fs::write(&program, "#!/bin/sh\necho \"$PPID $*\" > \"$(dirname \"$0\")/spawned.txt\"\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runner = runner(&program);
    runner.start_fork_server().await;
    assert!(is_off(&runner).await);

    let mut process = runner.start("tok").await.unwrap();
    assert!(matches!(process, AppProcess::Spawned(_)));
    assert!(process.wait().await.unwrap().success());
    let seen = std::fs::read_to_string(dir.path().join("spawned.txt")).unwrap();
    let parent = std::process::id();
    let want = format!(
        "{parent} --clientappio-api-address 127.0.0.1:1 --token tok --insecure --parent-pid {parent} --flwr-dir /some/flwr dir\n"
    );
    assert_eq!(seen, want);
}

#[tokio::test]
async fn the_fork_server_turned_off_means_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner_with(&fake_program(dir.path()), false);
    runner.start_fork_server().await;
    assert!(is_off(&runner).await);
    let mut spawned = runner.start("tok").await.unwrap();
    assert!(matches!(spawned, AppProcess::Spawned(_)), "{spawned:?}");
    assert!(spawned.wait().await.unwrap().success());
}

#[tokio::test]
async fn a_fork_server_that_ends_is_started_again_and_one_that_keeps_ending_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(&fake_program(dir.path()));
    runner.start_fork_server().await;
    let first = fork_server_pid(&runner).await.expect("a fork server");

    let mut forked = runner.start("one").await.unwrap();
    assert!(matches!(forked, AppProcess::Forked(_)));
    assert!(forked.wait().await.unwrap().success());
    let one = seen(dir.path(), "one").await;
    assert_eq!(one["ppid"], first);
    let args = one["argv"].as_array().unwrap();
    let last = serde_json::Value::from(args[args.len() - 4..].to_vec());
    assert_eq!(last, serde_json::json!(["--parent-pid", first.to_string(), "--flwr-dir", "/some/flwr dir"]));

    // Killed: the process asked for before the end is noticed is spawned, and the next
    // message brings a new fork server.
    kill9(first);
    gone(first).await;
    let mut spawned = runner.start("two").await.unwrap();
    assert!(matches!(spawned, AppProcess::Spawned(_)), "{spawned:?}");
    assert!(spawned.wait().await.unwrap().success());
    let two = seen(dir.path(), "two").await;
    assert_eq!((two["ppid"].as_u64(), two["calls"].as_u64()), (Some(u64::from(std::process::id())), Some(1)));
    let mut last = first;
    for _ in 1..MAX_FORK_SERVER_STARTS {
        runner.start_fork_server().await;
        let again = fork_server_pid(&runner).await.expect("started again");
        assert_ne!(again, last);
        let mut forked = runner.start("again").await.unwrap();
        assert!(matches!(forked, AppProcess::Forked(_)), "{forked:?}");
        assert!(forked.wait().await.unwrap().success());
        kill9(again);
        gone(again).await;
        last = again;
    }
    // Noticed before the next start: it has ended too often, so processes are spawned.
    tokio::time::sleep(Duration::from_millis(200)).await;
    runner.start_fork_server().await;
    assert!(is_off(&runner).await);
    let mut spawned = runner.start("three").await.unwrap();
    assert!(matches!(spawned, AppProcess::Spawned(_)), "{spawned:?}");
    assert!(spawned.wait().await.unwrap().success());
}

#[tokio::test]
async fn a_clientapp_that_exits_or_is_killed_without_replying_is_the_messages_error() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(&fake_program(dir.path()));
    std::fs::write(dir.path().join("token-mode"), "3").unwrap();
    let failure = runner.run(job(Duration::from_secs(60))).await.unwrap_err();
    assert!(matches!(&failure, AppFailure::Raised(_)), "{failure:?}");
    assert!(failure.to_string().contains("ended (exit status: 3) without replying"), "{failure}");

    // The spare started for the next message read the old mode; it is not used once ended.
    spare_ended(&runner).await;
    std::fs::write(dir.path().join("token-mode"), "kill").unwrap();
    let failure = runner.run(job(Duration::from_secs(60))).await.unwrap_err();
    assert!(failure.to_string().contains("SIGKILL"), "{failure}");
    assert!(fork_server_pid(&runner).await.is_some(), "the fork server serves on");
    assert!(runner.state.runs_with_pending_messages().is_empty());
}

#[tokio::test]
async fn a_clientapp_past_its_deadline_is_killed_and_so_is_the_spare_with_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(&fake_program(dir.path()));
    std::fs::write(dir.path().join("token-mode"), "sleep").unwrap();
    let failure = runner.run(job(Duration::from_secs(3))).await.unwrap_err();
    assert!(matches!(failure, AppFailure::TimedOut), "{failure:?}");
    // Each started process writes a file named after its token: the message's and the spare's.
    let (token, spare) = spare(&runner).await;
    seen(dir.path(), &token[..32]).await;
    let pids: Vec<u32> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().unwrap().strip_suffix(".json").map(str::to_owned))
        .map(|name| std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap())
        .map(|text| serde_json::from_str::<serde_json::Value>(&text).unwrap()["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 2, "the message's process and a spare");
    let timed_out = pids.iter().copied().find(|&p| p != spare).unwrap();
    gone(timed_out).await;
    assert!(alive(spare));
    let server = fork_server_pid(&runner).await.unwrap();
    drop(runner);
    gone(spare).await;
    gone(server).await;
}
