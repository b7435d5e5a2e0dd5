//! Subprocess isolation: the SuperLink runs each submitted run's ServerApp.
//!
//! A Wasm ServerApp runs in-process in the sandbox ([`crate::serverapp`]). For a Python FAB
//! the launcher starts `flwr-serverapp --run-once` pointed at this
//! SuperLink's ServerAppIo address, as Flower does. The process asks for a pending run
//! itself; runs are launched one at a time, oldest first, so the run a process takes is
//! the one it was started for. When the process exits before its run finished, the run
//! becomes finished:failed and the end of the process's output goes into the run's log,
//! so `flwr log` shows why.
//!
//! SuperLink replicas sharing one state each run a launcher: a run's ServerApp starts on
//! the replica that takes the run's lease ([`crate::lease`]), and a Wasm ServerApp whose
//! replica died is started again by the replica that takes its lapsed lease over. A Python
//! ServerApp process dies with its replica and is not restarted: such runs fail once
//! their heartbeat lapses (run Python ServerApps under process isolation for failover).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sepal_executor::log::{app_text, host_line};
use sepal_executor::{AppCode, AppFailure, Executor, RunApp, Side};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::lease::{Leases, LEASE_RENEW};
use crate::link::{finished, Link};
use crate::serverapp::Start;
use crate::state::{status, RunState};

/// How many trailing output lines of a failed ServerApp go into the run's log.
const TAIL_LINES: usize = 40;

/// How long a started ServerApp may take to pick up its run before the launcher moves on.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to start ServerApps.
#[derive(Clone)]
pub struct LauncherConfig {
    /// The `flwr-serverapp` executable (a bare name is looked up on PATH).
    pub serverapp_bin: PathBuf,
    /// The ServerAppIo address the process connects to.
    pub serverappio: SocketAddr,
    /// Runs Wasm ServerApps, with the operator's limits and grants.
    pub executor: Executor,
}

/// The run's FAB, read, and the kind of its ServerApp.
fn serverapp_of(link: &Link, run_id: u64) -> Result<(RunApp, AppCode), AppFailure> {
    let run = link.state.run(run_id).map_err(|e| AppFailure::Load(e.to_string()))?;
    let run = run.ok_or_else(|| AppFailure::Load("the run vanished".into()))?;
    let fab = link.state.fab(&run.fab_hash).map_err(|e| AppFailure::Load(e.to_string()))?;
    let fab = fab.ok_or_else(|| AppFailure::Load("the run's FAB is missing".into()))?;
    let app = RunApp::read(&fab, &run.fab_hash)?;
    let code = app.code(Side::Server)?;
    Ok((app, code))
}

/// Launches ServerApps for pending runs until the task is dropped.
pub async fn run(link: Arc<Link>, config: LauncherConfig) {
    let leases = Leases::new(link.clone());
    if leases.shared() {
        tokio::spawn(take_over(link.clone(), config.executor.clone(), leases.clone()));
    }
    let mut changed = link.events.run_changed.subscribe();
    let mut submitted = link.events.runs_submitted.subscribe();
    loop {
        let next = match link.state.pending_run_ids() {
            Ok(ids) => ids.first().copied(),
            Err(e) => {
                tracing::error!("launcher cannot read pending runs: {e}");
                None
            }
        };
        let Some(run_id) = next else {
            // Only the link's end drops the sender, and the launcher ends with it.
            let _ = submitted.changed().await;
            continue;
        };
        if !admitted(&link, run_id).await {
            continue;
        }
        if !leases.take(run_id) {
            // Another replica starts this run's ServerApp.
            wait_until_claimed(&link, run_id, &mut changed).await;
            continue;
        }
        match serverapp_of(&link, run_id) {
            Ok((app, AppCode::Wasm(_))) => {
                let executor = config.executor.clone();
                tokio::spawn(crate::serverapp::run(link.clone(), executor, run_id, app, leases.clone(), Start::Fresh));
                wait_until_claimed(&link, run_id, &mut changed).await;
            }
            Ok((_, AppCode::Python(_))) => match start(&config, run_id) {
                Ok(child) => {
                    let tail = Arc::new(Mutex::new(VecDeque::new()));
                    let child = capture(child, &tail);
                    tokio::spawn(watch(link.clone(), run_id, child, tail, leases.clone()));
                    wait_until_claimed(&link, run_id, &mut changed).await;
                }
                Err(details) => fail(&link, run_id, &details),
            },
            Err(failure) => fail(&link, run_id, &failure.to_string()),
        }
    }
}

/// How often a run waiting for a ServerApp slot looks again when nothing announces a
/// change (a run whose ServerApp went silent ends without an event).
const SLOT_RECHECK: Duration = Duration::from_secs(2);

/// Whether the oldest pending run may start now (see [`Link::may_start_run`]); if not,
/// waits for a change before answering.
async fn admitted(link: &Link, run_id: u64) -> bool {
    match link.may_start_run(run_id) {
        Ok(true) => return true,
        Ok(false) => {}
        Err(e) => tracing::error!("launcher cannot count running runs: {e}"),
    }
    let mut changed = link.events.run_changed.subscribe();
    tokio::select! {
        _ = changed.changed() => {}
        _ = tokio::time::sleep(SLOT_RECHECK) => {}
    }
    false
}

fn start(config: &LauncherConfig, run_id: u64) -> Result<Child, String> {
    let mut cmd = Command::new(&config.serverapp_bin);
    cmd.arg("--run-once")
        .arg("--serverappio-api-address")
        .arg(config.serverappio.to_string())
        .arg("--insecure")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| {
        format!(
            "could not start the ServerApp process `{}`: {e}. Install flwr==1.20.0 so that \
             `flwr-serverapp` is on PATH, or pass --serverapp-bin",
            config.serverapp_bin.display()
        )
    })?;
    tracing::info!(run_id, pid = child.id(), "ServerApp process started");
    Ok(child)
}

/// Passes the child's stdout and stderr through to the SuperLink's own, line by line, as
/// Flower's SuperLink does (operators and scripts watch for "Run finished" and the
/// strategy's lines there), and keeps the last lines for a failure report.
fn capture(mut child: Child, tail: &Arc<Mutex<VecDeque<String>>>) -> Child {
    fn pump(out: impl AsyncRead + Unpin + Send + 'static, to_stdout: bool, tail: Arc<Mutex<VecDeque<String>>>) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if to_stdout {
                    println!("{line}");
                } else {
                    eprintln!("{line}");
                }
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
    }
    if let Some(out) = child.stdout.take() {
        pump(out, true, tail.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, false, tail.clone());
    }
    child
}

async fn wait_until_claimed(link: &Link, run_id: u64, changed: &mut tokio::sync::watch::Receiver<u64>) {
    let claimed = async {
        loop {
            let pending = link.run_status(run_id).map(|s| s.status == status::PENDING).unwrap_or(false);
            if !pending {
                return;
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout(CLAIM_TIMEOUT, claimed).await.is_err() {
        tracing::warn!(run_id, "ServerApp process has not picked up its run yet");
    }
}

/// With replicas: every [`LEASE_RENEW`], starts again the Wasm ServerApp of each active
/// run whose lease lapsed (its replica died) and that this process can take over.
async fn take_over(link: Arc<Link>, executor: Executor, leases: Leases) {
    let mut python_runs = HashSet::new();
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        let active = match link.state.active_run_ids() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("cannot list active runs to take over: {e}");
                continue;
            }
        };
        for run_id in active {
            // A silent run is failed here rather than taken over.
            let live = link.run_status(run_id).is_ok_and(|s| RunState::parse(&s.status) != Some(RunState::Finished));
            if !live || python_runs.contains(&run_id) || leases.is_mine(run_id) || !leases.take(run_id) {
                continue;
            }
            match serverapp_of(&link, run_id) {
                Ok((app, AppCode::Wasm(_))) => {
                    let (link, executor, leases) = (link.clone(), executor.clone(), leases.clone());
                    tokio::spawn(crate::serverapp::run(link, executor, run_id, app, leases, Start::TakeOver));
                }
                Ok((_, AppCode::Python(_))) => {
                    tracing::warn!(run_id, "a Python ServerApp's replica stopped; its process cannot be taken over");
                    python_runs.insert(run_id);
                    leases.release(run_id);
                }
                Err(failure) => {
                    leases.release(run_id);
                    fail(&link, run_id, &failure.to_string());
                }
            }
        }
    }
}

async fn watch(link: Arc<Link>, run_id: u64, mut child: Child, tail: Arc<Mutex<VecDeque<String>>>, leases: Leases) {
    let outcome = tokio::select! {
        outcome = child.wait() => outcome,
        _ = leases.hold(run_id) => {
            let _ = child.kill().await;
            leases.release(run_id);
            return;
        }
    };
    leases.release(run_id);
    // Let the output pumps drain what the process wrote last.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let code = match &outcome {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    let unfinished =
        link.run_status(run_id).map(|s| RunState::parse(&s.status) != Some(RunState::Finished)).unwrap_or(false);
    if !unfinished {
        tracing::info!(run_id, "ServerApp process ended ({code})");
        return;
    }
    let lines: Vec<String> = tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
    if !lines.is_empty() {
        let header = host_line(&format!("ServerApp process output (last {} lines):", lines.len()));
        let _ = link.add_log(run_id, &format!("{header}{}", app_text(&lines.join("\n"))));
    }
    fail(&link, run_id, &format!("ServerApp process ended ({code}) before the run finished"));
}

fn fail(link: &Link, run_id: u64, details: &str) {
    tracing::error!(run_id, "{details}");
    let _ = link.add_host_line(run_id, details);
    match link.update_run_status(run_id, finished(status::FAILED, details)) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(run_id, "could not mark the run failed from its current status"),
        Err(e) => tracing::error!(run_id, "could not mark the run failed: {e}"),
    }
}
