//! Restarts in the middle of a run. A SuperLink with `--database` is stopped and started
//! again on the same file: the interrupted run reaches a final status, earlier runs are
//! still listed with their logs, and the SuperNodes carry on as the same nodes. A SuperNode
//! is stopped and started again while it works: it rejoins and the run completes.

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

#[test]
fn a_supernode_restarted_mid_run_rejoins_and_the_run_completes() {
    let app = quickstart();
    // Room in the run's log for all its rounds (it ends with a summary line).
    let output = ["--wasm-output-kib", "2048"];
    let mut fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Sepal)
        .superlink_arg(output[0])
        .superlink_arg(output[1])
        .start()
        .unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();
    // Long enough to outlast the restarts (a round takes milliseconds); a reply lost with
    // the node must not hold a round until its (default, 600 s) timeout.
    let run = sepal_run(fed.exec_addr(), &app, "num-server-rounds=600").unwrap();
    flwr.wait_for_status(run, |s| s == "running", RUN_TIMEOUT).unwrap();

    // Stop node 1 at different points of its work (receiving, training, uploading a reply,
    // idle between rounds): each time it comes back as a new node.
    for pause in [400, 900, 250, 1300] {
        std::thread::sleep(Duration::from_millis(pause));
        assert_eq!(flwr.status(run).unwrap(), "running", "the run ended before the restarts were done");
        fed.restart_supernode(1).unwrap();
    }

    flwr.wait_for_status(run, |s| s == "finished:completed", Duration::from_secs(300)).unwrap();
    let log = flwr.log_show(run).unwrap();
    assert!(log.contains("quickstart finished: 600 rounds"), "{log}");
    let node_log = fed.logs().into_iter().find(|(name, _)| name == "supernode-1").unwrap().1;
    assert!(node_log.contains("registered with the SuperLink"), "the restarted node did not rejoin:\n{node_log}");
}

/// Flower's components against a SuperLink restarted mid-run on its database: Python
/// SuperNodes and an external `flwr-serverapp` / `flwr-clientapp` (process isolation) ride
/// out the restart on their own retries, the messages in flight keep their payload, and the
/// run completes with the same nodes.
#[test]
fn python_components_ride_out_a_superlink_restart_on_its_database() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("state.db");
    let mut fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Python)
        .apps(Impl::Python)
        .isolation(sepal_tests::Isolation::Process)
        .superlink_arg("--database")
        .superlink_arg(db.to_string_lossy())
        .start()
        .unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();
    let run = flwr.run(&["--run-config", "num-server-rounds=4"]).unwrap();
    flwr.wait_for_status(run, |s| s == "running", RUN_TIMEOUT).unwrap();
    // Into the first rounds: messages are in flight.
    std::thread::sleep(Duration::from_secs(4));
    fed.restart_superlink().unwrap();

    let status = flwr.wait_for_status(run, |s| s.starts_with("finished"), Duration::from_secs(240));
    let status = status.unwrap_or_else(|e| panic!("{e:#}\n{}", fed.log_tails(40)));
    assert_eq!(status, "finished:completed", "{}", fed.log_tails(40));
    let fin = flwr.wait_for_final_line(run).unwrap();
    assert!(fin.contains("\"rounds\":4"), "{fin}");
    for proc in fed.supernode_procs() {
        proc.ensure_running().unwrap_or_else(|e| panic!("a Python SuperNode did not survive: {e:#}"));
    }
}
