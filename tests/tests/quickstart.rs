//! The README's main job: `sepal demo` runs the Wasm quickstart on a local federation,
//! with no Python anywhere on the path, and accuracy clearly improves.

use std::process::Command;
use std::sync::OnceLock;

use sepal_tests::{repo_root, sepal_bin, Federation, Impl, EXAMPLE, RUN_TIMEOUT};

/// Builds the quickstart's components once per test binary.
fn quickstart_dir() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = repo_root().join("examples/quickstart");
            let status = Command::new(dir.join("build.sh")).env_remove("RUSTFLAGS").status().expect("run build.sh");
            assert!(status.success(), "examples/quickstart/build.sh failed");
            dir
        })
        .clone()
}

/// The first and last accuracy from the quickstart's summary line
/// ("quickstart finished: 3 rounds, accuracy 0.5080 -> 0.9300, ...").
fn accuracies(log: &str) -> (f64, f64) {
    let line = log.lines().find(|l| l.contains("quickstart finished")).expect("the summary line");
    let tail = line.split("accuracy ").nth(1).expect("accuracy in the summary");
    let mut parts = tail.split(|c: char| c == ' ' || c == ',').filter(|s| !s.is_empty() && *s != "->");
    let first: f64 = parts.next().unwrap().parse().unwrap();
    let last: f64 = parts.next().unwrap().parse().unwrap();
    (first, last)
}

#[test]
fn demo_runs_the_wasm_quickstart_without_python() {
    let app = quickstart_dir();
    let empty_path = tempfile::tempdir().unwrap();
    let out = Command::new(sepal_bin())
        .args(["demo"])
        .arg(&app)
        .args(["--nodes", "3", "--run-config", "num-server-rounds=3"])
        .env("PATH", empty_path.path())
        .output()
        .expect("run sepal demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sepal demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("finished:completed"), "{stdout}");
    for round in 1..=3 {
        assert!(stdout.contains(&format!("round {round}: federated evaluation")), "round {round} missing:\n{stdout}");
    }
    let (first, last) = accuracies(&stdout);
    assert!(last > first + 0.2 && last > 0.85, "accuracy should clearly improve: {first} -> {last}");
}

#[test]
fn demo_reports_an_app_without_components_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\nversion = \"1.0.0\"\n[tool.flwr.app]\npublisher = \"p\"\n\
         [tool.flwr.app.components]\nserverapp = \"server.wasm\"\nclientapp = \"client.wasm\"\n",
    )
    .unwrap();
    let out = Command::new(sepal_bin()).arg("demo").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.wasm") || stderr.contains("client.wasm"), "names the missing component: {stderr}");
}

/// Submits the quickstart with `sepal run` and returns the run id.
fn sepal_run(app: &std::path::Path, exec: std::net::SocketAddr, run_config: &str) -> u64 {
    let out = Command::new(sepal_bin())
        .arg("run")
        .arg(app)
        .args(["--superlink", &exec.to_string(), "--format", "json", "--run-config", run_config])
        .output()
        .expect("run sepal run");
    assert!(out.status.success(), "sepal run failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from sepal run");
    json["run-id"].as_u64().expect("a run id")
}

/// The real `flwr ls`, `flwr log` and `flwr stop` work on Wasm runs.
#[test]
fn the_flwr_cli_lists_logs_and_stops_wasm_runs() {
    let app = quickstart_dir();
    let fed = Federation::builder().superlink(Impl::Sepal).supernode(Impl::Sepal).start().unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();

    let done = sepal_run(&app, fed.exec_addr(), "num-server-rounds=2");
    flwr.wait_for_status(done, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
    let log = flwr.log_show(done).unwrap();
    assert!(log.contains("quickstart finished: 2 rounds"), "flwr log lacks the Wasm ServerApp's lines:\n{log}");

    let long = sepal_run(&app, fed.exec_addr(), "num-server-rounds=100000");
    flwr.wait_for_status(long, |s| s == "running", RUN_TIMEOUT).unwrap();
    let runs = flwr.ls().unwrap();
    let status = |id: u64| runs.iter().find(|r| r.run_id == id).map(|r| r.status.clone());
    assert_eq!(status(done).as_deref(), Some("finished:completed"), "{runs:?}");
    assert_eq!(status(long).as_deref(), Some("running"), "{runs:?}");
    assert!(runs.iter().all(|r| r.fab_name == "quickstart"), "{runs:?}");

    flwr.stop(long).unwrap();
    flwr.wait_for_status(long, |s| s == "finished:stopped", std::time::Duration::from_secs(30)).unwrap();
    let after = sepal_run(&app, fed.exec_addr(), "num-server-rounds=1");
    flwr.wait_for_status(after, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
}
