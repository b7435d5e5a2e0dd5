//! Running a ClientApp on one instruction, behind one interface.
//!
//! [`python::PythonExecutor`] serves Python ClientApps over ClientAppIo;
//! [`wasm::WasmExecutor`] runs Wasm components in the sandbox, in-process. [`ByApp`]
//! picks between them by what the run's FAB carries.

pub mod python;
pub mod wasm;

use std::sync::Arc;

use sepal_proto::pb;
use tokio::time::Instant;

use crate::node::{AppKind, Completion};

/// One instruction to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// The run's identity.
    pub run: pb::Run,
    /// What kind of ClientApp the run's FAB carries.
    pub app: AppKind,
    /// The instruction (content-less wire form); its objects are in the node's store.
    pub instruction: pb::Message,
    /// The instruction's object tree.
    pub tree: pb::ObjectTree,
    /// When the instruction expires; the ClientApp must be done before.
    pub deadline: Instant,
}

/// Why a ClientApp produced no reply. Each becomes a Flower error reply.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The app could not be loaded or started (Flower code 1).
    #[error("{0}")]
    Load(String),
    /// The app failed while handling the message (Flower code 2).
    #[error("{0}")]
    Raised(String),
    /// The app ran out of time.
    #[error("the ClientApp did not reply before the message expired")]
    TimedOut,
}

impl ExecError {
    /// Flower's error code for this failure.
    pub fn code(&self) -> i64 {
        match self {
            ExecError::Load(_) => sepal_core::Error::LOAD_CLIENT_APP_EXCEPTION,
            ExecError::Raised(_) => sepal_core::Error::CLIENT_APP_RAISED_EXCEPTION,
            ExecError::TimedOut => sepal_core::Error::UNKNOWN,
        }
    }
}

/// Runs ClientApps.
#[tonic::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs the ClientApp on `job`; on success the reply's objects are in the node's
    /// store and the completion carries the updated context.
    async fn execute(&self, job: Job) -> Result<Completion, ExecError>;
}

/// Sends each job to the executor for its app's kind.
pub struct ByApp {
    /// Runs Python ClientApps.
    pub python: Arc<dyn Executor>,
    /// Runs Wasm ClientApps.
    pub wasm: Arc<dyn Executor>,
}

#[tonic::async_trait]
impl Executor for ByApp {
    async fn execute(&self, job: Job) -> Result<Completion, ExecError> {
        match job.app {
            AppKind::Python => self.python.execute(job).await,
            AppKind::Wasm(_) => self.wasm.execute(job).await,
        }
    }
}
