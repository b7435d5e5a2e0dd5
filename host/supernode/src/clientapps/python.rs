//! Python ClientApps: the instruction is served over ClientAppIo to a `flwr-clientapp`
//! process, one the SuperNode starts per message (subprocess isolation) or an external
//! one (process isolation).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;

use sepal_executor::AppFailure;

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

/// Serves instructions to Python ClientApps over ClientAppIo.
pub struct PythonRunner {
    state: Arc<NodeState>,
    mode: PythonMode,
}

impl PythonRunner {
    /// A runner over the node's state.
    pub fn new(state: Arc<NodeState>, mode: PythonMode) -> Self {
        Self { state, mode }
    }

    async fn run_subprocess(
        &self,
        job: &Job,
        program: &PathBuf,
        clientappio: &str,
        flwr_dir: &Option<PathBuf>,
    ) -> Result<Completion, AppFailure> {
        let token = new_token();
        let done = self.state.offer(job.run.run_id, job.instruction.clone(), job.tree.clone(), Some(token.clone()));
        let mut cmd = Command::new(program);
        cmd.args(["--clientappio-api-address", clientappio, "--token", &token, "--insecure"])
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = flwr_dir {
            cmd.arg("--flwr-dir").arg(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            AppFailure::Load(format!(
                "could not start the ClientApp process `{}`: {e}. Install flwr==1.20.0 so that \
                 `flwr-clientapp` is on PATH, or pass --clientapp-bin",
                program.display()
            ))
        })?;
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
            PythonMode::Subprocess { program, clientappio, flwr_dir } => {
                self.run_subprocess(&job, program, clientappio, flwr_dir).await
            }
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
