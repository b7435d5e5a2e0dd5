//! The README's main job: `sepal demo` runs the Wasm quickstart on a local federation,
//! with no Python anywhere on the path, and accuracy clearly improves.

use std::process::Command;

use sepal_tests::wasm_apps::{quickstart, sepal_run};
use sepal_tests::{sepal_bin, Federation, Impl, EXAMPLE, RUN_TIMEOUT};

/// The first and last accuracy from the quickstart's summary line
/// ("quickstart finished: 3 rounds, accuracy 0.5080 -> 0.9300, ...").
fn accuracies(log: &str) -> (f64, f64) {
    let line = log.lines().find(|l| l.contains("quickstart finished")).expect("the summary line");
    let tail = line.split("accuracy ").nth(1).expect("accuracy in the summary");
    let mut parts = tail.split([' ', ',']).filter(|s| !s.is_empty() && *s != "->");
    let first: f64 = parts.next().unwrap().parse().unwrap();
    let last: f64 = parts.next().unwrap().parse().unwrap();
    (first, last)
}

#[test]
fn demo_runs_the_wasm_quickstart_without_python() {
    let app = quickstart();
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

/// The real `flwr ls`, `flwr log` and `flwr stop` work on Wasm runs.
#[test]
fn the_flwr_cli_lists_logs_and_stops_wasm_runs() {
    let app = quickstart();
    let fed = Federation::builder().superlink(Impl::Sepal).supernode(Impl::Sepal).start().unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();

    let done = sepal_run(fed.exec_addr(), &app, "num-server-rounds=2").unwrap();
    flwr.wait_for_status(done, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
    let log = flwr.log_show(done).unwrap();
    assert!(log.contains("quickstart finished: 2 rounds"), "flwr log lacks the Wasm ServerApp's lines:\n{log}");

    let long = sepal_run(fed.exec_addr(), &app, "num-server-rounds=100000").unwrap();
    flwr.wait_for_status(long, |s| s == "running", RUN_TIMEOUT).unwrap();
    let runs = flwr.ls().unwrap();
    let status = |id: u64| runs.iter().find(|r| r.run_id == id).map(|r| r.status.clone());
    assert_eq!(status(done).as_deref(), Some("finished:completed"), "{runs:?}");
    assert_eq!(status(long).as_deref(), Some("running"), "{runs:?}");
    assert!(runs.iter().all(|r| r.fab_name == "quickstart"), "{runs:?}");

    flwr.stop(long).unwrap();
    flwr.wait_for_status(long, |s| s == "finished:stopped", std::time::Duration::from_secs(30)).unwrap();
    let after = sepal_run(fed.exec_addr(), &app, "num-server-rounds=1").unwrap();
    flwr.wait_for_status(after, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
}
