//! A SuperLink with `--database` is stopped in the middle of a run and started again on
//! the same file: the interrupted run reaches a final status, earlier runs are still
//! listed with their logs, and the SuperNodes carry on as the same nodes.

use std::time::Duration;

use sepal_tests::wasm_apps::{quickstart, sepal_run};
use sepal_tests::{Federation, Impl, EXAMPLE, RUN_TIMEOUT};

#[test]
fn a_superlink_restarted_mid_run_keeps_runs_logs_and_nodes() {
    let app = quickstart();
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("state.db");
    let mut fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Sepal)
        .superlink_arg("--database")
        .superlink_arg(db.to_string_lossy())
        .start()
        .unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();

    let done = sepal_run(fed.exec_addr(), &app, "num-server-rounds=1").unwrap();
    flwr.wait_for_status(done, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
    let done_log = flwr.log_show(done).unwrap();
    assert!(done_log.contains("quickstart finished: 1 rounds"), "{done_log}");

    let interrupted = sepal_run(fed.exec_addr(), &app, "num-server-rounds=100000").unwrap();
    flwr.wait_for_status(interrupted, |s| s == "running", RUN_TIMEOUT).unwrap();
    fed.restart_superlink().unwrap();

    // Its in-process ServerApp went down with the SuperLink: the run fails once its
    // heartbeat lapses, and says why.
    let status = flwr.wait_for_status(interrupted, |s| s.starts_with("finished"), Duration::from_secs(150)).unwrap();
    assert_eq!(status, "finished:failed");

    let runs = flwr.ls().unwrap();
    assert_eq!(runs.len(), 2, "both runs are still listed: {runs:?}");
    assert_eq!(flwr.run_info(done).unwrap().status, "finished:completed");
    assert_eq!(flwr.log_show(done).unwrap(), done_log, "the earlier run's log survived the restart");

    let after = sepal_run(fed.exec_addr(), &app, "num-server-rounds=1").unwrap();
    flwr.wait_for_status(after, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();

    // The same nodes: each SuperNode registered once and never had to register again.
    for (name, log) in fed.logs() {
        if name.starts_with("supernode") {
            assert_eq!(log.matches("registered with the SuperLink").count(), 1, "{name} registered again:\n{log}");
            assert!(!log.contains("registering again"), "{name} lost its node id:\n{log}");
        }
    }
}
