//! Python ClientApps: the instruction is served over ClientAppIo to a `flwr-clientapp`
//! process, one the SuperNode starts per message (subprocess isolation) or an external
//! one (process isolation). Messages of different runs are served at once, each to its
//! own process (the main loop bounds how many, and hands out one per run at a time).
//!
//! Starting Python and importing Flower takes 0.5 CPU-seconds or more, longer than most
//! messages take to handle. So in subprocess isolation:
//!
//! - Processes come from a fork server ([`super::forkserver`]) that has imported Flower once:
//!   each message still gets a fresh process, without the import. A fork server that ends
//!   is started again with the next message, up to [`MAX_FORK_SERVER_STARTS`] times. When
//!   the program is not a Python console script, the fork server cannot start or keeps
//!   ending, or the operator turned it off, `flwr-clientapp` is spawned per message (a
//!   warning says why, once).
//! - The next process is started as soon as one is used: a *spare* holding a token of its
//!   own, waiting in PullClientAppInputs until an instruction is bound to its token.
//!
//! What `flwr-clientapp` sees is Flower's protocol; only its first call is answered later.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sepal_executor::AppFailure;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::forkserver::{Entry, ForkServer, ForkServerError, Forked, Script, FLOWER_CLIENTAPP};
use super::{Job, Runner};
use crate::node::{new_token, Completion, NodeState};

/// How many times a SuperNode starts a fork server before it gives up on it and spawns
/// `flwr-clientapp` per message: one that keeps ending (killed, out of memory, a ClientApp
/// that kills its parent) costs an import each time, which spawning costs anyway.
pub const MAX_FORK_SERVER_STARTS: u32 = 3;

/// Who starts the Python ClientApp process.
#[derive(Debug, Clone)]
pub enum PythonMode {
    /// The SuperNode starts `flwr-clientapp` for each message.
    Subprocess {
        /// The executable (a bare name is looked up on PATH).
        program: PathBuf,
        /// The ClientAppIo address the process dials.
        clientappio: String,
        /// Passed as `--flwr-dir` when set.
        flwr_dir: Option<PathBuf>,
        /// Whether processes may come from a fork server (else each is spawned).
        fork_server: bool,
    },
    /// An external `flwr-clientapp` polls ClientAppIo.
    Process,
}

/// A started `flwr-clientapp`; killed when dropped, however it was started.
#[derive(Debug)]
enum AppProcess {
    /// Spawned by the SuperNode (`kill_on_drop`).
    Spawned(Child),
    /// Forked by the fork server.
    Forked(Forked),
}

impl AppProcess {
    /// Waits for the process to exit.
    async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            AppProcess::Spawned(child) => child.wait().await,
            AppProcess::Forked(child) => child.wait().await,
        }
    }

    fn is_running(&mut self) -> bool {
        let exited = match self {
            AppProcess::Spawned(child) => child.try_wait(),
            AppProcess::Forked(child) => child.try_wait(),
        };
        matches!(exited, Ok(None))
    }
}

/// A process started ahead of need, and the token it waits with.
struct Spare {
    token: String,
    process: AppProcess,
}

/// Whether processes come from the fork server.
enum Forks {
    /// None running: one starts with the next Python message (if `starts` allows).
    Idle,
    Ready(ForkServer),
    /// Not used (the reason was logged): spawn per message.
    Off,
}

/// The fork server, and how many times one was started.
struct ForkState {
    forks: Forks,
    starts: u32,
}

/// Serves instructions to Python ClientApps over ClientAppIo.
pub struct PythonRunner {
    state: Arc<NodeState>,
    mode: PythonMode,
    /// What the fork server imports and calls (Flower's `flwr_clientapp`).
    entry: Entry,
    forks: Mutex<ForkState>,
    spare: Mutex<Option<Spare>>,
}

impl PythonRunner {
    /// A runner over the node's state.
    pub fn new(state: Arc<NodeState>, mode: PythonMode) -> Self {
        Self::with_entry(state, mode, FLOWER_CLIENTAPP)
    }

    fn with_entry(state: Arc<NodeState>, mode: PythonMode, entry: Entry) -> Self {
        let forks = ForkState { forks: Forks::Idle, starts: 0 };
        Self { state, mode, entry, forks: Mutex::new(forks), spare: Mutex::new(None) }
    }

    /// `flwr-clientapp`'s arguments for `token`; `parent` is the process it watches
    /// (`--parent-pid`: it exits when that one does).
    fn args(&self, token: &str, parent: u32) -> Result<Vec<OsString>, AppFailure> {
        let PythonMode::Subprocess { clientappio, flwr_dir, .. } = &self.mode else {
            return Err(AppFailure::Load("process isolation starts no ClientApp".into()));
        };
        let mut args: Vec<OsString> =
            ["--clientappio-api-address", clientappio, "--token", token, "--insecure"].map(OsString::from).into();
        args.extend(["--parent-pid".into(), parent.to_string().into()]);
        if let Some(dir) = flwr_dir {
            args.extend(["--flwr-dir".into(), dir.into()]);
        }
        Ok(args)
    }

    /// Starts `flwr-clientapp` for `token`: forked by the fork server when it can be,
    /// else spawned.
    async fn start(&self, token: &str) -> Result<AppProcess, AppFailure> {
        let mut fs = self.forks.lock().await;
        if let Forks::Ready(server) = &fs.forks {
            // A forked child's parent is the fork server, which ends with the SuperNode.
            match server.spawn(&self.args(token, server.pid())?).await {
                Ok(child) => return Ok(AppProcess::Forked(child)),
                Err(e) => {
                    tracing::warn!("could not fork flwr-clientapp ({e}); spawning it");
                    if matches!(e, ForkServerError::Gone) {
                        // Dropped, so ended if it only stopped answering; the next message
                        // starts another.
                        fs.forks = Forks::Idle;
                    }
                }
            }
        }
        drop(fs);
        self.spawn(token)
    }

    /// Makes sure a fork server runs, unless it is not to be used: starts one if none was
    /// started yet or the last one ended.
    async fn start_fork_server(&self) {
        let PythonMode::Subprocess { program, fork_server, .. } = &self.mode else {
            return;
        };
        let mut fs = self.forks.lock().await;
        match &fs.forks {
            Forks::Off => return,
            Forks::Ready(server) if !server.has_ended() => return,
            Forks::Ready(server) => {
                tracing::warn!(pid = server.pid(), "the flwr-clientapp fork server ended");
                fs.forks = Forks::Idle;
            }
            Forks::Idle => {}
        }
        if !fork_server {
            tracing::info!("fork server off: flwr-clientapp is spawned per message");
            fs.forks = Forks::Off;
            return;
        }
        if fs.starts >= MAX_FORK_SERVER_STARTS {
            tracing::warn!(
                "the flwr-clientapp fork server was started {} times; spawning flwr-clientapp per message from now on",
                fs.starts
            );
            fs.forks = Forks::Off;
            return;
        }
        fs.starts += 1;
        let started = match Script::find(program, self.entry) {
            Ok(script) => ForkServer::start(&script).await,
            Err(e) => Err(e),
        };
        fs.forks = match started {
            Ok(server) => Forks::Ready(server),
            Err(e) => {
                tracing::warn!("no fork server, starting flwr-clientapp per message: {e}");
                Forks::Off
            }
        };
    }

    /// Spawns `flwr-clientapp` for `token`.
    fn spawn(&self, token: &str) -> Result<AppProcess, AppFailure> {
        let PythonMode::Subprocess { program, .. } = &self.mode else {
            return Err(AppFailure::Load("process isolation starts no ClientApp".into()));
        };
        let mut cmd = Command::new(program);
        cmd.args(self.args(token, std::process::id())?).stdin(Stdio::null()).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            AppFailure::Load(format!(
                "could not start the ClientApp process `{}`: {e}. Install flwr==1.20.0 so that \
                 `flwr-clientapp` is on PATH, or pass --clientapp-bin",
                program.display()
            ))
        })?;
        Ok(AppProcess::Spawned(child))
    }

    /// The spare, if one is still running; else a process started now.
    async fn process_for_job(&self, spare: &mut Option<Spare>) -> Result<(String, AppProcess), AppFailure> {
        if let Some(mut s) = spare.take() {
            if s.process.is_running() {
                return Ok((s.token, s.process));
            }
            self.state.release_spare(&s.token);
        }
        let token = new_token();
        let process = self.start(&token).await?;
        Ok((token, process))
    }

    /// Starts the spare for the next message.
    async fn refill(&self, spare: &mut Option<Spare>) {
        let token = self.state.reserve_spare();
        match self.start(&token).await {
            Ok(process) => *spare = Some(Spare { token, process }),
            Err(e) => {
                self.state.release_spare(&token);
                tracing::warn!("no spare ClientApp process: {e}");
            }
        }
    }

    async fn run_subprocess(&self, job: &Job) -> Result<Completion, AppFailure> {
        self.start_fork_server().await;
        let mut spare = self.spare.lock().await;
        let (token, mut process) = self.process_for_job(&mut spare).await?;
        let mut offer = self.state.offer(job.run.run_id, job.instruction.clone(), job.tree.clone(), Some(token));
        // After the offer, so that starting the spare does not delay this message.
        self.refill(&mut spare).await;
        drop(spare);
        let done = &mut offer.done;
        tokio::select! {
            completion = &mut *done => completion.map_err(|_| lost()),
            status = process.wait() => {
                // The reply may have landed just before the exit.
                match tokio::time::timeout(Duration::from_millis(200), done).await {
                    Ok(Ok(completion)) => Ok(completion),
                    _ => {
                        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                        Err(AppFailure::Raised(format!("the ClientApp process ended ({status}) without replying")))
                    }
                }
            }
            _ = tokio::time::sleep_until(job.deadline) => Err(AppFailure::TimedOut),
        }
        // Returning drops `process` and `offer`: the process is killed if still running (once
        // its reply and context are in, what it would still do is close its channel and
        // collect garbage, about a third of its CPU time), and its token is void.
    }
}

fn lost() -> AppFailure {
    AppFailure::Raised("the ClientApp's reply was lost".into())
}

#[tonic::async_trait]
impl Runner for PythonRunner {
    async fn run(&self, job: Job) -> Result<Completion, AppFailure> {
        match &self.mode {
            PythonMode::Subprocess { .. } => self.run_subprocess(&job).await,
            PythonMode::Process => {
                let mut offer = self.state.offer(job.run.run_id, job.instruction.clone(), job.tree.clone(), None);
                tokio::select! {
                    completion = &mut offer.done => completion.map_err(|_| lost()),
                    _ = tokio::time::sleep_until(job.deadline) => Err(AppFailure::TimedOut),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
