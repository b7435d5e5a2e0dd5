//! [`ClientRunner`]: one message in, one reply out, in a fresh store every time.

use std::sync::Arc;

use wasmtime::Store;

use crate::bindings::client::sepal::app::log as wit_log;
use crate::engine::{ClientComponent, Inner};
use crate::log::LogSink;
use crate::store::{wasi_view, Common, Invocation};
use crate::{Grants, Limits, SandboxError};

/// The store state of a ClientApp invocation.
pub(crate) struct ClientState {
    pub(crate) common: Common,
}

wasi_view!(ClientState);

impl crate::bindings::client::sepal::app::types::Host for ClientState {}

impl wit_log::Host for ClientState {
    fn log(&mut self, level: wit_log::Level, message: String) {
        self.common.log(crate::log_level_client(level), &message);
    }
}

/// Runs ClientApps: a fresh, fully sandboxed store per message (Flower's ClientApps are
/// stateless between messages; state lives in the context).
#[derive(Clone)]
pub struct ClientRunner {
    pub(crate) sandbox: Arc<Inner>,
}

impl std::fmt::Debug for ClientRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientRunner")
    }
}

impl ClientRunner {
    /// Handles one message: instantiates `component` in a fresh store limited by `limits`
    /// and granted `grants`, calls `handle(message, context)` and returns the reply
    /// message and the updated context, as the bytes the app returned (check them with
    /// [`decode_reply`](crate::decode_reply)). The app's stdout, stderr and `log` calls go
    /// to `log` as they happen.
    ///
    /// Waits for a free slot first if [`SandboxConfig::concurrency`] invocations are
    /// running; the deadline starts when the slot is taken. Must run inside a tokio
    /// runtime with the time driver enabled. Dropping the future stops the app.
    ///
    /// [`SandboxConfig::concurrency`]: crate::SandboxConfig::concurrency
    pub async fn handle(
        &self,
        component: &ClientComponent,
        message: &[u8],
        context: &[u8],
        limits: &Limits,
        grants: &Grants,
        log: Arc<dyn LogSink>,
    ) -> Result<(Vec<u8>, Vec<u8>), SandboxError> {
        let _slot = self.sandbox.slot_for(&component.sandbox).await?;
        let (invocation, common) = Invocation::start(limits, grants, log, self.sandbox.config.max_memory_bytes)?;
        let mut store = Store::new(&self.sandbox.engine, ClientState { common });
        invocation.arm(&mut store, |s| &mut s.common.limiter);
        let pre = component.pre.clone();
        let outcome = invocation
            .run(async {
                let client = pre.instantiate_async(&mut store).await?;
                client.sepal_app_client_app().call_handle(&mut store, message, context).await
            })
            .await?;
        outcome.map_err(|e| SandboxError::AppError { code: e.code, message: e.message })
    }
}
