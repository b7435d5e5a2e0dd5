//! One ServerApp run: the run's context in, the app driving the federation through a
//! [`GridHost`] (the link state in-process, ServerAppIo in `sepal serverapp`), the final
//! context out.

use std::sync::Arc;
use std::time::Instant;

use prost::Message as _;
use sepal_proto::pb;
use sepal_sandbox::{decode_reply, GridHost, LogSink, SandboxError, ServerComponent};

use crate::{AppFailure, Executor, Side};

impl Executor {
    /// Runs `component` to its end with the run's `context` (run config fused), the grid
    /// and the operator's limits; returns the final context (the app's new state, the rest
    /// as given).
    pub async fn run_server(
        &self,
        component: &ServerComponent,
        context: &pb::Context,
        grid: impl GridHost,
        log: Arc<dyn LogSink>,
    ) -> Result<pb::Context, AppFailure> {
        let started = Instant::now();
        let ran = self
            .sandbox
            .server_runner()
            .run(component, &context.encode_to_vec(), grid, &self.settings.limits, &self.settings.grants, log)
            .await
            .and_then(|out| decode_reply::<pb::Context>(&out[..]));
        self.observe(Side::Server, started, ran.as_ref().err().map_or("ok", SandboxError::kind));
        let returned = ran.map_err(server_failure)?;
        Ok(pb::Context { state: returned.state, ..context.clone() })
    }
}

/// A ServerApp's failure keeps the sandbox's whole description (it becomes the run's
/// details, which `flwr ls` shows).
pub(crate) fn server_failure(e: SandboxError) -> AppFailure {
    match e {
        SandboxError::BadComponent(_) => AppFailure::Load(format!("cannot load the ServerApp: {e}")),
        other => AppFailure::Raised(other.to_string()),
    }
}
