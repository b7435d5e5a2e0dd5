//! The Wasm apps (built once per test run by `sepal-guests`), and an all-Sepal federation
//! to run them on, with no Python anywhere.
//!
//! ```no_run
//! use sepal_tests::wasm_apps::{wasm_app, SepalFederation};
//!
//! let app = wasm_app("hostile"); // pyproject.toml, client.wasm, server.wasm
//! let fed = SepalFederation::start(1, &["--wasm-time-limit", "5"], &["--wasm-time-limit", "2"]).unwrap();
//! let run_id = fed.submit(&app, "attack=\"fanout\"").unwrap();
//! let run = fed.wait_finished(run_id, std::time::Duration::from_secs(60)).unwrap();
//! println!("{} {}\n{}", run.status, run.details, fed.log_show(run_id).unwrap());
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::flwr::{run_with_timeout, strip_ansi, CliOutput};
use crate::procs::{stop_all, Proc, STOP_GRACE};
use crate::{free_addr, sepal_bin, START_TIMEOUT};

/// Upper bound for one `sepal` CLI command.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What the federation passes as `--serverapp-bin` / `--clientapp-bin`: a program that
/// does not exist, so a run that would start a Python app fails loudly instead.
pub const NO_PYTHON: &str = "/nonexistent/sepal-tests-no-python-here";

/// An environment variable every process of a [`SepalFederation`] gets, so that tests can
/// check that apps do not see the host's environment.
pub const HOST_SECRET: (&str, &str) = ("SEPAL_TEST_HOST_SECRET", "the-host-environment-leaked");

/// The Wasm app `name` (`"hostile"`, `"quickstart"`, `"dispatch"`, `"mlflow"`) as `sepal run` takes
/// it: a directory with `pyproject.toml`, `client.wasm` and `server.wasm`, built once per
/// test run by the `sepal-guests` crate.
pub fn wasm_app(name: &str) -> PathBuf {
    sepal_guests::app_dir(name)
}

/// The run id in `sepal run --format json` output.
pub fn run_id_of(stdout: &str, stderr: &str) -> Result<u64> {
    let v: Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("sepal run printed no JSON:\n{stdout}{stderr}"))?;
    v.get("run-id").and_then(Value::as_u64).ok_or_else(|| anyhow!("sepal run printed no run-id: {v}"))
}

/// The quickstart (`examples/quickstart`) with its components built.
pub fn quickstart() -> PathBuf {
    wasm_app("quickstart")
}

/// `sepal run <app> --superlink <exec> --format json [--run-config …]` -> the run id.
pub fn sepal_run(exec: SocketAddr, app: &Path, run_config: &str) -> Result<u64> {
    let mut cmd = Command::new(sepal_bin());
    cmd.arg("run").arg(app).args(["--superlink", &exec.to_string(), "--format", "json"]);
    if !run_config.is_empty() {
        cmd.args(["--run-config", run_config]);
    }
    let out = run_with_timeout(cmd, CLI_TIMEOUT)?;
    if !out.status.success() {
        bail!("sepal run failed ({}):\n{}{}", out.status, out.stdout, out.stderr);
    }
    run_id_of(&out.stdout, &out.stderr)
}

/// A run as the Exec API's `ListRuns` shows it.
#[derive(Clone, Debug)]
pub struct RunStatus {
    /// `pending`, `starting`, `running` or `finished:<sub-status>` (as `flwr ls` shows it).
    pub status: String,
    /// The status details (why a run failed).
    pub details: String,
}

impl RunStatus {
    /// Whether the run is finished (in any sub-status).
    pub fn is_finished(&self) -> bool {
        self.status.starts_with("finished")
    }
}

/// `sepal superlink` plus N `sepal supernode`s on loopback, in subprocess isolation, with
/// no Python: nothing puts a venv on `PATH`, and the Python app executables are set to
/// [`NO_PYTHON`]. Wasm apps run in-process (ServerApps in the SuperLink, ClientApps in
/// each SuperNode). Dropping it stops every process and prints the tail of each log.
pub struct SepalFederation {
    dir: PathBuf,
    /// Deletes `dir` after the processes are stopped (None with `SEPAL_TEST_KEEP=1`).
    _tmp: Option<TempDir>,
    exec: SocketAddr,
    superlink: Option<Proc>,
    supernodes: Vec<Proc>,
}

impl SepalFederation {
    /// Starts the SuperLink with `superlink_args` and `nodes` SuperNodes with
    /// `supernode_args` (node `i` also gets `--node-config "partition-id=i"`), and waits
    /// until each listens.
    pub fn start(nodes: usize, superlink_args: &[&str], supernode_args: &[&str]) -> Result<SepalFederation> {
        let per_node: Vec<Vec<String>> = (0..nodes)
            .map(|i| {
                let mut args = vec!["--node-config".to_string(), format!("partition-id={i}")];
                args.extend(supernode_args.iter().map(|a| a.to_string()));
                args
            })
            .collect();
        SepalFederation::start_nodes(superlink_args, &per_node)
    }

    /// Starts the SuperLink with `superlink_args` and one SuperNode per entry of
    /// `supernodes`, each with its own extra arguments (its `--node-config`, its grants),
    /// and waits until each listens.
    pub fn start_nodes(superlink_args: &[&str], supernodes: &[Vec<String>]) -> Result<SepalFederation> {
        let tmp = tempfile::Builder::new().prefix("sepal-wasm-fed-").tempdir().context("creating a temp dir")?;
        let dir = tmp.path().to_path_buf();
        let tmp = if std::env::var_os("SEPAL_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("SEPAL_TEST_KEEP: federation files are kept in {}", dir.display());
            drop(tmp.keep());
            None
        } else {
            Some(tmp)
        };
        let (serverappio, fleet, exec) = (free_addr(), free_addr(), free_addr());
        let mut fed = SepalFederation { dir, _tmp: tmp, exec, superlink: None, supernodes: Vec::new() };

        let mut cmd = fed.sepal("superlink");
        cmd.arg("--insecure")
            .args(["--serverappio-api-address", &serverappio.to_string()])
            .args(["--fleet-api-address", &fleet.to_string()])
            .args(["--exec-api-address", &exec.to_string()])
            .args(["--serverapp-bin", NO_PYTHON])
            .args(superlink_args);
        let mut superlink = Proc::spawn("superlink", cmd, &fed.log_dir())?;
        let ready = [serverappio, fleet, exec].into_iter().try_for_each(|a| superlink.wait_for_port(a, START_TIMEOUT));
        fed.superlink = Some(superlink);
        ready?;

        for (i, node_args) in supernodes.iter().enumerate() {
            let clientappio = free_addr();
            let mut cmd = fed.sepal("supernode");
            cmd.arg("--insecure")
                .args(["--superlink", &fleet.to_string()])
                .args(["--clientappio-api-address", &clientappio.to_string()])
                .args(["--clientapp-bin", NO_PYTHON])
                .args(node_args);
            let mut node = Proc::spawn(&format!("supernode-{i}"), cmd, &fed.log_dir())?;
            let ready = node.wait_for_port(clientappio, START_TIMEOUT);
            fed.supernodes.push(node);
            ready?;
        }
        Ok(fed)
    }

    fn sepal(&self, sub: &str) -> Command {
        let mut cmd = Command::new(sepal_bin());
        cmd.arg(sub).current_dir(&self.dir).env(HOST_SECRET.0, HOST_SECRET.1);
        cmd
    }

    /// The federation's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the process logs are.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The SuperLink's Exec API address.
    pub fn exec_addr(&self) -> SocketAddr {
        self.exec
    }

    /// The SuperLink process.
    pub fn superlink(&mut self) -> &mut Proc {
        self.superlink.as_mut().expect("the SuperLink runs while the federation exists")
    }

    /// The SuperNode processes.
    pub fn supernodes(&mut self) -> &mut [Proc] {
        &mut self.supernodes
    }

    /// Fails (with the log tail) unless the SuperLink and every SuperNode still run.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.superlink().ensure_running()?;
        self.supernodes.iter_mut().try_for_each(Proc::ensure_running)
    }

    /// Runs `sepal <args…>` with [`CLI_TIMEOUT`]; fails unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        let mut cmd = self.sepal(args[0]);
        cmd.args(&args[1..]);
        let out = run_with_timeout(cmd, CLI_TIMEOUT)?;
        if !out.status.success() {
            bail!("sepal {} failed ({}):\n{}{}", args.join(" "), out.status, out.stdout, out.stderr);
        }
        Ok(out)
    }

    /// `sepal run <app_dir> --superlink <exec> --run-config <run_config> --format json` ->
    /// the run id.
    pub fn submit(&self, app_dir: &Path, run_config: &str) -> Result<u64> {
        let exec = self.exec.to_string();
        let app = app_dir.to_string_lossy();
        let mut args = vec!["run", &app, "--superlink", &exec, "--format", "json"];
        if !run_config.is_empty() {
            args.extend(["--run-config", run_config]);
        }
        let out = self.cli(&args)?;
        run_id_of(&out.stdout, &out.stderr)
    }

    /// `sepal log <run_id> --superlink <exec> --show`: the run's log so far.
    pub fn log_show(&self, run_id: u64) -> Result<String> {
        let (id, exec) = (run_id.to_string(), self.exec.to_string());
        Ok(strip_ansi(&self.cli(&["log", &id, "--superlink", &exec, "--show"])?.stdout))
    }

    /// `sepal ls --superlink <exec> --format json`: every run, as `(run id, status)`.
    pub fn ls(&self) -> Result<Vec<(u64, String)>> {
        let exec = self.exec.to_string();
        let out = self.cli(&["ls", "--superlink", &exec, "--format", "json"])?;
        let v: Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("sepal ls printed no JSON:\n{}{}", out.stdout, out.stderr))?;
        let runs = v.get("runs").and_then(Value::as_array).ok_or_else(|| anyhow!("no runs in {v}"))?;
        runs.iter()
            .map(|r| {
                let id = r.get("run-id").and_then(Value::as_u64).ok_or_else(|| anyhow!("no run-id in {r}"))?;
                Ok((id, r.get("status").and_then(Value::as_str).unwrap_or_default().to_string()))
            })
            .collect()
    }

    /// The run's status and details, straight from the Exec API (`ListRuns`).
    pub fn status(&self, run_id: u64) -> Result<RunStatus> {
        use sepal_proto::pb::{exec_client::ExecClient, ListRunsRequest};
        let exec = self.exec;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let run = rt.block_on(async {
            let call = async {
                let mut client = ExecClient::connect(format!("http://{exec}")).await?;
                let resp = client.list_runs(ListRunsRequest { run_id: Some(run_id) }).await?.into_inner();
                resp.run_dict.get(&run_id).cloned().ok_or_else(|| anyhow!("ListRuns does not know run {run_id}"))
            };
            tokio::time::timeout(Duration::from_secs(10), call).await.map_err(|_| anyhow!("ListRuns timed out"))?
        })?;
        let st = run.status.unwrap_or_default();
        let status = if st.status == "finished" { format!("finished:{}", st.sub_status) } else { st.status };
        Ok(RunStatus { status, details: st.details })
    }

    /// Polls [`SepalFederation::status`] until the run is finished; fails after `timeout`.
    pub fn wait_finished(&self, run_id: u64, timeout: Duration) -> Result<RunStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status(run_id) {
                Ok(s) if s.is_finished() => return Ok(s),
                Ok(s) => s.status,
                Err(e) => format!("error: {e:#}"),
            };
            if Instant::now() > deadline {
                bail!("run {run_id}: still {last} after {timeout:?}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SepalFederation {
    fn drop(&mut self) {
        let mut all: Vec<Proc> = std::mem::take(&mut self.supernodes);
        all.extend(self.superlink.take());
        stop_all(&mut all, STOP_GRACE);
        let mut s = format!("===== Sepal federation in {} =====\n", self.dir.display());
        for p in &all {
            s.push_str(&format!(
                "----- {} (pid {}) last 30 lines -----\n{}\n",
                p.name(),
                p.pid(),
                strip_ansi(&p.log_tail(30))
            ));
        }
        eprintln!("{s}");
    }
}
