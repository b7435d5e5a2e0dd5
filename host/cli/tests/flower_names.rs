//! The `sepal` binary installed under Flower's names, as a deployment script runs it:
//! symlinks `flower-superlink` and `flower-supernode` started with Flower 1.20's flags
//! (`flwr/server/app.py`, `flwr/supernode/cli/flower_supernode.py`). Both must start, and
//! the SuperNode must register with the SuperLink.
//!
//! (Also why `cargo test` builds the `sepal` binary that the tests in `tests/` start.)

use std::path::Path;
use std::process::Command;

use sepal_tests::flwr::strip_ansi;
use sepal_tests::{free_addr, Proc, START_TIMEOUT};

/// The id in the `node_id=<id>` field of the first log line holding `message`.
fn node_id_logged(log: &str, message: &str) -> Option<u64> {
    let line = strip_ansi(log.lines().find(|line| line.contains(message))?);
    let (_, rest) = line.split_once("node_id=")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `<dir>/<name>`, a symlink to the built `sepal` binary, as an operator installs it.
fn install_as(dir: &Path, name: &str) -> Command {
    let link = dir.join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sepal"), &link).unwrap();
    let mut cmd = Command::new(link);
    cmd.env("SEPAL_LOG", "info").env("NO_COLOR", "1");
    cmd
}

#[test]
fn flower_superlink_and_flower_supernode_start_and_the_node_registers() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let logs = dir.path().join("logs");
    let (serverappio, fleet, exec, clientappio) = (free_addr(), free_addr(), free_addr(), free_addr());

    let mut cmd = install_as(&bin, "flower-superlink");
    cmd.arg("--insecure")
        .args(["--serverappio-api-address", &serverappio.to_string()])
        .args(["--fleet-api-address", &fleet.to_string()])
        .args(["--exec-api-address", &exec.to_string()]);
    let mut superlink = Proc::spawn("flower-superlink", cmd, &logs).unwrap();
    for addr in [serverappio, fleet, exec] {
        superlink.wait_for_port(addr, START_TIMEOUT).unwrap();
    }

    let mut cmd = install_as(&bin, "flower-supernode");
    cmd.arg("--insecure")
        .args(["--superlink", &fleet.to_string()])
        .args(["--clientappio-api-address", &clientappio.to_string()])
        .args(["--node-config", "partition-id=0 num-partitions=1"]);
    let mut supernode = Proc::spawn("flower-supernode", cmd, &logs).unwrap();
    supernode.wait_for_port(clientappio, START_TIMEOUT).unwrap();

    // The node the SuperNode says it registered as is the one the SuperLink created.
    supernode.wait_for_log("registered with the SuperLink", START_TIMEOUT).unwrap();
    superlink.wait_for_log("node created", START_TIMEOUT).unwrap();
    let registered = node_id_logged(&supernode.log(), "registered with the SuperLink");
    let created = node_id_logged(&superlink.log(), "node created");
    assert!(registered.is_some(), "no node id in the SuperNode's log:\n{}", supernode.log());
    assert_eq!(registered, created, "SuperNode log:\n{}\nSuperLink log:\n{}", supernode.log(), superlink.log());
    superlink.ensure_running().unwrap();
    supernode.ensure_running().unwrap();
}

#[test]
fn log_fields_are_read_with_or_without_colours() {
    let plain = "2025-01-01T00:00:00Z  INFO sepal_superlink::fleet: node created node_id=42\n";
    assert_eq!(node_id_logged(plain, "node created"), Some(42));
    let coloured =
        "\u{1b}[32m INFO\u{1b}[0m registered with the SuperLink \u{1b}[3mnode_id\u{1b}[0m\u{1b}[2m=\u{1b}[0m7";
    assert_eq!(node_id_logged(coloured, "registered with the SuperLink"), Some(7));
    assert_eq!(node_id_logged(plain, "registered"), None);
}
