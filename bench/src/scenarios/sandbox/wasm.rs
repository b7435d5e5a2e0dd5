//! The Wasm side: a [`Sandbox`] configured as a SuperNode's (the defaults), the guest
//! component loaded into it, and one call at a time through [`ClientRunner::handle`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use sepal_sandbox::{
    ClientComponent, ClientRunner, Grants, Limits, LogBuffer, LogLevel, LogSource, Sandbox, SandboxConfig,
};

use super::app::{Timings, TIMING_ENV, TIMING_PREFIX};

/// Bounds one call (the default deadline is 600 s).
const CALL_DEADLINE: Duration = Duration::from_secs(120);

/// One-off costs of getting a component ready.
#[derive(Clone, Copy, Debug)]
pub struct Loads {
    /// `Sandbox::new`: the engine, the linkers, the epoch ticker.
    pub new_sandbox: Duration,
    /// The first `load_client`: compiling the component with Cranelift and linking it.
    pub cold: Duration,
    /// A second `load_client` of the same bytes: the cache hit (sha256 and a lookup).
    pub cached: Duration,
}

/// One call's outcome.
#[derive(Debug)]
pub struct Call {
    /// From just before `handle` to its return: instantiate, copy the message in, run,
    /// copy the reply and context out.
    pub wall: Duration,
    /// The reply message's bytes.
    pub reply: Vec<u8>,
    /// The guest's own timings and linear memory size, when asked for.
    pub guest: Option<(Timings, u64)>,
}

/// A sandbox with the guest loaded, and a runtime to drive its calls.
pub struct WasmSide {
    runtime: tokio::runtime::Runtime,
    runner: ClientRunner,
    app: ClientComponent,
    limits: Limits,
}

impl WasmSide {
    /// Creates a sandbox with the default configuration and loads `component` into it,
    /// timing both (the sandbox is fresh, so the first load compiles).
    pub fn start(component: &[u8]) -> Result<(WasmSide, Loads)> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let started = Instant::now();
        let sandbox = Sandbox::new(SandboxConfig::default())?;
        let new_sandbox = started.elapsed();
        let started = Instant::now();
        let app = sandbox.load_client(component).context("loading the guest component")?;
        let cold = started.elapsed();
        let started = Instant::now();
        sandbox.load_client(component)?;
        let cached = started.elapsed();
        let limits = Limits::default().with_deadline_at_most(CALL_DEADLINE);
        let side = WasmSide { runtime, runner: sandbox.client_runner(), app, limits };
        Ok((side, Loads { new_sandbox, cold, cached }))
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Handles one message; with `timing`, the guest logs its timings and they are returned.
    pub fn call(&self, message: &[u8], context: &[u8], timing: bool) -> Result<Call> {
        let log = Arc::new(LogBuffer::new());
        let grants = if timing { Grants::none().env(TIMING_ENV, "1") } else { Grants::none() };
        let (result, wall) = self.runtime.block_on(async {
            let started = Instant::now();
            let result = self.runner.handle(&self.app, message, context, &self.limits, &grants, log.clone()).await;
            (result, started.elapsed())
        });
        let (reply, _context) = result.map_err(|e| anyhow!("the guest failed: {e}\nits log:\n{}", log.text()))?;
        let guest = if timing {
            let lines = log.lines_from(LogSource::App(LogLevel::Info));
            let line = lines.iter().find(|l| l.starts_with(TIMING_PREFIX)).context("the guest logged no timings")?;
            Some(Timings::parse(line).with_context(|| format!("malformed timing line {line:?}"))?)
        } else {
            None
        };
        Ok(Call { wall, reply, guest })
    }
}
