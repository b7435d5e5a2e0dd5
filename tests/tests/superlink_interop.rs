//! Sepal's SuperLink (`sepal superlink`) with real Python Flower 1.20.0 SuperNodes, apps and
//! `flwr` CLI. Each test runs the all-Python reference alongside (once per test process) and
//! requires the same `FINAL` line.
//!
//! Needs `cargo build -p sepal-cli` (scripts/test.sh builds every binary first) and the
//! venv from scripts/python-env.sh.

use std::thread;

use sepal_tests::{python_reference_final, scenarios, Federation, Isolation};

/// Runs the 2-round scenario on `sepal superlink` while the Python reference runs in
/// another thread, and compares the FINAL lines.
fn matches_python_reference(isolation: Isolation) {
    thread::scope(|s| {
        let reference = s.spawn(python_reference_final);
        let mut fed = Federation::sepal(2, isolation).unwrap();
        let sepal = scenarios::two_rounds(&fed).unwrap();
        let python = reference.join().expect("reference thread panicked").unwrap();
        assert_eq!(sepal, python, "Sepal's run differs from the all-Python reference");
        if isolation == Isolation::Subprocess {
            // The flwr-serverapp it started printed through the SuperLink's own output,
            // as with Flower's SuperLink.
            let own = fed.superlink_proc().expect("a SuperLink").log();
            assert!(own.contains(&sepal), "the ServerApp's FINAL line is not in the SuperLink's output:\n{own}");
        }
    });
}

#[test]
fn sepal_superlink_subprocess_matches_python() {
    matches_python_reference(Isolation::Subprocess);
}

#[test]
fn sepal_superlink_process_isolation_matches_python() {
    matches_python_reference(Isolation::Process);
}

#[test]
fn sepal_superlink_flwr_ls_log_stop() {
    let fed = Federation::sepal(2, Isolation::Subprocess).unwrap();
    scenarios::ls_log_stop(&fed).unwrap();

    // A run the SuperLink will not start: the real `flwr run` prints why, readably.
    let flwr = fed.flwr(sepal_tests::EXAMPLE).unwrap();
    let out = flwr.exec("run", &[], &["--run-config", "no-such-key=1"]).unwrap();
    let printed = sepal_tests::flwr::strip_ansi(&format!("{}{}", out.stdout, out.stderr));
    assert!(printed.contains("Permission denied"), "{printed}");
    assert!(printed.contains("Run not started:") && printed.contains("no-such-key"), "{printed}");
    assert!(!printed.contains("_InactiveRpcError"), "flwr printed a raw exception:\n{printed}");
    assert_eq!(flwr.ls().unwrap().len(), 2, "no run was made of it");
}
