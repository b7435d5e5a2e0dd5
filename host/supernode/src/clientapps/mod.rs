//! Running a ClientApp on one instruction, behind one interface.
//!
//! [`python::PythonRunner`] serves Python ClientApps over ClientAppIo (to a
//! `flwr-clientapp` it starts, forked by [`forkserver`] where it can be, or to an external
//! ClientApp process); [`wasm::WasmRunner`] runs Wasm components in-process through
//! `sepal-executor`. [`ByKind`] picks between them by what the run's FAB carries.

pub mod forkserver;
pub mod python;
pub mod wasm;

use std::sync::Arc;

use sepal_executor::{AppCode, AppFailure};
use sepal_proto::pb;
use tokio::time::Instant;

use crate::node::Completion;

/// One instruction to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// The run's identity.
    pub run: pb::Run,
    /// What runs the run's ClientApp.
    pub app: AppCode,
    /// The instruction (content-less wire form); its objects are in the node's store.
    pub instruction: pb::Message,
    /// The instruction's object tree.
    pub tree: pb::ObjectTree,
    /// When the instruction expires; the ClientApp must be done before.
    pub deadline: Instant,
}

/// Runs ClientApps.
#[tonic::async_trait]
pub trait Runner: Send + Sync + 'static {
    /// Runs the ClientApp on `job`; on success the reply's objects are in the node's
    /// store and the completion carries the updated context. A failure becomes Flower's
    /// error reply.
    async fn run(&self, job: Job) -> Result<Completion, AppFailure>;
}

/// Sends each job to the runner for its app's kind.
pub struct ByKind {
    /// Runs Python ClientApps.
    pub python: Arc<dyn Runner>,
    /// Runs Wasm ClientApps.
    pub wasm: Arc<dyn Runner>,
}

#[tonic::async_trait]
impl Runner for ByKind {
    async fn run(&self, job: Job) -> Result<Completion, AppFailure> {
        match job.app {
            AppCode::Python(_) => self.python.run(job).await,
            AppCode::Wasm(_) => self.wasm.run(job).await,
        }
    }
}
