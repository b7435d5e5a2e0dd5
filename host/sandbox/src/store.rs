//! What every invocation's fresh `Store` holds: the WASI context built from the
//! [`Grants`], the resource limiter built from the [`Limits`], and the output capture; plus
//! the shared part of running a call (deadline, slot, error mapping).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::error::{classify, FailureContext, LimitHit};
use crate::log::{Capture, LogLevel, LogSink};
use crate::{Grants, Limits, SandboxError};

/// The per-store resource limiter: [`Limits`] with `trap_on_grow_failure` semantics, and a
/// record of which limit was hit so the error names it.
pub(crate) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    hit: Arc<Mutex<Option<LimitHit>>>,
}

impl Limiter {
    fn new(limits: &Limits, engine_max_memory: usize, hit: Arc<Mutex<Option<LimitHit>>>) -> Self {
        Limiter {
            memory_bytes: limits.memory_bytes.min(engine_max_memory),
            table_elements: limits.table_elements,
            instances: limits.instances,
            tables: limits.tables,
            memories: limits.memories,
            hit,
        }
    }

    fn deny(&mut self, what: &'static str, limit: usize, desired: usize) -> wasmtime::Error {
        let hit = LimitHit { limit: limit as u64, requested: desired as u64, what };
        *self.hit.lock().unwrap_or_else(|e| e.into_inner()) = Some(hit);
        wasmtime::Error::new(hit)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(self.deny("memory", self.memory_bytes, desired));
        }
        // Past the memory's own declared maximum, `memory.grow` fails as Wasm specifies.
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Growth was allowed but failed (the pool's ceiling or the OS): still a trap, so the
        // guest does not carry on with a failed allocation.
        Err(error.context("growing memory failed"))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(self.deny("table elements", self.table_elements, desired));
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("growing a table failed"))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

/// What both worlds' stores hold.
pub(crate) struct Common {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) capture: Capture,
}

impl Common {
    pub(crate) fn log(&self, level: LogLevel, message: &str) {
        self.capture.message(level, message);
    }
}

/// Implements `WasiView` for a store state that has a `common: Common` field.
macro_rules! wasi_view {
    ($ty:ty) => {
        impl wasmtime_wasi::WasiView for $ty {
            fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
                self.common.ctx()
            }
        }
    };
}
pub(crate) use wasi_view;

impl WasiView for Common {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The WASI context for one invocation: nothing but what `grants` lists.
fn wasi_ctx(grants: &Grants, capture: &Capture) -> Result<WasiCtx, SandboxError> {
    let mut b = WasiCtxBuilder::new();
    // No args, no stdin (closed), no inherited anything; output goes to the capture.
    b.stdout(capture.stdout()).stderr(capture.stderr());
    for (k, v) in &grants.env {
        b.env(k, v);
    }
    for dir in &grants.read_only_dirs {
        b.preopened_dir(&dir.host_path, &dir.guest_path, FsPerms::ReadOnly).map_err(|e| {
            SandboxError::Config(format!("read-only dir {} at {}: {e}", dir.host_path.display(), dir.guest_path))
        })?;
    }
    if !grants.tcp_connect.is_empty() {
        let allowed: Arc<[SocketAddr]> = grants.tcp_connect.clone().into();
        b.allow_tcp(true);
        b.socket_addr_check(move |addr, use_| {
            let ok = match use_ {
                SocketAddrUse::TcpConnect => allowed.contains(&addr),
                // `connect` binds implicitly to the wildcard address first; allow only that.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            Box::pin(async move { ok })
        });
    }
    // UDP and name lookup stay off (the builder's defaults).
    Ok(b.build())
}

/// The longest deadline honoured.
const MAX_DEADLINE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// One invocation's setup: the shared store state and the wall-clock deadline.
pub(crate) struct Invocation {
    pub(crate) deadline_at: Instant,
    pub(crate) limits: Limits,
    pub(crate) capture: Capture,
    limit_hit: Arc<Mutex<Option<LimitHit>>>,
}

impl Drop for Invocation {
    fn drop(&mut self) {
        // Also when the caller dropped the future mid-run: flush what the app wrote.
        self.capture.finish();
    }
}

impl Invocation {
    /// Starts the clock and builds the store state's common part.
    pub(crate) fn start(
        limits: &Limits,
        grants: &Grants,
        log: Arc<dyn LogSink>,
        engine_max_memory: usize,
    ) -> Result<(Self, Common), SandboxError> {
        let capture = Capture::new(log, limits.stdout_bytes, limits.stderr_bytes, limits.log_bytes);
        let limit_hit = Arc::new(Mutex::new(None));
        let common = Common {
            wasi: wasi_ctx(grants, &capture)?,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits, engine_max_memory, limit_hit.clone()),
            capture: capture.clone(),
        };
        // A year is "no deadline" (and keeps `Instant` arithmetic from overflowing).
        let deadline_at = Instant::now() + limits.deadline.min(MAX_DEADLINE);
        Ok((Invocation { deadline_at, limits: limits.clone(), capture, limit_hit }, common))
    }

    /// Applies the limiter and the epoch deadline to a fresh store.
    pub(crate) fn arm<T: Send + 'static>(&self, store: &mut Store<T>, limiter: fn(&mut T) -> &mut Limiter) {
        store.limiter(move |state| limiter(state) as &mut dyn ResourceLimiter);
        let deadline_at = self.deadline_at;
        // Every tick: stop if the deadline passed, otherwise yield to tokio (so the timeout
        // below and other tasks get to run) and check again next tick.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline_at {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
            }
        });
    }

    /// Runs `call` (instantiate + the export) under the wall-clock deadline, which also
    /// cuts off host waits that epoch interruption cannot reach. Maps every failure.
    pub(crate) async fn run<R>(&self, call: impl Future<Output = wasmtime::Result<R>>) -> Result<R, SandboxError> {
        let outcome = tokio::time::timeout_at(tokio::time::Instant::from_std(self.deadline_at), call).await;
        self.capture.finish();
        match outcome {
            Err(_elapsed) => Err(SandboxError::DeadlineExceeded { deadline: self.limits.deadline }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let tail = self.capture.stderr_tail();
                let error = classify(
                    &err,
                    &FailureContext {
                        deadline: self.limits.deadline,
                        limit_hit: *self.limit_hit.lock().unwrap_or_else(|e| e.into_inner()),
                        stderr_tail: &tail,
                    },
                );
                tracing::debug!(error = ?err, "app invocation failed");
                Err(error)
            }
        }
    }
}
