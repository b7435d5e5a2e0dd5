//! What every invocation's fresh `Store` holds: the WASI context built from the
//! [`Grants`], the resource limiter built from the [`Limits`], and the output capture; plus
//! the shared part of running a call (deadline, slot, error mapping).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::TcpSocket;
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView};

use crate::error::{classify, FailureContext, LimitHit};
use crate::http_policy::HttpPolicy;
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
    /// TCP sockets the app may hold open at once ([`Limits::sockets`]); `None` without a
    /// TCP grant (wasmtime-wasi then refuses every socket).
    max_sockets: Option<usize>,
    /// Whether the log already says that the socket limit was reached.
    socket_limit_noted: bool,
    /// `wasi:http`'s own state (header size limits).
    http_ctx: WasiHttpCtx,
    /// Which HTTP requests may go out ([`Grants::http_origins`], [`Limits::http`]).
    http_policy: HttpPolicy,
}

impl Common {
    /// The view wasmtime-wasi-http works through; its `send_request` is [`HttpPolicy`]'s.
    pub(crate) fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http_ctx, table: &mut self.table, hooks: &mut self.http_policy }
    }

    pub(crate) fn log(&self, level: LogLevel, message: &str) {
        self.capture.message(level, message);
    }

    /// `wasi:sockets/tcp-create-socket.create-tcp-socket` under [`Limits::sockets`]: the
    /// app gets `new-socket-limit` (and the log one notice) instead of a socket once it
    /// holds that many; otherwise wasmtime-wasi creates it as usual (refusing it unless
    /// TCP was granted). An error wasmtime-wasi raises as a trap stays a trap.
    pub(crate) fn create_tcp_socket(&mut self, family: IpAddressFamily) -> wasmtime::Result<SocketReply> {
        // The table holds at most `Limits::resources` entries: counting is cheap.
        let full = self.max_sockets.filter(|&max| self.table.iter_mut().filter(|e| e.is::<TcpSocket>()).count() >= max);
        if let Some(max) = full {
            if !self.socket_limit_noted {
                self.socket_limit_noted = true;
                self.capture.notice(&format!(
                    "the app reached its limit of {max} open sockets (set with {SOCKETS_FLAG}); \
                     creating more fails with new-socket-limit"
                ));
            }
            return Ok(Err(ErrorCode::NewSocketLimit));
        }
        match tcp_create_socket::Host::create_tcp_socket(&mut self.sockets(), family) {
            Ok(socket) => Ok(Ok(socket)),
            Err(e) => e.downcast().map(Err),
        }
    }
}

/// What `create-tcp-socket` returns to the app.
pub(crate) type SocketReply = Result<Resource<TcpSocket>, ErrorCode>;

/// The flag that sets [`Limits::sockets`].
const SOCKETS_FLAG: &str = "--wasm-max-sockets";

/// The one WASI function the sandbox implements itself, wrapping wasmtime-wasi's (see
/// [`Common::create_tcp_socket`]); the interface as wasmtime-wasi 48 registers it, which
/// every `0.2.x` import of it resolves to.
pub(crate) const TCP_CREATE_SOCKET: (&str, &str) = ("wasi:sockets/tcp-create-socket@0.2.12", "create-tcp-socket");

/// Implements `WasiView`, `WasiHttpView` and [`HasCommon`] for a store state that has a
/// `common: Common` field.
macro_rules! wasi_view {
    ($ty:ty) => {
        impl wasmtime_wasi::WasiView for $ty {
            fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
                self.common.ctx()
            }
        }

        impl wasmtime_wasi_http::WasiHttpView for $ty {
            fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
                self.common.http()
            }
        }

        impl $crate::store::HasCommon for $ty {
            fn common(&mut self) -> &mut $crate::store::Common {
                &mut self.common
            }
        }
    };
}
pub(crate) use wasi_view;

/// A store state holding a [`Common`].
pub(crate) trait HasCommon: Send + 'static {
    fn common(&mut self) -> &mut Common;
}

/// Puts [`Common::create_tcp_socket`] in place of wasmtime-wasi's `create-tcp-socket` in
/// `linker` (which already holds WASI).
pub(crate) fn limit_sockets<T: HasCommon>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let (interface, function) = TCP_CREATE_SOCKET;
    linker.allow_shadowing(true);
    let defined = linker.instance(interface)?.func_wrap(
        function,
        |mut store: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            Ok((store.data_mut().common().create_tcp_socket(family)?,))
        },
    );
    linker.allow_shadowing(false);
    defined
}

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
    /// The memory limit in force (the lower of the invocation's and the engine's); also
    /// the most bytes one copy from the app to the host may take.
    memory_bytes: usize,
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
        let mut table = ResourceTable::new();
        // Every WASI handle is an entry here; sockets and files hold host descriptors.
        table.set_max_capacity(limits.resources);
        let common = Common {
            wasi: wasi_ctx(grants, &capture)?,
            table,
            limiter: Limiter::new(limits, engine_max_memory, limit_hit.clone()),
            capture: capture.clone(),
            max_sockets: (!grants.tcp_connect.is_empty()).then_some(limits.sockets),
            socket_limit_noted: false,
            http_ctx: WasiHttpCtx::new(),
            http_policy: HttpPolicy::new(&grants.http_origins, &limits.http, capture.clone()),
        };
        // A year is "no deadline" (and keeps `Instant` arithmetic from overflowing).
        let deadline_at = Instant::now() + limits.deadline.min(MAX_DEADLINE);
        let memory_bytes = limits.memory_bytes.min(engine_max_memory);
        Ok((Invocation { deadline_at, limits: limits.clone(), capture, limit_hit, memory_bytes }, common))
    }

    /// Applies the limiter, the copy limit and the epoch deadline to a fresh store.
    pub(crate) fn arm<T: Send + 'static>(&self, store: &mut Store<T>, limiter: fn(&mut T) -> &mut Limiter) {
        store.limiter(move |state| limiter(state) as &mut dyn ResourceLimiter);
        // One copy from the app to the host (a reply, a push, a log message) may be as large
        // as the app's memory: what the app can hold, it can hand over. wasmtime's default
        // (128 MiB) would refuse larger ones with a cryptic error; the cap itself stays, as
        // a list of handles to one buffer could otherwise make the host copy it many times.
        store.set_hostcall_fuel(self.memory_bytes);
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
                        resources: self.limits.resources,
                        hostcall_fuel: self.memory_bytes,
                    },
                );
                tracing::debug!(error = ?err, "app invocation failed");
                Err(error)
            }
        }
    }
}
