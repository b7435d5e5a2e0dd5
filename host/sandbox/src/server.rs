//! [`ServerRunner`] and the [`GridHost`] a ServerApp drives the federation through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::bindings::server::sepal::app::grid as wit_grid;
use crate::bindings::server::sepal::app::log as wit_log;
use crate::bindings::server::sepal::app::types::AppError as WitAppError;
use crate::engine::{Inner, ServerComponent};
use crate::error::HostAbort;
use crate::log::LogSink;
use crate::store::{wasi_view, Common, Invocation};
use crate::{Grants, Limits, SandboxError};

/// The future a [`GridHost`] method returns.
pub type GridFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GridError>> + Send + 'a>>;

/// How a [`GridHost`] call fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridError {
    /// Returned to the app as its `app-error` (the app may handle it and carry on).
    App {
        /// Flower's error code.
        code: u32,
        /// The reason.
        message: String,
    },
    /// Ends the run at once: the app gets no chance to continue, and
    /// [`ServerRunner::run`] returns [`SandboxError::Aborted`] with this reason (for
    /// example: the run was stopped, or the SuperLink is shutting down).
    Abort(String),
}

/// The federation as a ServerApp sees it: the host side of the WIT `grid` interface. The
/// SuperLink implements it over its link state for one run.
///
/// Messages cross as Flower protobuf bytes (`flwr.proto.Message` with content inline) and
/// are untrusted: check and complete them (run id, source, ids, creation time) here. The
/// methods are async; a method may wait (`send_and_receive` waits until every reply has
/// arrived or the timeout passes, and should wake on arrival, not poll). The run's
/// deadline still applies while a method waits: when it passes, the future is dropped.
///
/// Implement the methods by boxing an `async` block:
///
/// ```ignore
/// fn node_ids(&mut self) -> GridFuture<'_, Vec<u64>> {
///     Box::pin(async move { Ok(self.state.online_nodes(self.run_id).await) })
/// }
/// ```
pub trait GridHost: Send + 'static {
    /// Ids of the nodes online now.
    fn node_ids(&mut self) -> GridFuture<'_, Vec<u64>>;

    /// Pushes instructions; returns their message ids in order (an empty id marks a message
    /// that was not accepted).
    fn push_messages(&mut self, messages: Vec<Vec<u8>>) -> GridFuture<'_, Vec<String>>;

    /// The replies that have arrived for these instruction ids (an id without a reply yet
    /// is simply absent).
    fn pull_messages(&mut self, message_ids: Vec<String>) -> GridFuture<'_, Vec<Vec<u8>>>;

    /// Pushes instructions and waits until every one is answered or `timeout` passes;
    /// returns the replies that arrived. `timeout` is the app's, already made finite and
    /// no longer than what is left of the run's deadline.
    fn send_and_receive(&mut self, messages: Vec<Vec<u8>>, timeout: Duration) -> GridFuture<'_, Vec<Vec<u8>>>;
}

/// The store state of a ServerApp run.
pub(crate) struct ServerState {
    pub(crate) common: Common,
    grid: Box<dyn GridHost>,
    deadline_at: Instant,
}

wasi_view!(ServerState);

impl crate::bindings::server::sepal::app::types::Host for ServerState {}

impl wit_log::Host for ServerState {
    fn log(&mut self, level: wit_log::Level, message: String) {
        self.common.log(crate::log_level_server(level), &message);
    }
}

impl wit_grid::Host for ServerState {
    async fn node_ids(&mut self) -> wasmtime::Result<Result<Vec<u64>, WitAppError>> {
        grid_result(self.grid.node_ids().await)
    }

    async fn push_messages(&mut self, messages: Vec<Vec<u8>>) -> wasmtime::Result<Result<Vec<String>, WitAppError>> {
        grid_result(self.grid.push_messages(messages).await)
    }

    async fn pull_messages(&mut self, message_ids: Vec<String>) -> wasmtime::Result<Result<Vec<Vec<u8>>, WitAppError>> {
        grid_result(self.grid.pull_messages(message_ids).await)
    }

    async fn send_and_receive(
        &mut self,
        messages: Vec<Vec<u8>>,
        timeout_secs: f64,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, WitAppError>> {
        let left = self.deadline_at.saturating_duration_since(Instant::now());
        let timeout = clamp_timeout(timeout_secs, left);
        grid_result(self.grid.send_and_receive(messages, timeout).await)
    }
}

/// The app's timeout made safe: NaN and negative mean "do not wait", infinity and anything
/// past the deadline mean "until the deadline".
fn clamp_timeout(secs: f64, left: Duration) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else if secs >= left.as_secs_f64() {
        left
    } else {
        Duration::from_secs_f64(secs)
    }
}

fn grid_result<T>(r: Result<T, GridError>) -> wasmtime::Result<Result<T, WitAppError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(GridError::App { code, message }) => Ok(Err(WitAppError { code, message })),
        Err(GridError::Abort(reason)) => Err(wasmtime::Error::new(HostAbort(reason))),
    }
}

/// Runs ServerApps: one fresh store per run.
#[derive(Clone)]
pub struct ServerRunner {
    pub(crate) sandbox: Arc<Inner>,
}

impl std::fmt::Debug for ServerRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerRunner")
    }
}

impl ServerRunner {
    /// Runs a ServerApp: instantiates `component` in a fresh store limited by `limits` and
    /// granted `grants`, with `grid` as its view of the federation, calls `run(context)`
    /// and returns the final context bytes the app returned. The app's stdout, stderr and
    /// `log` calls go to `log` as they happen.
    ///
    /// A run is long: the guest yields to tokio every epoch tick, so it shares its thread
    /// fairly. [`Limits::deadline`] bounds the whole run (raise it for long federations).
    /// To stop a run early, drop the future (for example in a `tokio::select!` with a
    /// cancellation signal) or return [`GridError::Abort`] from a grid call. Waits for a
    /// free slot first; must run inside a tokio runtime with the time driver enabled.
    pub async fn run(
        &self,
        component: &ServerComponent,
        context: &[u8],
        grid: impl GridHost,
        limits: &Limits,
        grants: &Grants,
        log: Arc<dyn LogSink>,
    ) -> Result<Vec<u8>, SandboxError> {
        let _slot = self.sandbox.slot_for(&component.sandbox).await?;
        let (invocation, common) = Invocation::start(limits, grants, log, self.sandbox.config.max_memory_bytes)?;
        let state = ServerState { common, grid: Box::new(grid), deadline_at: invocation.deadline_at };
        let mut store = Store::new(&self.sandbox.engine, state);
        invocation.arm(&mut store, |s| &mut s.common.limiter);
        let pre = component.pre.clone();
        let outcome = invocation
            .run(async {
                let server = pre.instantiate_async(&mut store).await?;
                server.sepal_app_server_app().call_run(&mut store, context).await
            })
            .await?;
        outcome.map_err(|e| SandboxError::AppError { code: e.code, message: e.message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_from_the_app_are_made_safe() {
        let left = Duration::from_secs(10);
        assert_eq!(clamp_timeout(f64::NAN, left), Duration::ZERO);
        assert_eq!(clamp_timeout(-1.0, left), Duration::ZERO);
        assert_eq!(clamp_timeout(f64::INFINITY, left), left);
        assert_eq!(clamp_timeout(1e300, left), left);
        assert_eq!(clamp_timeout(2.5, left), Duration::from_millis(2500));
    }
}
