//! The real `flwr` CLI (from the venv) against a test federation, plus a direct Exec
//! `ListRuns` call for cheap status polling.

use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

mod apps;

use crate::procs::{command_line, pid_alive, tail_lines};
use crate::venv;
pub use apps::new_app;
use apps::{add_federation, copy_dir};

/// The federation name the harness adds to a copied app's `pyproject.toml`.
pub const FEDERATION: &str = "sepal-test";

/// Upper bound for one `flwr` CLI command.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Flwr::wait_for_final_line`] waits for the log to show the `FINAL` line.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(30);

/// One run as `flwr ls --format json` shows it.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// `run-id`.
    pub run_id: u64,
    /// `pending`, `starting`, `running`, or `finished:<completed|failed|stopped>`.
    pub status: String,
    /// `fab-id` (`<publisher>/<name>`).
    pub fab_id: String,
    /// `fab-name`.
    pub fab_name: String,
    /// `fab-version`.
    pub fab_version: String,
    /// The first 8 hex digits of the FAB hash.
    pub fab_hash: String,
    /// `elapsed`, as the CLI formats it.
    pub elapsed: String,
    /// `created-at`.
    pub created_at: String,
    /// `running-at`.
    pub running_at: String,
    /// `finished-at`.
    pub finished_at: String,
    /// The whole JSON object.
    pub raw: Value,
}

impl RunInfo {
    fn from_json(v: &Value) -> Result<RunInfo> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(RunInfo {
            run_id: v.get("run-id").and_then(Value::as_u64).ok_or_else(|| anyhow!("run without a u64 run-id: {v}"))?,
            status: s("status"),
            fab_id: s("fab-id"),
            fab_name: s("fab-name"),
            fab_version: s("fab-version"),
            fab_hash: s("fab-hash"),
            elapsed: s("elapsed"),
            created_at: s("created-at"),
            running_at: s("running-at"),
            finished_at: s("finished-at"),
            raw: v.clone(),
        })
    }
}

/// What a CLI command printed.
#[derive(Debug)]
pub struct CliOutput {
    /// How the command exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Lets a waiting [`Flwr`] notice that the SuperLink process died (instead of polling a
/// closed port until its timeout).
#[derive(Clone, Debug)]
pub struct SuperLinkWatch {
    /// The SuperLink's current pid; 0 while it is (re)starting.
    pub pid: Arc<AtomicU32>,
    /// Its log file.
    pub log: PathBuf,
}

impl SuperLinkWatch {
    fn check(&self) -> Result<()> {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 && !pid_alive(pid) {
            let log = std::fs::read(&self.log).unwrap_or_default();
            bail!(
                "the SuperLink (pid {pid}) is gone; last lines of {}:\n{}",
                self.log.display(),
                strip_ansi(&tail_lines(&String::from_utf8_lossy(&log), 30))
            );
        }
        Ok(())
    }
}

/// The `flwr` CLI bound to one app directory and one federation of its `pyproject.toml`.
#[derive(Clone, Debug)]
pub struct Flwr {
    app_dir: PathBuf,
    federation: String,
    exec: SocketAddr,
    /// The CA to verify the Exec API with (TLS federations); `None`: plaintext.
    ca: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    watch: Option<SuperLinkWatch>,
}

impl Flwr {
    /// A `flwr` CLI for an app directory whose federation `federation` points at `exec`.
    pub fn new(
        app_dir: impl Into<PathBuf>,
        federation: &str,
        exec: SocketAddr,
        env: Vec<(OsString, OsString)>,
    ) -> Flwr {
        Flwr { app_dir: app_dir.into(), federation: federation.to_string(), exec, ca: None, env, watch: None }
    }

    /// Makes the waits fail at once (with the SuperLink's log tail) if it dies.
    pub fn with_watch(mut self, watch: SuperLinkWatch) -> Flwr {
        self.watch = Some(watch);
        self
    }

    /// Copies `examples/<example>` to a fresh directory under `dest_parent` and appends a
    /// federation [`FEDERATION`] (`address = "<exec>"`, `insecure = true`) to its
    /// `pyproject.toml`.
    pub fn for_example(
        example: &str,
        dest_parent: &Path,
        exec: SocketAddr,
        env: Vec<(OsString, OsString)>,
    ) -> Result<Flwr> {
        Self::for_example_with_ca(example, dest_parent, exec, env, None)
    }

    /// [`Flwr::for_example`], but with `ca`, a TLS federation: the CA is copied next to the
    /// app and named by `root-certificates` relative to the app directory, as `flwr` wants.
    pub fn for_example_with_ca(
        example: &str,
        dest_parent: &Path,
        exec: SocketAddr,
        env: Vec<(OsString, OsString)>,
        ca: Option<&Path>,
    ) -> Result<Flwr> {
        Self::for_app_with_ca(&crate::example_dir(example), dest_parent, exec, env, ca)
    }

    /// [`Flwr::for_example_with_ca`] for any app directory `src` (e.g. a benchmark app).
    pub fn for_app_with_ca(
        src: &Path,
        dest_parent: &Path,
        exec: SocketAddr,
        env: Vec<(OsString, OsString)>,
        ca: Option<&Path>,
    ) -> Result<Flwr> {
        let name = src.file_name().map_or_else(|| "app".into(), |n| n.to_string_lossy().into_owned());
        let dest = (0..)
            .map(|i| if i == 0 { dest_parent.join(&name) } else { dest_parent.join(format!("{name}-{i}")) })
            .find(|d| !d.exists())
            .expect("some free directory name");
        copy_dir(src, &dest).with_context(|| format!("copying {}", src.display()))?;
        let security = match ca {
            None => "insecure = true".to_string(),
            Some(ca) => {
                let name = format!("{}-ca.pem", dest.file_name().unwrap_or_default().to_string_lossy());
                std::fs::copy(ca, dest_parent.join(&name)).with_context(|| format!("copying {}", ca.display()))?;
                format!("root-certificates = \"../{name}\"")
            }
        };
        add_federation(&dest.join("pyproject.toml"), FEDERATION, exec, &security)?;
        let mut flwr = Flwr::new(dest, FEDERATION, exec, env);
        flwr.ca = ca.map(Path::to_path_buf);
        Ok(flwr)
    }

    /// Turns on user authentication for the federation (`enable-user-auth = true`): the
    /// `flwr` CLI then sends the tokens `flwr login` saved with every call.
    pub fn enable_user_auth(&self) -> Result<()> {
        let path = self.app_dir.join("pyproject.toml");
        let mut text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        // The harness's federation is the file's last table.
        text.push_str("enable-user-auth = true\n");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The app directory.
    pub fn app_dir(&self) -> &Path {
        &self.app_dir
    }

    /// The SuperLink Exec API address.
    pub fn exec_addr(&self) -> SocketAddr {
        self.exec
    }

    /// `flwr <sub> <app> <federation> <args…>` as a Command (cwd: the app's parent).
    pub fn command(&self, sub: &str, before_app: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new(venv().join("bin").join("flwr"));
        cmd.arg(sub)
            .args(before_app)
            .arg(&self.app_dir)
            .arg(&self.federation)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.app_dir.parent().unwrap_or(&self.app_dir))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a `flwr` subcommand with [`CLI_TIMEOUT`] and returns what it printed.
    pub fn exec(&self, sub: &str, before_app: &[&str], args: &[&str]) -> Result<CliOutput> {
        run_with_timeout(self.command(sub, before_app, args), CLI_TIMEOUT)
    }

    /// Runs a `flwr … --format json` subcommand; fails unless it printed
    /// `"success": true` (flwr exits 0 even on errors).
    pub fn json(&self, sub: &str, before_app: &[&str], args: &[&str]) -> Result<Value> {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        let out = self.exec(sub, before_app, &args)?;
        let v: Value = serde_json::from_str(out.stdout.trim()).with_context(|| {
            format!("flwr {sub} printed no JSON ({}); stdout:\n{}\nstderr:\n{}", out.status, out.stdout, out.stderr)
        })?;
        if v.get("success").and_then(Value::as_bool) != Some(true) {
            bail!(
                "flwr {sub} {} failed: {}",
                args.join(" "),
                v.get("error-message").and_then(Value::as_str).map(strip_ansi).unwrap_or_else(|| v.to_string())
            );
        }
        Ok(v)
    }

    /// `flwr run <app> <federation> <args…> --format json` -> the run id. Pass e.g.
    /// `&["--run-config", "num-server-rounds=50"]`.
    pub fn run(&self, args: &[&str]) -> Result<u64> {
        let v = self.json("run", &[], args)?;
        v.get("run-id").and_then(Value::as_u64).ok_or_else(|| anyhow!("flwr run printed no u64 run-id: {v}"))
    }

    /// `flwr ls <app> <federation> --format json`: every run.
    pub fn ls(&self) -> Result<Vec<RunInfo>> {
        parse_runs(&self.json("ls", &[], &[])?)
    }

    /// `flwr ls <app> <federation> --run-id <id> --format json`.
    pub fn run_info(&self, run_id: u64) -> Result<RunInfo> {
        let id = run_id.to_string();
        let runs = parse_runs(&self.json("ls", &[], &["--run-id", &id])?)?;
        runs.into_iter()
            .find(|r| r.run_id == run_id)
            .ok_or_else(|| anyhow!("flwr ls --run-id {run_id} did not list that run"))
    }

    /// `flwr log <run> <app> <federation> --show`: the run's log so far, ANSI colours
    /// removed.
    pub fn log_show(&self, run_id: u64) -> Result<String> {
        let id = run_id.to_string();
        let out = self.exec("log", &[&id], &["--show"])?;
        if !out.status.success() {
            bail!("flwr log --show failed ({}): {}{}", out.status, out.stdout, out.stderr);
        }
        Ok(strip_ansi(&out.stdout))
    }

    /// `flwr stop <run> <app> <federation> --format json`; an error if the SuperLink refused
    /// (e.g. FAILED_PRECONDITION for a finished run).
    pub fn stop(&self, run_id: u64) -> Result<()> {
        let id = run_id.to_string();
        self.json("stop", &[&id], &[]).map(|_| ())
    }

    /// The run's status straight from the Exec API (`ListRuns{run_id}`, no Python start-up):
    /// `pending`, `starting`, `running` or `finished:<sub-status>` as `flwr ls` shows it.
    pub fn status(&self, run_id: u64) -> Result<String> {
        format_status(list_run(self.exec, run_id, self.ca.as_deref())?)
    }

    /// Polls [`Flwr::status`] every 0.5 s until `pred(status)`. Fails at once when the run
    /// finished in a status that does not satisfy `pred`, and after `timeout`.
    pub fn wait_for_status(&self, run_id: u64, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status(run_id) {
                Ok(s) if pred(&s) => return Ok(s),
                Ok(s) if s.starts_with("finished") => {
                    bail!("run {run_id} ended as {s} ({})", self.details(run_id).unwrap_or_default())
                }
                Ok(s) => s,
                Err(e) => {
                    if let Some(w) = &self.watch {
                        w.check().with_context(|| format!("waiting for run {run_id}: {e:#}"))?;
                    }
                    format!("error: {e:#}")
                }
            };
            if Instant::now() > deadline {
                bail!("run {run_id}: still {last} after {timeout:?}");
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until `flwr log --show` contains the `FINAL` line and returns it.
    pub fn wait_for_final_line(&self, run_id: u64) -> Result<String> {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let log = self.log_show(run_id)?;
            if let Some(l) = final_line(&log) {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("no FINAL line in the log of run {run_id} after {LOG_TIMEOUT:?}:\n{log}");
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    fn details(&self, run_id: u64) -> Result<String> {
        Ok(list_run(self.exec, run_id, self.ca.as_deref())?.status.map(|s| s.details).unwrap_or_default())
    }
}

/// The last line of `log` with a `FINAL {…}` record, from `FINAL` on.
pub fn final_line(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let l = strip_ansi(l);
        l.find("FINAL {").map(|i| l[i..].trim_end().to_string())
    })
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn parse_runs(v: &Value) -> Result<Vec<RunInfo>> {
    v.get("runs")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("no runs array in {v}"))?
        .iter()
        .map(RunInfo::from_json)
        .collect()
}

/// The run as the Exec API's `ListRuns` returns it (over TLS when `ca` is given).
pub fn list_run(exec: SocketAddr, run_id: u64, ca: Option<&Path>) -> Result<sepal_proto::pb::Run> {
    use sepal_proto::pb::{exec_client::ExecClient, ListRunsRequest};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let endpoint = match ca {
        None => Endpoint::from_shared(format!("http://{exec}"))?,
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            Endpoint::from_shared(format!("https://{exec}"))?
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let call = async {
            let mut client = ExecClient::new(endpoint.connect().await?);
            let resp = client.list_runs(ListRunsRequest { run_id: Some(run_id) }).await?.into_inner();
            resp.run_dict.get(&run_id).cloned().ok_or_else(|| anyhow!("ListRuns does not know run {run_id}"))
        };
        tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| anyhow!("ListRuns on {exec} timed out"))?
    })
}

/// The run's status via Exec `ListRuns`, formatted as `flwr ls` does.
pub fn exec_status(exec: SocketAddr, run_id: u64) -> Result<String> {
    format_status(list_run(exec, run_id, None)?)
}

fn format_status(run: sepal_proto::pb::Run) -> Result<String> {
    let st = run.status.unwrap_or_default();
    Ok(if st.status == "finished" { format!("finished:{}", st.sub_status) } else { st.status })
}

/// Runs `cmd` to completion (killing it after `timeout`), capturing stdout and stderr.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<CliOutput> {
    let line = command_line(&cmd);
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("starting {line}"))?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|r| Box::new(r) as _));
    let err = reader(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{line} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    Ok(CliOutput { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_line_is_found_and_cleaned() {
        let log = "Loading…\n\u{1b}[92mINFO \u{1b}[0m:      x\nROUND 1\nFINAL {\"a\":1}  \n\
                   \u{1b}[92mINFO \u{1b}[0m: Printing logstream\n";
        assert_eq!(final_line(log).as_deref(), Some("FINAL {\"a\":1}"));
        assert_eq!(final_line("nothing here"), None);
        assert_eq!(strip_ansi("\u{1b}[92mINFO\u{1b}[0m"), "INFO");
    }
}
