//! Python ClientApps: the instruction is served over ClientAppIo to a `flwr-clientapp`
//! process, one the SuperNode starts per message (subprocess isolation) or an external
//! one (process isolation).
//!
//! Starting Python and importing Flower takes 0.6-1.4 s, longer than most messages take
//! to handle. So in subprocess isolation the next `flwr-clientapp` is started as soon as
//! one is used: a *spare* holding a token of its own, waiting in PullClientAppInputs until
//! an instruction is bound to its token. What `flwr-clientapp` sees is Flower's protocol;
//! only its first call is answered later.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sepal_executor::AppFailure;
use tokio::process::{Child, Command};

use super::{Job, Runner};
use crate::node::{new_token, Completion, NodeState};

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
    },
    /// An external `flwr-clientapp` polls ClientAppIo.
    Process,
}

/// A `flwr-clientapp` started ahead of need, and the token it waits with.
struct Spare {
    token: String,
    child: Child,
}

/// Serves instructions to Python ClientApps over ClientAppIo.
pub struct PythonRunner {
    state: Arc<NodeState>,
    mode: PythonMode,
    spare: Mutex<Option<Spare>>,
}

impl PythonRunner {
    /// A runner over the node's state.
    pub fn new(state: Arc<NodeState>, mode: PythonMode) -> Self {
        Self { state, mode, spare: Mutex::new(None) }
    }

    /// Starts `flwr-clientapp` for `token`.
    fn start(&self, token: &str) -> Result<Child, AppFailure> {
        let PythonMode::Subprocess { program, clientappio, flwr_dir } = &self.mode else {
            return Err(AppFailure::Load("process isolation starts no ClientApp".into()));
        };
        let mut cmd = Command::new(program);
        cmd.args(["--clientappio-api-address", clientappio, "--token", token, "--insecure"])
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = flwr_dir {
            cmd.arg("--flwr-dir").arg(dir);
        }
        cmd.spawn().map_err(|e| {
            AppFailure::Load(format!(
                "could not start the ClientApp process `{}`: {e}. Install flwr==1.20.0 so that \
                 `flwr-clientapp` is on PATH, or pass --clientapp-bin",
                program.display()
            ))
        })
    }

    /// The spare, if one is still running; else a process started now. Either way, a new
    /// spare is started for the next message.
    fn process_for_job(&self) -> Result<(String, Child), AppFailure> {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        let warm = spare.take().and_then(|mut s| match s.child.try_wait() {
            Ok(None) => Some((s.token, s.child)),
            _ => {
                self.state.release_spare(&s.token);
                None
            }
        });
        let process = match warm {
            Some(process) => process,
            None => {
                let token = new_token();
                let child = self.start(&token)?;
                (token, child)
            }
        };
        let token = self.state.reserve_spare();
        match self.start(&token) {
            Ok(child) => *spare = Some(Spare { token, child }),
            Err(e) => {
                self.state.release_spare(&token);
                tracing::warn!("no spare ClientApp process: {e}");
            }
        }
        Ok(process)
    }

    async fn run_subprocess(&self, job: &Job) -> Result<Completion, AppFailure> {
        let (token, mut child) = self.process_for_job()?;
        let done = self.state.offer(job.run.run_id, job.instruction.clone(), job.tree.clone(), Some(token));
        tokio::pin!(done);
        tokio::select! {
            completion = &mut done => completion.map_err(|_| AppFailure::Raised("the ClientApp's reply was lost".into())),
            status = child.wait() => {
                // The reply may have landed just before the exit.
                match tokio::time::timeout(Duration::from_millis(200), &mut done).await {
                    Ok(Ok(completion)) => Ok(completion),
                    _ => {
                        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                        Err(AppFailure::Raised(format!("the ClientApp process ended ({status}) without replying")))
                    }
                }
            }
            _ = tokio::time::sleep_until(job.deadline) => Err(AppFailure::TimedOut),
        }
    }
}

#[tonic::async_trait]
impl Runner for PythonRunner {
    async fn run(&self, job: Job) -> Result<Completion, AppFailure> {
        let result = match &self.mode {
            PythonMode::Subprocess { .. } => self.run_subprocess(&job).await,
            PythonMode::Process => {
                let done = self.state.offer(job.run.run_id, job.instruction.clone(), job.tree.clone(), None);
                tokio::select! {
                    completion = done => completion.map_err(|_| AppFailure::Raised("the ClientApp's reply was lost".into())),
                    _ = tokio::time::sleep_until(job.deadline) => Err(AppFailure::TimedOut),
                }
            }
        };
        self.state.withdraw();
        result
    }
}
