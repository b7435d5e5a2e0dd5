//! What one run may take from the others (issue #11), end to end: a real `sepal superlink`
//! and `sepal supernode`s run a hostile Wasm ServerApp (`tests/apps/hostile`, attacks in
//! its `quota` module) beside or before the Wasm quickstart, which must still finish in
//! about the time it takes alone, while the hostile run is refused with an error that
//! names the limit and the SuperLink stays within a stated memory bound.
//!
//! Needs `cargo build -p sepal-cli` and the `wasm32-wasip2` target; the Python ServerApp
//! test also the venv from scripts/python-env.sh (flwr 1.20.0).

use std::path::Path;
use std::time::{Duration, Instant};

use sepal_tests::wasm_apps::{quickstart, sepal_run, wasm_app, SepalFederation};
use sepal_tests::{Federation, Impl};

/// Upper bound for any one run here to finish.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Two quick rounds of the quickstart: the good run.
const GOOD_RUN: &str = "num-server-rounds=2";

/// The most the good run may take beside a hostile one: a small multiple of its time
/// alone, with slack for a shared, noisy machine (a hostile run that held it up would
/// take minutes to hours, as before these limits).
fn bound(alone: Duration) -> Duration {
    alone * 5 + Duration::from_secs(15)
}

/// Held by each test: they compare the quickstart's time alone with its time beside a
/// hostile run, which another test's hostile run on the same two cores would distort.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Submits the quickstart and returns its id.
fn submit_good(fed: &SepalFederation) -> u64 {
    fed.submit(&quickstart(), GOOD_RUN).unwrap()
}

/// Waits for a run to complete; its log.
fn completed(fed: &SepalFederation, run_id: u64) -> String {
    let status = fed.wait_finished(run_id, RUN_TIMEOUT).unwrap();
    let log = fed.log_show(run_id).unwrap();
    assert_eq!(status.status, "finished:completed", "run {run_id}: {status:?}; log:\n{log}");
    log
}

/// The quickstart alone, start to finish.
fn good_run_alone(fed: &SepalFederation) -> Duration {
    let started = Instant::now();
    completed(fed, submit_good(fed));
    started.elapsed()
}

/// Submits a hostile ServerApp attack (`attack="..."` plus `extra` run config).
fn submit_attack(fed: &SepalFederation, attack: &str, extra: &str) -> u64 {
    fed.submit(&wasm_app("hostile"), &format!("attack=\"{attack}\" {extra}")).unwrap()
}

/// The line the hostile ServerApp logs for `attack` (`SERVER <verb>: ...`).
fn outcome(log: &str, verb: &str) -> String {
    let marker = format!("SERVER {verb}: ");
    let line = log.lines().find(|l| l.contains(&marker)).unwrap_or_else(|| panic!("no {marker:?} in:\n{log}"));
    line[line.find(&marker).unwrap() + marker.len()..].to_string()
}

#[test]
fn pushes_past_a_runs_quotas_are_refused_whole_and_the_superlink_stays_small() {
    let _serial = one_at_a_time();
    let superlink = ["--max-run-mb", "64", "--max-run-messages", "1000", "--wasm-memory-mb", "256"];
    let mut fed = SepalFederation::start(2, &superlink, &[]).unwrap();
    let alone = good_run_alone(&fed);

    // 120 pushes of 8 MiB to a node that does not exist (960 MiB in all), beside the
    // quickstart: each is refused and leaves nothing behind.
    let hostile = submit_attack(&fed, "push-nowhere:120:8", "");
    let started = Instant::now();
    completed(&fed, submit_good(&fed));
    let beside = started.elapsed();
    assert_eq!(outcome(&completed(&fed, hostile), "push-nowhere"), "120 pushes, 0 stored");
    eprintln!("quickstart: {alone:?} alone, {beside:?} beside 120 refused pushes of 8 MiB");
    assert!(beside <= bound(alone), "the quickstart took {beside:?} beside the flood, {alone:?} alone");
    let peak_mib = fed.superlink().memory_kib("VmHWM").unwrap() / 1024;
    eprintln!("SuperLink peak resident memory: {peak_mib} MiB");
    assert!(peak_mib < 400, "the SuperLink's resident memory peaked at {peak_mib} MiB");

    // 6 x 16 MiB in one push passes the 64 MiB a run may hold: refused as a whole,
    // naming the flag; a small push after it still goes through.
    let hoard = submit_attack(&fed, "push-hoard:6:16", "");
    let log = completed(&fed, hoard);
    assert!(log.contains("SEPAL   : push refused: "), "the run's log does not say why:\n{log}");
    let said = outcome(&log, "push-hoard");
    assert!(said.starts_with("refused: ") && said.contains("--max-run-mb"), "{said}");
    assert!(said.ends_with("small push stored 1"), "{said}");

    // More messages in flight than a run may have: refused at the limit, naming the flag.
    let flood = submit_attack(&fed, "push-flood:5000:500", "");
    let said = outcome(&completed(&fed, flood), "push-flood");
    assert!(said.starts_with("refused after 1000: ") && said.contains("--max-run-messages"), "{said}");

    completed(&fed, submit_good(&fed));
    fed.ensure_running().unwrap();
}

#[test]
fn a_finished_run_leaves_no_work_behind_for_the_nodes() {
    let _serial = one_at_a_time();
    let mut fed = SepalFederation::start(2, &[], &[]).unwrap();
    let alone = good_run_alone(&fed);

    // 100,000 instructions for one node, and the run ends at once: the node must not
    // spend the next run's time on them.
    let flood = submit_attack(&fed, "push-flood:100000:10000", "");
    assert_eq!(outcome(&completed(&fed, flood), "push-flood"), "pushed 100000");
    let started = Instant::now();
    completed(&fed, submit_good(&fed));
    let after = started.elapsed();
    eprintln!("quickstart: {alone:?} alone, {after:?} right after a run that left 100,000 instructions");
    assert!(after <= bound(alone), "the quickstart took {after:?} after the flood, {alone:?} alone");
    let superlink = fed.superlink().log();
    assert!(superlink.contains("its messages still stored are dropped"), "the SuperLink did not drop the flood");
    fed.ensure_running().unwrap();
}

#[test]
fn runs_past_the_concurrency_limit_wait_visibly_and_can_be_stopped() {
    let _serial = one_at_a_time();
    let mut fed = SepalFederation::start(2, &["--max-concurrent-runs", "2"], &[]).unwrap();
    let exec = fed.exec_addr().to_string();
    let stop = |fed: &SepalFederation, run_id: u64| {
        fed.cli(&["stop", &run_id.to_string(), "--superlink", &exec]).unwrap();
        let status = fed.wait_finished(run_id, Duration::from_secs(30)).unwrap();
        assert_eq!(status.status, "finished:stopped", "run {run_id}");
    };
    let sleepers = [submit_attack(&fed, "sleep", ""), submit_attack(&fed, "sleep", "")];
    for &run_id in &sleepers {
        wait_for_status(&fed, run_id, "running");
    }

    // Both slots are taken: a third run waits, pending, and its log says why.
    let waiting = submit_good(&fed);
    let given_up = submit_good(&fed);
    wait_for_log(&fed, waiting, "--max-concurrent-runs");
    let listed = fed.ls().unwrap();
    let status_of = |id: u64| listed.iter().find(|(r, _)| *r == id).map(|(_, s)| s.clone());
    assert_eq!(status_of(waiting).as_deref(), Some("pending"), "{listed:?}");
    let log = fed.log_show(waiting).unwrap();
    assert!(log.lines().any(|l| l.starts_with("SEPAL   : waiting to start: ")), "the host's line:\n{log}");

    // A waiting run can be stopped; once a slot frees, the next one runs to completion.
    stop(&fed, given_up);
    stop(&fed, sleepers[0]);
    completed(&fed, waiting);
    stop(&fed, sleepers[1]);
    fed.ensure_running().unwrap();
}

#[test]
fn a_runs_slow_messages_do_not_hold_up_another_run_on_the_same_nodes() {
    let _serial = one_at_a_time();
    let mut fed = SepalFederation::start(2, &[], &["--wasm-time-limit", "20"]).unwrap();
    let alone = good_run_alone(&fed);

    // Five messages per node that spin until the node stops them (20 s each): 100 s of
    // work per node, one run's share at a time.
    let spinner = submit_attack(&fed, "spin-nodes:5", "reply-timeout=300.0");
    wait_for_status(&fed, spinner, "running");
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    completed(&fed, submit_good(&fed));
    let beside = started.elapsed();
    eprintln!("quickstart: {alone:?} alone, {beside:?} beside a run spinning on both nodes");
    assert!(beside <= bound(alone), "the quickstart took {beside:?} beside the spinning run, {alone:?} alone");
    assert_eq!(fed.status(spinner).unwrap().status, "running", "the spinning run still has work in hand");
    let exec = fed.exec_addr().to_string();
    fed.cli(&["stop", &spinner.to_string(), "--superlink", &exec]).unwrap();
    fed.ensure_running().unwrap();
}

#[test]
fn a_python_serverapp_is_held_to_the_same_quotas() {
    let _serial = one_at_a_time();
    let fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Sepal)
        .superlink_arg("--max-run-messages")
        .superlink_arg("20")
        .start()
        .unwrap();
    let flwr = fed.flwr_app(&Path::new(env!("CARGO_MANIFEST_DIR")).join("apps/flood-py")).unwrap();
    // flwr-serverapp pushes 50 instructions at once to a run that may have 20 in flight,
    // beside a Wasm quickstart that never has more than 2.
    let flood = flwr.run(&["--run-config", "messages=50"]).unwrap();
    let good = sepal_run(fed.exec_addr(), &quickstart(), GOOD_RUN).unwrap();
    flwr.wait_for_status(good, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
    flwr.wait_for_status(flood, |s| s.starts_with("finished"), RUN_TIMEOUT).unwrap();
    let log = flwr.log_show(flood).unwrap();
    // Flower's grid shows the refusal as its "2GB gRPC limit" error and carries on with
    // nothing pushed; the run's log says what really happened.
    let said = log.lines().find(|l| l.starts_with("SEPAL   : push refused: ")).unwrap_or_else(|| panic!("{log}"));
    assert!(said.contains("50 more would pass its limit of 20 (--max-run-messages)"), "{said}");
    assert!(log.contains("FLOOD pushed 0 messages"), "the push went through:\n{log}");
}

/// Polls until the run has `status`; fails after [`RUN_TIMEOUT`].
fn wait_for_status(fed: &SepalFederation, run_id: u64, status: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while fed.status(run_id).unwrap().status != status {
        assert!(Instant::now() < deadline, "run {run_id} never became {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls until the run's log contains `needle`; fails after [`RUN_TIMEOUT`].
fn wait_for_log(fed: &SepalFederation, run_id: u64, needle: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !fed.log_show(run_id).unwrap().contains(needle) {
        assert!(Instant::now() < deadline, "run {run_id}'s log never said {needle:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
