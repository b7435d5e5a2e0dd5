//! SuperNode allowlist with Python Flower 1.20.0 (spec 6.3): `sepal superlink
//! --auth-list-public-keys keys.csv` with a Python `flower-supernode
//! --auth-supernode-private-key k --auth-supernode-public-key k.pub` (keys made by
//! `ssh-keygen -t ecdsa`: the listed node's on P-256, ssh-keygen's default, the other on
//! P-384, Flower's): the listed node runs a round; an unlisted Python SuperNode is refused
//! ("Public key not recognized") and exits (Flower 1.20: status 0).
//!
//! Needs `ssh-keygen` (scripts/test.sh installs it), `cargo build -p sepal-cli` and the venv from
//! scripts/python-env.sh.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sepal_tests::federation::Impl;
use sepal_tests::kit::{allow_list, ssh_keygen};
use sepal_tests::{free_addr, venv_bin, Federation, EXAMPLE, RUN_TIMEOUT};

#[test]
fn sepal_superlink_allowlist_with_python_supernodes() {
    let started = Instant::now();
    let keys = tempfile::tempdir().unwrap();
    let listed = ssh_keygen(keys.path(), "listed", 256).unwrap();
    let unlisted = ssh_keygen(keys.path(), "unlisted", 384).unwrap();
    let csv = allow_list(keys.path(), "keys.csv", &[&listed.1]).unwrap();
    let fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Python)
        .supernodes(1)
        .superlink_arg("--auth-list-public-keys")
        .superlink_arg(csv.to_str().unwrap())
        .supernode_arg("--auth-supernode-private-key")
        .supernode_arg(listed.0.to_str().unwrap())
        .supernode_arg("--auth-supernode-public-key")
        .supernode_arg(listed.1.to_str().unwrap())
        .start()
        .unwrap();

    let flwr = fed.flwr(EXAMPLE).unwrap();
    let run_id = flwr.run(&["--run-config", "min-nodes=1 num-server-rounds=1"]).unwrap();
    flwr.wait_for_status(run_id, |s| s == "finished:completed", RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", fed.log_tails(30)));
    let log = flwr.log_show(run_id).unwrap();
    assert!(log.contains("ROUND 1/1: 1 train replies"), "{log}");

    // An unlisted Python SuperNode is refused and exits.
    let log_path = fed.dir().join("unlisted.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(venv_bin("flower-supernode"))
        .args(["--insecure", "--superlink", &fed.fleet_addr().to_string()])
        .args(["--clientappio-api-address", &free_addr().to_string()])
        .arg("--auth-supernode-private-key")
        .arg(&unlisted.0)
        .arg("--auth-supernode-public-key")
        .arg(&unlisted.1)
        .envs(fed.env_for("unlisted"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    // Flower logs the error and exits with status 0.
    assert!(status.is_some(), "the unlisted SuperNode kept running: {text}");
    assert!(text.contains("Public key not recognized"), "{text}");
    eprintln!("allowlist: Sepal SuperLink + Python SuperNodes: {:?}", started.elapsed());
}
