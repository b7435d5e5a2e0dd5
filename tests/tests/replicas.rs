//! High availability: two `sepal superlink` replicas on one PostgreSQL database behind a
//! real HAProxy, SuperNodes and the real `flwr` CLI connected through the balancer. One
//! replica is killed (SIGKILL) mid-run and the run still completes through the other.

use std::collections::HashMap;
use std::time::Duration;

use sepal_tests::replicas::Replicas;
use sepal_tests::wasm_apps::{quickstart, sepal_run};
use sepal_tests::{poll, Federation, Flwr, Impl, Isolation, EXAMPLE, EXPECTED_FINAL_2_ROUNDS, RUN_TIMEOUT};

/// Runs, listed through the balancer: each once, by id.
fn listed_once(flwr: &Flwr) -> HashMap<u64, String> {
    let runs = flwr.ls().expect("flwr ls through the balancer");
    let by_id: HashMap<u64, String> = runs.iter().map(|r| (r.run_id, r.status.clone())).collect();
    assert_eq!(by_id.len(), runs.len(), "a run is listed twice: {runs:?}");
    by_id
}

/// A Wasm ServerApp runs on the replica holding its run's lease; when that replica dies,
/// the other takes the lapsed lease over and starts the ServerApp again.
#[test]
fn a_wasm_run_completes_when_the_replica_running_its_serverapp_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(2, Isolation::Subprocess, &[], dir.path()).unwrap();
    let fed = Federation::builder()
        .superlink_at(replicas.balancer())
        .superlink(Impl::Sepal)
        .supernode(Impl::Sepal)
        .start()
        .unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();
    let exec = replicas.balancer().exec;

    let run = sepal_run(exec, &quickstart(), "num-server-rounds=200").unwrap();
    let owner = poll("the replica running the ServerApp", RUN_TIMEOUT, Duration::from_millis(50), || {
        Ok((0..2).find(|&i| replicas.log(i).contains("Wasm ServerApp running")))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", replicas.log_tails(40)));
    replicas.kill(owner);

    let status = flwr.wait_for_status(run, |s| s == "finished:completed", RUN_TIMEOUT * 2);
    status.unwrap_or_else(|e| panic!("{e:#}\n{}{}", replicas.log_tails(60), fed.log_tails(30)));
    let log = flwr.log_show(run).unwrap();
    assert!(log.contains("starts again on another replica"), "the run was not taken over mid-run:\n{log}");
    assert!(log.contains("quickstart finished: 200 rounds"), "{log}");

    let after = sepal_run(exec, &quickstart(), "num-server-rounds=1").unwrap();
    flwr.wait_for_status(after, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
    let runs = listed_once(&flwr);
    assert_eq!(runs.get(&run).map(String::as_str), Some("finished:completed"), "{runs:?}");
    assert_eq!(runs.get(&after).map(String::as_str), Some("finished:completed"), "{runs:?}");
}

/// Flower's own SuperNodes and ServerApp process (process isolation) reconnect through the
/// balancer when the replica they talk to dies, and the run's result is the same as on an
/// undisturbed Flower federation.
#[test]
fn a_python_run_completes_through_the_other_replica_with_python_supernodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(2, Isolation::Process, &[], dir.path()).unwrap();
    let fed = Federation::builder().superlink_at(replicas.balancer()).isolation(Isolation::Process).start().unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();

    let run = flwr.run(&[]).unwrap();
    flwr.wait_for_status(run, |s| s == "running", RUN_TIMEOUT).unwrap();
    // Into the first round (instructions out, replies on their way), the replica serving
    // the ServerApp process dies.
    std::thread::sleep(Duration::from_secs(3));
    let serverappio = |i| replicas.calls_served(i, "flwr.proto.ServerAppIo").unwrap();
    let busiest = if serverappio(0) >= serverappio(1) { 0 } else { 1 };
    assert!(serverappio(busiest) > 0.0, "no replica has served the ServerApp:\n{}", replicas.log_tails(40));
    replicas.kill(busiest);

    let status = flwr.wait_for_status(run, |s| s == "finished:completed", RUN_TIMEOUT * 2);
    status.unwrap_or_else(|e| panic!("{e:#}\n{}{}", replicas.log_tails(60), fed.log_tails(40)));
    assert_eq!(flwr.wait_for_final_line(run).unwrap(), EXPECTED_FINAL_2_ROUNDS);
    let runs = listed_once(&flwr);
    assert_eq!(runs.len(), 1, "{runs:?}");
}
