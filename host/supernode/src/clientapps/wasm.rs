//! Wasm ClientApps, run in-process: the SuperNode's adapter around [`sepal_executor`]. The
//! instruction's objects are in the node's store; the reply's objects go there too.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use sepal_core::store::ObjectStore;
use sepal_executor::log::ClientLog;
use sepal_executor::{AppCode, AppFailure, Executor, Instruction};
use sepal_sandbox::ClientComponent;
use tokio::time::Instant;

use super::{Job, Runner};
use crate::node::{Completion, NodeState};

/// How many runs' components are kept at hand (the sandbox keeps more, but finding one
/// there hashes the component's bytes first).
const COMPONENTS: usize = 16;

/// Runs Wasm ClientApps in the sandbox.
pub struct WasmRunner {
    executor: Executor,
    state: Arc<NodeState>,
    objects: Arc<ObjectStore>,
    /// The loaded component by FAB hash, most recently used last.
    components: Mutex<Vec<(String, ClientComponent)>>,
}

impl WasmRunner {
    /// A runner over the node's state and object store.
    pub fn new(executor: Executor, state: Arc<NodeState>, objects: Arc<ObjectStore>) -> Self {
        Self { executor, state, objects, components: Mutex::default() }
    }

    /// The run's component: at hand, or loaded (compiled, or from the sandbox's caches).
    async fn component(&self, fab_hash: &str, wasm: &Bytes) -> Result<ClientComponent, AppFailure> {
        if let Some(found) = self.at_hand(fab_hash) {
            return Ok(found);
        }
        let component = self.executor.load_client(wasm.clone()).await?;
        let mut components = self.components.lock().unwrap_or_else(|e| e.into_inner());
        if components.len() >= COMPONENTS {
            components.remove(0);
        }
        components.push((fab_hash.to_string(), component.clone()));
        Ok(component)
    }

    fn at_hand(&self, fab_hash: &str) -> Option<ClientComponent> {
        let mut components = self.components.lock().unwrap_or_else(|e| e.into_inner());
        let index = components.iter().position(|(hash, _)| hash == fab_hash)?;
        let entry = components.remove(index);
        let component = entry.1.clone();
        components.push(entry);
        Some(component)
    }
}

#[tonic::async_trait]
impl Runner for WasmRunner {
    async fn run(&self, job: Job) -> Result<Completion, AppFailure> {
        let AppCode::Wasm(wasm) = &job.app else {
            return Err(AppFailure::Load("not a Wasm ClientApp".into()));
        };
        let run_id = job.run.run_id;
        let entry = self.state.run(run_id).ok_or_else(|| AppFailure::Load(format!("run {run_id} is not known")))?;
        let component = self.component(&job.run.fab_hash, wasm).await?;
        // Encoded for the app straight from the objects: the model is copied once. The app
        // gets its own copy, so the node need not hold the model twice while it runs.
        let instruction: Instruction = self
            .objects
            .take_encoded_message(&job.instruction, &job.tree, drop)
            .map_err(|e| AppFailure::Load(format!("the instruction's objects are incomplete: {e}")))?
            .into();
        let time_left = job.deadline.saturating_duration_since(Instant::now());
        let log = Arc::new(ClientLog::new(run_id, self.executor.settings().host_log_bytes));
        let (reply, context) = self
            .executor
            .handle_message(&component, instruction, &entry.context, self.state.node_id(), time_left, log)
            .await?;
        let (tree, id) = self.objects.insert_message(run_id, &reply);
        let mut wire = reply.to_wire_pb();
        if let Some(m) = wire.metadata.as_mut() {
            m.message_id = id;
        }
        Ok(Completion { reply: wire, tree, context })
    }
}
