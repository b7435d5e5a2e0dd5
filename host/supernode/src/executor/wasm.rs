//! Wasm ClientApps, run in-process inside the sandbox: a fresh, limited store per
//! message, no network hop.
//!
//! The instruction goes in as a `flwr.proto.Message` with its content inline, the run's
//! context as a `flwr.proto.Context`; the app's reply and context come back as bytes and
//! are treated as untrusted: decoded with limits, routing fields set by the host (an app
//! cannot reply for another node, run or message), identity fields of the context kept.

use std::sync::Arc;

use prost::Message as _;
use sepal_core::records::Message;
use sepal_core::routing::route_reply;
use sepal_core::store::ObjectStore;
use sepal_proto::pb;
use sepal_sandbox::{decode_reply, Grants, Limits, LogSink, LogSource, Sandbox, SandboxError};
use tokio::time::Instant;

use super::{ExecError, Executor, Job};
use crate::node::{AppKind, Completion, NodeState};

/// Runs Wasm ClientApps in the sandbox.
pub struct WasmExecutor {
    sandbox: Sandbox,
    state: Arc<NodeState>,
    objects: Arc<ObjectStore>,
    limits: Limits,
    grants: Grants,
}

impl WasmExecutor {
    /// An executor with the operator's limits and grants.
    pub fn new(
        sandbox: Sandbox,
        state: Arc<NodeState>,
        objects: Arc<ObjectStore>,
        limits: Limits,
        grants: Grants,
    ) -> Self {
        Self { sandbox, state, objects, limits, grants }
    }
}

/// Sends the app's output and log lines to the SuperNode's log, tagged with the run.
struct RunLog(u64);

impl LogSink for RunLog {
    fn line(&self, source: LogSource, line: &str) {
        tracing::info!(target: "clientapp", run_id = self.0, ?source, "{line}");
    }
}

fn sandbox_error(e: SandboxError) -> ExecError {
    match e {
        SandboxError::BadComponent(_) => ExecError::Load(e.to_string()),
        SandboxError::AppError { message, .. } => ExecError::Raised(message),
        other => ExecError::Raised(other.to_string()),
    }
}

#[tonic::async_trait]
impl Executor for WasmExecutor {
    async fn execute(&self, job: Job) -> Result<Completion, ExecError> {
        let AppKind::Wasm(wasm) = &job.app else {
            return Err(ExecError::Load("not a Wasm ClientApp".into()));
        };
        let run_id = job.run.run_id;
        let entry = self.state.run(run_id).ok_or_else(|| ExecError::Load(format!("run {run_id} is not known")))?;
        let component = self.sandbox.load_client(wasm).map_err(sandbox_error)?;
        let instruction = self
            .objects
            .message(&job.instruction, &job.tree)
            .map_err(|e| ExecError::Load(format!("the instruction's objects are incomplete: {e}")))?;
        let message_bytes = pb::Message::from(&instruction).encode_to_vec();
        let context_bytes = entry.context.encode_to_vec();
        let limits = self.limits.clone().with_deadline_at_most(job.deadline.saturating_duration_since(Instant::now()));
        let (reply_bytes, context_out) = self
            .sandbox
            .client_runner()
            .handle(&component, &message_bytes, &context_bytes, &limits, &self.grants, Arc::new(RunLog(run_id)))
            .await
            .map_err(sandbox_error)?;

        let reply: pb::Message = decode_reply(&reply_bytes).map_err(sandbox_error)?;
        let mut reply =
            Message::try_from(reply).map_err(|e| ExecError::Raised(format!("the app's reply is invalid: {e}")))?;
        if reply.content.is_some() == reply.error.is_some() {
            return Err(ExecError::Raised("the app's reply must carry either content or an error".into()));
        }
        let ins = job.instruction.metadata.clone().unwrap_or_default();
        route_reply(&mut reply, &ins, self.state.node_id());
        let returned: pb::Context = decode_reply(&context_out).map_err(sandbox_error)?;
        // Only the state is the app's to change; identity and configs stay the node's.
        let context = pb::Context { state: returned.state, ..entry.context };

        let (tree, id) = self.objects.insert_message(run_id, &reply);
        let mut wire = reply.to_wire_pb();
        if let Some(m) = wire.metadata.as_mut() {
            m.message_id = id;
        }
        Ok(Completion { reply: wire, tree, context })
    }
}
