//! Running a Flower app's Wasm components, one way for every isolation mode.
//!
//! The SuperLink (a ServerApp, in-process), the SuperNode (a ClientApp, in-process) and
//! `sepal serverapp` / `sepal clientapp` (the same, as separate processes over ServerAppIo
//! and ClientAppIo) are thin adapters around this crate: they fetch what a run needs over
//! their own transport and hand it here; the rules for what an app is given, how long it
//! may take, what of its output is kept and how a failure reads are the same everywhere.
//!
//! ```ignore
//! let executor = Executor::new(Settings::default())?;                         // once per process
//! let app = RunApp::read(&fab.content, &run.fab_hash)?;                        // once per run
//! let component = executor.load_client(app.wasm(Side::Client)?).await?;          // compiled once per FAB
//! let (reply, context) = executor
//!     .handle_message(&component, instruction, &context, node_id, time_to_reply(&meta, None), log)
//!     .await?;                                                                  // per message
//! ```
//!
//! # Layout
//!
//! - [`app`]: [`RunApp`], a run's FAB read and checked: each side's code, the run config.
//! - `clientapp`: [`Executor::handle_message`] on an [`Instruction`], and [`time_to_reply`].
//! - `serverapp`: [`Executor::run_server`].
//! - [`log`]: the one format of app output in a run's log (app text neutralised, host
//!   lines tagged), and the sinks both sides use (batched and capped in the process log).
//! - [`failure`]: [`AppFailure`], why an app produced no result, in Flower's terms.
//!
//! This crate names no transport (no tonic): the grid a ServerApp drives is the caller's
//! [`GridHost`](sepal_sandbox::GridHost).

pub mod app;
mod clientapp;
pub mod failure;
pub mod log;
mod serverapp;

use std::sync::Arc;

use bytes::Bytes;
use sepal_sandbox::{ClientComponent, Grants, Limits, Sandbox, SandboxConfig, SandboxError, ServerComponent};

pub use app::{AppCode, RunApp, Side};
pub use clientapp::{time_to_reply, Instruction};
pub use failure::AppFailure;

/// Where app code runs (`--isolation`), on a SuperLink (ServerApps) and on SuperNodes
/// (ClientApps) alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The SuperLink or SuperNode runs the apps itself: a Wasm app in-process, in the
    /// sandbox; a Python app in a `flwr-serverapp` / `flwr-clientapp` process it starts.
    Subprocess,
    /// It runs no app code: an external, separately managed process (`flwr-serverapp`,
    /// `sepal serverapp`, ...) connects over ServerAppIo / ClientAppIo.
    Process,
}

/// What the operator sets for the Wasm apps this process runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Memory, time, output and resource limits per invocation (one ClientApp message, or
    /// one whole ServerApp run).
    pub limits: Limits,
    /// Capabilities beyond nothing (a data directory, connections).
    pub grants: Grants,
    /// The engine: concurrency, pool sizing, and where compiled components are kept
    /// ([`SandboxConfig::artifact_dir`]; see [`default_cache_dir`]).
    pub engine: SandboxConfig,
    /// Bytes of an invocation's output copied into this process's own log ([`log`]): per
    /// message for a ClientApp, per run for a ServerApp (whose output is in its run's log
    /// anyway). Default 256 KiB, one stream's [`Limits::stdout_bytes`].
    pub host_log_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let limits = Limits::default();
        Settings {
            host_log_bytes: limits.stdout_bytes,
            limits,
            grants: Grants::default(),
            engine: SandboxConfig::default(),
        }
    }
}

/// Where compiled components are kept by default: `$XDG_CACHE_HOME/sepal/wasm`, else
/// `$HOME/.cache/sepal/wasm` (`None` without either). Compiling a component takes 0.1-1 s;
/// loading it from here takes milliseconds, and every process of the same user shares it.
pub fn default_cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()).map(std::path::PathBuf::from).or_else(
        || std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| std::path::PathBuf::from(h).join(".cache")),
    )?;
    Some(base.join("sepal").join("wasm"))
}

/// One finished invocation of a Wasm app (a ClientApp message, a whole ServerApp run),
/// for whoever counts them ([`Executor::observed_by`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Invocation {
    /// Which app ran.
    pub side: Side,
    /// `ok`, or the cause of the failure: a [`SandboxError::kind`], or `invalid_output`
    /// for a reply the host could not use.
    pub outcome: &'static str,
    /// How long it ran, in seconds.
    pub seconds: f64,
}

/// Told of every finished [`Invocation`].
pub type Observer = Arc<dyn Fn(&Invocation) + Send + Sync>;

/// Runs Wasm apps in the sandbox: one per process. Cheap to clone (shared).
#[derive(Clone)]
pub struct Executor {
    sandbox: Sandbox,
    settings: Arc<Settings>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Executor {
    /// Sets up the sandbox (engine, epoch ticker, component cache) as `settings` say.
    pub fn new(settings: Settings) -> Result<Self, SandboxError> {
        Ok(Executor { sandbox: Sandbox::new(settings.engine.clone())?, settings: Arc::new(settings), observer: None })
    }

    /// This executor, telling `observer` (if any) of every invocation it finishes.
    pub fn observed_by(mut self, observer: Option<Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Tells the observer, if any, that an invocation of `side` begun at `started` ended
    /// with `outcome`.
    fn observe(&self, side: Side, started: std::time::Instant, outcome: &'static str) {
        if let Some(observer) = &self.observer {
            observer(&Invocation { side, outcome, seconds: started.elapsed().as_secs_f64() });
        }
    }

    /// The operator's limits and grants.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A ClientApp component, compiled (or found in the cache) on a blocking thread: a
    /// compile is CPU work that must not stall the async threads.
    pub async fn load_client(&self, wasm: Bytes) -> Result<ClientComponent, AppFailure> {
        let sandbox = self.sandbox.clone();
        match tokio::task::spawn_blocking(move || sandbox.load_client(&wasm)).await {
            Ok(loaded) => loaded.map_err(AppFailure::from),
            Err(e) => Err(AppFailure::Load(format!("loading the ClientApp panicked: {e}"))),
        }
    }

    /// A ServerApp component, as [`Executor::load_client`].
    pub async fn load_server(&self, wasm: Bytes) -> Result<ServerComponent, AppFailure> {
        let sandbox = self.sandbox.clone();
        match tokio::task::spawn_blocking(move || sandbox.load_server(&wasm)).await {
            Ok(loaded) => loaded.map_err(serverapp::server_failure),
            Err(e) => Err(AppFailure::Load(format!("loading the ServerApp panicked: {e}"))),
        }
    }
}
