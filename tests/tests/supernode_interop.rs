//! Sepal's SuperNode (`sepal supernode`) with Python Flower 1.20.0 both ways: under
//! Python's `flower-superlink`, under Sepal's SuperLink, and beside a Python SuperNode, in
//! subprocess and process isolation. Each run must reproduce the all-Python reference
//! (including `context.state` counters growing 1 -> 2 on every node).
//!
//! Needs `cargo build -p sepal-cli` and the venv from scripts/python-env.sh (scripts/test.sh
//! does both).

use std::thread;
use std::time::Duration;

use sepal_tests::federation::{FederationBuilder, Impl};
use sepal_tests::{python_reference_final, scenarios, Federation, Isolation, EXAMPLE, RUN_TIMEOUT};

/// Runs the 2-round scenario on the federation `build` makes, beside the Python reference.
fn matches_python_reference(build: FederationBuilder) {
    thread::scope(|s| {
        let reference = s.spawn(python_reference_final);
        let fed = build.start().unwrap();
        let sepal = scenarios::two_rounds(&fed).unwrap();
        let python = reference.join().expect("reference thread panicked").unwrap();
        assert_eq!(sepal, python, "the run differs from the all-Python reference");
    });
}

fn sepal_nodes(superlink: Impl, isolation: Isolation) -> FederationBuilder {
    Federation::builder().superlink(superlink).supernode(Impl::Sepal).isolation(isolation)
}

#[test]
fn sepal_supernodes_under_python_superlink_subprocess() {
    matches_python_reference(sepal_nodes(Impl::Python, Isolation::Subprocess));
}

#[test]
fn sepal_supernodes_under_python_superlink_process_isolation() {
    matches_python_reference(sepal_nodes(Impl::Python, Isolation::Process));
}

#[test]
fn sepal_supernodes_under_sepal_superlink_subprocess() {
    matches_python_reference(sepal_nodes(Impl::Sepal, Isolation::Subprocess));
}

#[test]
fn sepal_supernodes_under_sepal_superlink_process_isolation() {
    matches_python_reference(sepal_nodes(Impl::Sepal, Isolation::Process));
}

#[test]
fn python_and_sepal_supernodes_together_subprocess() {
    let build = Federation::builder().superlink(Impl::Sepal).supernode(Impl::Python).supernode_at(1, Impl::Sepal);
    matches_python_reference(build);
}

#[test]
fn python_and_sepal_supernodes_together_process_isolation() {
    let build = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Python)
        .supernode_at(1, Impl::Sepal)
        .isolation(Isolation::Process);
    matches_python_reference(build);
}

/// A ClientApp that raises on one node: the ServerApp receives that node's error reply,
/// the run still finishes, and the node serves the next run.
#[test]
fn a_raising_clientapp_reaches_the_serverapp_as_an_error_and_the_node_keeps_serving() {
    let fed = sepal_nodes(Impl::Sepal, Isolation::Subprocess).start().unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();
    let run = flwr.run(&["--run-config", "fail-partition=1 num-server-rounds=1"]).unwrap();
    flwr.wait_for_status(run, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
    flwr.wait_for_final_line(run).unwrap();
    let log = flwr.log_show(run).unwrap();
    assert!(log.contains("ERROR REPLY (train) code=2"), "no error reply from the failing node:\n{log}");
    assert!(log.contains("partition 1 fails on purpose"), "the reason does not reach the ServerApp:\n{log}");
    assert!(log.contains("ROUND 1/1: 1 train replies, 2 eval replies"), "the healthy node's work is kept:\n{log}");

    let next = scenarios::two_rounds(&fed).unwrap();
    assert!(next.contains("\"counters\":{\"0\":2,\"1\":2}"), "both nodes served the next run: {next}");
}

/// The SuperLink (in-memory state) is stopped and started again while the SuperNodes are
/// idle: they register again by themselves and the next run completes.
#[test]
fn sepal_supernodes_rejoin_a_restarted_superlink() {
    let mut fed = sepal_nodes(Impl::Sepal, Isolation::Subprocess).start().unwrap();
    scenarios::two_rounds(&fed).unwrap();
    fed.restart_superlink().unwrap();
    // Give the nodes a moment to notice; the run waits for them anyway (min-nodes).
    thread::sleep(Duration::from_secs(1));
    let fin = scenarios::two_rounds(&fed).unwrap();
    assert!(fin.contains("\"rounds\":2"), "{fin}");
}
