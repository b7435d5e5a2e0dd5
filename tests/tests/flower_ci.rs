//! The end-to-end scenarios Flower 1.20's own CI runs against its SuperLink and SuperNodes
//! (its `e2e/test_superlink.sh`, `test_exec_api.sh` and `test_reconnection.sh`, plus the
//! loss of a ServerApp's heartbeats), written here and run against Sepal installed under
//! Flower's names: `flower-superlink` and `flower-supernode` are symlinks to the `sepal`
//! binary, started with the flags those scripts pass. The app is Flower's own template
//! (`flwr new --framework numpy`: FedAvg on the strategy API, 3 rounds), submitted with the
//! real `flwr` CLI and run by the real `flwr-serverapp` / `flwr-clientapp`.
//!
//! A scenario passes as Flower's does: `flwr ls --format json` shows the run
//! `finished:completed`, the ServerApp's "Run finished" line appears in the SuperLink's own
//! output, and that output holds no "ERROR".
//!
//! Needs `ssh-keygen`, `cargo build -p sepal-cli` and the venv from scripts/python-env.sh
//! (scripts/test.sh does all three).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sepal_tests::federation::{FederationBuilder, Impl};
use sepal_tests::flwr::{list_run, new_app, strip_ansi};
use sepal_tests::kit::{allow_list, make_certs, ssh_keygen};
use sepal_tests::{poll, sepal_bin, Federation, Flwr, Isolation, Signal, RUN_TIMEOUT};

/// How the federation of a scenario is set up (the cases of Flower's scripts).
#[derive(Clone, Copy, Default)]
struct Setup {
    /// TLS on Fleet and Exec (`--ssl-*`, `--root-certificates`), else `--insecure`.
    tls: bool,
    /// SuperNode authentication: an allow-list and a key per SuperNode.
    node_auth: bool,
    /// `--database <file>`, else `--database :flwr-in-memory-state:`.
    sqlite: bool,
    /// `--executor flwr.superexec.deployment:executor --executor-config …`, as
    /// `test_exec_api.sh` passes them.
    executor: bool,
    /// SuperNodes with `--max-retries 0` (every script but the reconnection one).
    no_retries: bool,
}

/// A scenario's files (app, certificates, keys, database) and its federation.
struct Scenario {
    // Fields drop in order: the processes stop before their files go.
    fed: Federation,
    flwr: Flwr,
    _dir: tempfile::TempDir,
}

impl Scenario {
    fn start(setup: Setup) -> Result<Scenario> {
        Self::start_with(setup, |b| b)
    }

    /// Starts the federation of `setup` (after `adjust` had its say) and makes the app.
    fn start_with(setup: Setup, adjust: impl FnOnce(FederationBuilder) -> FederationBuilder) -> Result<Scenario> {
        let dir = tempfile::Builder::new().prefix("sepal-flower-ci-").tempdir()?;
        let builder = adjust(builder(dir.path(), setup)?);
        let fed = builder.start()?;
        let app = new_app(dir.path(), "e2e-tmp-test")?;
        let flwr = fed.flwr_app(&app)?;
        Ok(Scenario { fed, flwr, _dir: dir })
    }

    /// Submits the app with `args` and checks the run the way Flower's CI does.
    fn run_to_completion(&self, args: &[&str]) -> Result<u64> {
        let run_id = self.flwr.run(args)?;
        self.flwr
            .wait_for_status(run_id, |s| s == "finished:completed", RUN_TIMEOUT)
            .with_context(|| self.fed.log_tails(40))?;
        let runs = self.flwr.ls()?;
        ensure!(
            runs.iter().any(|r| r.run_id == run_id && r.status == "finished:completed"),
            "flwr ls --format json: {runs:?}"
        );
        let log = poll(
            "\"Run finished\" in the SuperLink's output",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let log = self.superlink_output();
                Ok(log.contains("Run finished").then_some(log))
            },
        )
        .with_context(|| self.fed.log_tails(40))?;
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        ensure!(errors.is_empty(), "the SuperLink's output has errors:\n{}", errors.join("\n"));
        Ok(run_id)
    }

    /// Everything the SuperLink (the current process) has printed, colours removed.
    fn superlink_output(&self) -> String {
        let log = self.fed.logs().into_iter().find(|(name, _)| name == "superlink").map(|(_, log)| log);
        strip_ansi(&log.unwrap_or_default())
    }
}

/// The federation: Sepal under Flower's names, 2 SuperNodes, subprocess isolation, and the
/// flags of `setup`.
fn builder(dir: &Path, setup: Setup) -> Result<FederationBuilder> {
    let mut b = Federation::builder().superlink(Impl::Sepal).supernode(Impl::Sepal).flower_names();
    let db = if setup.sqlite {
        dir.join("state.db").to_string_lossy().into_owned()
    } else {
        ":flwr-in-memory-state:".into()
    };
    b = b.superlink_arg("--database").superlink_arg(db);
    let mut executor_config = String::new();
    if setup.tls {
        let certs = make_certs(dir).files;
        executor_config = format!("root-certificates=\"{}\"", certs.ca.display());
        b = b.tls(certs);
    }
    if setup.executor {
        b = b.superlink_arg("--executor").superlink_arg("flwr.superexec.deployment:executor");
        b = b.superlink_arg("--executor-config").superlink_arg(executor_config);
    }
    if setup.node_auth {
        let keys: Vec<(PathBuf, PathBuf)> =
            (1..=2).map(|i| ssh_keygen(dir, &format!("client_credentials_{i}"), 384)).collect::<Result<_>>()?;
        let csv = allow_list(dir, "client_public_keys.csv", &[&keys[0].1, &keys[1].1])?;
        b = b.superlink_arg("--auth-list-public-keys").superlink_arg(csv.to_string_lossy());
        for (i, (private, public)) in keys.iter().enumerate() {
            b = b
                .supernode_arg_at(i, "--auth-supernode-private-key")
                .supernode_arg_at(i, private.to_string_lossy())
                .supernode_arg_at(i, "--auth-supernode-public-key")
                .supernode_arg_at(i, public.to_string_lossy());
        }
    }
    if setup.no_retries {
        b = b.supernode_arg("--max-retries").supernode_arg("0");
    }
    Ok(b)
}

/// `test_superlink.sh` (bare, bare-https, bare-client-auth, sqlite): the template's three
/// rounds.
fn superlink_scenario(setup: Setup) {
    let s = Scenario::start(Setup { no_retries: true, ..setup }).unwrap();
    s.run_to_completion(&[]).unwrap();
}

/// `test_exec_api.sh` with the deployment engine: one round.
fn exec_api_scenario(setup: Setup) {
    let s = Scenario::start(Setup { executor: true, no_retries: true, ..setup }).unwrap();
    s.run_to_completion(&["--run-config", "num-server-rounds=1"]).unwrap();
}

/// The bare scenario, then the end of Flower's script: the SuperLink is stopped (SIGTERM)
/// while its SuperNodes still hold calls open, and it exits by itself, cleanly.
#[test]
fn bare() {
    let mut s = Scenario::start(Setup { no_retries: true, ..Setup::default() }).unwrap();
    s.run_to_completion(&[]).unwrap();
    let superlink = s.fed.superlink_proc().expect("a SuperLink");
    superlink.signal_group(Signal::TERM);
    let status = poll("the SuperLink to exit", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(superlink.exit_status())
    });
    let status = status.unwrap_or_else(|e| panic!("{e:#}\n{}", superlink.log_tail(20)));
    assert!(status.success(), "the SuperLink exited with {status}:\n{}", superlink.log_tail(20));
}

#[test]
fn bare_https() {
    superlink_scenario(Setup { tls: true, ..Setup::default() });
}

#[test]
fn bare_client_auth() {
    superlink_scenario(Setup { tls: true, node_auth: true, ..Setup::default() });
}

#[test]
fn sqlite() {
    superlink_scenario(Setup { sqlite: true, ..Setup::default() });
}

#[test]
fn exec_api_deployment_insecure() {
    exec_api_scenario(Setup::default());
}

#[test]
fn exec_api_deployment_secure_client_auth() {
    exec_api_scenario(Setup { tls: true, node_auth: true, ..Setup::default() });
}

/// `test_exec_api.sh`'s simulation engine: Sepal runs deployments only, so the SuperLink
/// refuses the executor at start and says why, instead of accepting runs it cannot run.
#[test]
fn exec_api_simulation_engine_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("flower-superlink");
    std::os::unix::fs::symlink(sepal_bin(), &link).unwrap();
    let out = Command::new(&link)
        .args(["--insecure", "--executor", "flwr.superexec.simulation:executor"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the SuperLink started with the simulation executor:\n{printed}");
    assert!(printed.contains("simulation executor is not supported"), "{printed}");
}

/// `test_reconnection.sh`: the SuperLink is killed and restarted under connected
/// SuperNodes, a SuperNode is replaced, the run starts, and a SuperNode is killed and
/// started again while it trains. The SuperNodes ride it all out and the run completes.
fn reconnection(sqlite: bool) {
    let mut s = Scenario::start(Setup { sqlite, ..Setup::default() }).unwrap();
    s.fed.restart_superlink().unwrap();
    s.fed.restart_supernode(0).unwrap();
    let run_id = s.flwr.run(&[]).unwrap();
    s.flwr.wait_for_status(run_id, |st| st == "running", RUN_TIMEOUT).unwrap();
    poll("round 1 to start", RUN_TIMEOUT, Duration::from_millis(200), || {
        Ok(s.superlink_output().contains("[ROUND 1]").then_some(()))
    })
    .unwrap();
    s.fed.restart_supernode(0).unwrap();
    let status = s.flwr.wait_for_status(run_id, |st| st.starts_with("finished"), RUN_TIMEOUT);
    assert_eq!(status.unwrap_or_else(|e| panic!("{e:#}\n{}", s.fed.log_tails(40))), "finished:completed");
    // The restarted SuperLink's output shows the end of the run, without errors.
    let out = s.superlink_output();
    assert!(out.contains("Run finished"), "{}", s.fed.log_tails(40));
    let errors: Vec<&str> = out.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "the SuperLink's output has errors:\n{}", errors.join("\n"));
    for node in s.fed.supernode_procs() {
        node.ensure_running().unwrap();
    }
}

#[test]
fn reconnection_in_memory() {
    reconnection(false);
}

#[test]
fn reconnection_sqlite() {
    reconnection(true);
}

/// A ServerApp process (process isolation) that dies without a word: its heartbeats stop,
/// the SuperLink fails the run with Flower's reason once they are overdue (2 x the 30 s
/// interval `flwr-serverapp` announces), and a new `flwr-serverapp` serves the next run.
#[test]
fn serverapp_heartbeat_loss() {
    let mut s = Scenario::start_with(Setup::default(), |b| b.isolation(Isolation::Process).apps(Impl::Python)).unwrap();
    let run_id = s.flwr.run(&["--run-config", "num-server-rounds=100"]).unwrap();
    s.flwr.wait_for_status(run_id, |st| st == "running", RUN_TIMEOUT).unwrap();
    let serverapp = s.fed.app_procs().iter_mut().find(|p| p.name() == "serverapp").expect("a serverapp process");
    serverapp.signal_group(Signal::KILL);

    let status = s.flwr.wait_for_status(run_id, |st| st.starts_with("finished"), Duration::from_secs(150));
    assert_eq!(status.unwrap_or_else(|e| panic!("{e:#}\n{}", s.fed.log_tails(40))), "finished:failed");
    let details = list_run(s.fed.exec_addr(), run_id, None).unwrap().status.unwrap_or_default().details;
    assert_eq!(details, "No heartbeat received from the run.");

    s.fed.restart_serverapp().unwrap();
    let next = s.flwr.run(&["--run-config", "num-server-rounds=1"]).unwrap();
    let status = s.flwr.wait_for_status(next, |st| st.starts_with("finished"), RUN_TIMEOUT);
    assert_eq!(status.unwrap_or_else(|e| panic!("{e:#}\n{}", s.fed.log_tails(40))), "finished:completed");
}
