//! [`Sandbox`]: the one engine per process (Cranelift, epoch ticker, pooling allocator),
//! the linkers for both worlds, and the component cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

use crate::artifacts::ArtifactDir;
use crate::bindings::{self, CLIENT_EXPORT, SERVER_EXPORT};
use crate::client::{ClientRunner, ClientState};
use crate::error::error_text;
use crate::server::{ServerRunner, ServerState};
use crate::store::limit_sockets;
use crate::{SandboxConfig, SandboxError};

/// Which world a component must target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum World {
    /// `sepal:app/client`: exports `sepal:app/client-app@0.1.0`.
    Client,
    /// `sepal:app/server`: exports `sepal:app/server-app@0.1.0`.
    Server,
}

impl World {
    fn export(self) -> &'static str {
        match self {
            World::Client => CLIENT_EXPORT,
            World::Server => SERVER_EXPORT,
        }
    }

    /// Interfaces (by prefix) a component of this world may import besides WASI.
    fn allowed_imports(self) -> &'static [&'static str] {
        match self {
            World::Client => &["sepal:app/log@0.1.", "sepal:app/types@0.1."],
            World::Server => &["sepal:app/log@0.1.", "sepal:app/types@0.1.", "sepal:app/grid@0.1."],
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            World::Client => f.write_str("client (a ClientApp)"),
            World::Server => f.write_str("server (a ServerApp)"),
        }
    }
}

/// A ClientApp component, compiled and linked, ready to be instantiated once per message.
/// Cheap to clone; get one from [`Sandbox::load_client`].
#[derive(Clone)]
pub struct ClientComponent {
    pub(crate) digest: [u8; 32],
    pub(crate) pre: bindings::client::ClientPre<ClientState>,
    pub(crate) sandbox: Arc<Inner>,
}

/// A ServerApp component, compiled and linked. Cheap to clone; get one from
/// [`Sandbox::load_server`].
#[derive(Clone)]
pub struct ServerComponent {
    pub(crate) digest: [u8; 32],
    pub(crate) pre: bindings::server::ServerPre<ServerState>,
    pub(crate) sandbox: Arc<Inner>,
}

impl ClientComponent {
    /// The sha256 of the component's bytes (its cache key).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

impl ServerComponent {
    /// The sha256 of the component's bytes (its cache key).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

impl fmt::Debug for ClientComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientComponent({})", hex::encode(self.digest))
    }
}

impl fmt::Debug for ServerComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerComponent({})", hex::encode(self.digest))
    }
}

struct CacheEntry {
    component: Component,
    client: Option<ClientComponent>,
    server: Option<ServerComponent>,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], CacheEntry>,
    clock: u64,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) config: SandboxConfig,
    pub(crate) client_linker: Linker<ClientState>,
    pub(crate) server_linker: Linker<ServerState>,
    pub(crate) slots: tokio::sync::Semaphore,
    cache: Mutex<Cache>,
    artifacts: Option<ArtifactDir>,
    ticker_stop: Arc<AtomicBool>,
}

impl Inner {
    /// Waits for a free invocation slot, for a component this sandbox loaded.
    pub(crate) async fn slot_for(
        &self,
        loaded_by: &Arc<Inner>,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, SandboxError> {
        if !std::ptr::eq(self, Arc::as_ptr(loaded_by)) {
            return Err(SandboxError::BadComponent("the component was loaded by another Sandbox".into()));
        }
        self.slots.acquire().await.map_err(|_| SandboxError::Internal("the sandbox's slots are closed".into()))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The Wasm sandbox: one per process. It owns the wasmtime engine (and its epoch ticker
/// thread), the linkers for the `client` and `server` worlds and the component cache.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

fn engine_config(c: &SandboxConfig) -> Result<Config, SandboxError> {
    if c.concurrency == 0 {
        return Err(SandboxError::Config("concurrency must be at least 1".into()));
    }
    if c.max_memory_bytes == 0 || c.max_memory_bytes as u64 > 4 << 30 {
        return Err(SandboxError::Config("max_memory_bytes must be between 1 byte and 4 GiB (wasm32)".into()));
    }
    if c.epoch_tick.is_zero() {
        return Err(SandboxError::Config("epoch_tick must not be zero".into()));
    }
    let mut pool = PoolingAllocationConfig::new();
    let n = c.concurrency;
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(c.max_core_instances_per_component))
        .total_memories(n.saturating_mul(c.max_memories_per_component))
        .total_tables(n.saturating_mul(c.max_tables_per_component))
        .total_stacks(n)
        .max_core_instances_per_component(c.max_core_instances_per_component)
        .max_memories_per_component(c.max_memories_per_component)
        .max_tables_per_component(c.max_tables_per_component)
        .max_memory_size(c.max_memory_bytes)
        .table_elements(c.max_table_elements)
        .linear_memory_keep_resident(c.linear_memory_keep_resident)
        .table_keep_resident(c.table_keep_resident);

    let mut cfg = Config::new();
    cfg.strategy(Strategy::Cranelift)
        .epoch_interruption(true)
        .max_wasm_stack(c.max_wasm_stack)
        // Host functions (WASI, the grid) run on the same fiber stack as the guest.
        .async_stack_size(c.max_wasm_stack + (2 << 20))
        .wasm_simd(true)
        .wasm_relaxed_simd(false)
        // Threads, GC and async components are off because their cargo features are not
        // compiled in (see the root Cargo.toml).
        .wasm_memory64(false)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(cfg)
}

fn spawn_ticker(engine: &Engine, tick: std::time::Duration, stop: Arc<AtomicBool>) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("sepal-epoch-ticker".into()).spawn(move || loop {
        std::thread::sleep(tick);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match weak.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => break,
        }
    });
    if let Err(e) = spawned {
        // Without a ticker, deadlines still hold through the wall-clock timeout, but a
        // guest stuck in a loop would keep its thread busy. Say so loudly.
        tracing::error!("cannot start the epoch ticker thread: {e}");
    }
}

impl Sandbox {
    /// Creates the engine, starts its epoch ticker thread and prepares the linkers.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let engine_config = engine_config(&config)?;
        // The engine reserves the pool of linear memories (one slot per concurrent app, the
        // largest mapping it makes); on huge pages, a model-sized app memory faults in 2 MiB
        // at a time (docs/benchmarks.md, large-model and sandbox).
        let pool_at_least = config.max_memory_bytes.saturating_mul(config.concurrency as usize);
        let (engine, huge) = sepal_alloc::with_huge_reservation(pool_at_least, || Engine::new(&engine_config));
        let engine = engine.map_err(|e| SandboxError::Internal(format!("creating the engine: {e}")))?;
        tracing::debug!(huge_pages = huge, "linear memory pool reserved");
        let link_err = |e: wasmtime::Error| SandboxError::Internal(format!("linking: {e}"));

        let mut client_linker = Linker::<ClientState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut client_linker).map_err(link_err)?;
        // Always linked, so an app that can speak HTTP loads anywhere; without a grant
        // every request is refused (crate::http_policy).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut client_linker).map_err(link_err)?;
        limit_sockets(&mut client_linker).map_err(link_err)?;
        bindings::client::Client::add_to_linker::<_, HasSelf<ClientState>>(&mut client_linker, |s| s)
            .map_err(link_err)?;

        let mut server_linker = Linker::<ServerState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut server_linker).map_err(link_err)?;
        // Always linked, so an app that can speak HTTP loads anywhere; without a grant
        // every request is refused (crate::http_policy).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut server_linker).map_err(link_err)?;
        limit_sockets(&mut server_linker).map_err(link_err)?;
        bindings::server::Server::add_to_linker::<_, HasSelf<ServerState>>(&mut server_linker, |s| s)
            .map_err(link_err)?;

        let artifacts = match &config.artifact_dir {
            Some(dir) => Some(ArtifactDir::open(dir, config.artifact_dir_max_bytes, &engine)?),
            None => None,
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(&engine, config.epoch_tick, ticker_stop.clone());
        Ok(Sandbox {
            inner: Arc::new(Inner {
                slots: tokio::sync::Semaphore::new(config.concurrency as usize),
                engine,
                config,
                client_linker,
                server_linker,
                cache: Mutex::new(Cache::default()),
                artifacts,
                ticker_stop,
            }),
        })
    }

    /// The configuration the sandbox was created with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// A runner for ClientApps on this sandbox.
    pub fn client_runner(&self) -> ClientRunner {
        ClientRunner { sandbox: self.inner.clone() }
    }

    /// A runner for ServerApps on this sandbox.
    pub fn server_runner(&self) -> ServerRunner {
        ServerRunner { sandbox: self.inner.clone() }
    }

    /// Loads a ClientApp component: compiles it (or takes it from the cache, keyed by the
    /// sha256 of `wasm`), checks that it exports `sepal:app/client-app@0.1.0` and imports
    /// nothing but WASI and `sepal:app/log`, and resolves its imports once.
    ///
    /// Compiling is CPU work (about 0.1 s for a small Rust app, seconds for a large one):
    /// call it from a blocking context (`spawn_blocking`) and keep the handle for the run.
    pub fn load_client(&self, wasm: &[u8]) -> Result<ClientComponent, SandboxError> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(found) = self.cached(&digest, |e| e.client.clone()) {
            return Ok(found);
        }
        let component = self.component(&digest, wasm, World::Client)?;
        let pre = self.inner.client_linker.instantiate_pre(&component).map_err(|e| link_error(e, World::Client))?;
        let pre = bindings::client::ClientPre::new(pre)
            .map_err(|e| SandboxError::BadComponent(format!("client world: {e}")))?;
        let handle = ClientComponent { digest, pre, sandbox: self.inner.clone() };
        self.store_entry(digest, component, |e| e.client = Some(handle.clone()));
        Ok(handle)
    }

    /// Loads a ServerApp component, like [`Sandbox::load_client`] for the `server` world
    /// (exports `sepal:app/server-app@0.1.0`; may import WASI, `log` and `grid`).
    pub fn load_server(&self, wasm: &[u8]) -> Result<ServerComponent, SandboxError> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(found) = self.cached(&digest, |e| e.server.clone()) {
            return Ok(found);
        }
        let component = self.component(&digest, wasm, World::Server)?;
        let pre = self.inner.server_linker.instantiate_pre(&component).map_err(|e| link_error(e, World::Server))?;
        let pre = bindings::server::ServerPre::new(pre)
            .map_err(|e| SandboxError::BadComponent(format!("server world: {e}")))?;
        let handle = ServerComponent { digest, pre, sandbox: self.inner.clone() };
        self.store_entry(digest, component, |e| e.server = Some(handle.clone()));
        Ok(handle)
    }

    /// How many components the in-memory cache holds.
    pub fn cached_components(&self) -> usize {
        self.lock_cache().entries.len()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached<H>(&self, digest: &[u8; 32], pick: impl Fn(&CacheEntry) -> Option<H>) -> Option<H> {
        let mut cache = self.lock_cache();
        cache.clock += 1;
        let now = cache.clock;
        let entry = cache.entries.get_mut(digest)?;
        entry.last_used = now;
        pick(entry)
    }

    /// The compiled component for `digest`, from the cache, the artifact directory, or a
    /// fresh compile; checked against `world` either way.
    fn component(&self, digest: &[u8; 32], wasm: &[u8], world: World) -> Result<Component, SandboxError> {
        let cached = self.lock_cache().entries.get(digest).map(|e| e.component.clone());
        let component = match cached {
            Some(c) => c,
            None => self.compile(digest, wasm)?,
        };
        check_world(&self.inner.engine, &component, world)?;
        Ok(component)
    }

    fn compile(&self, digest: &[u8; 32], wasm: &[u8]) -> Result<Component, SandboxError> {
        let engine = &self.inner.engine;
        if !wasmparser_is_component(wasm) {
            return Err(SandboxError::BadComponent(
                "not a WebAssembly component (a core module or not Wasm at all); build the app \
                 with --target wasm32-wasip2"
                    .into(),
            ));
        }
        if let Some(dir) = &self.inner.artifacts {
            if let Some(component) = dir.load(engine, digest) {
                return Ok(component);
            }
            let artifact = engine.precompile_component(wasm).map_err(|e| compile_error(&e))?;
            dir.store(digest, &artifact);
            // Load what was just compiled from the verified bytes in memory.
            return dir
                .deserialize_verified(engine, &artifact)
                .map_err(|e| SandboxError::Internal(format!("loading a fresh precompiled component: {e}")));
        }
        Component::new(engine, wasm).map_err(|e| compile_error(&e))
    }

    fn store_entry(&self, digest: [u8; 32], component: Component, set: impl FnOnce(&mut CacheEntry)) {
        let capacity = self.inner.config.cache_capacity.max(1);
        let mut cache = self.lock_cache();
        cache.clock += 1;
        let now = cache.clock;
        if !cache.entries.contains_key(&digest) && cache.entries.len() >= capacity {
            if let Some(oldest) = cache.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k) {
                cache.entries.remove(&oldest);
            }
        }
        let entry =
            cache.entries.entry(digest).or_insert(CacheEntry { component, client: None, server: None, last_used: now });
        entry.last_used = now;
        set(entry);
    }
}

/// A component starts with the preamble `\0asm` + version 0x0d + layer 1; a core module has
/// layer 0.
fn wasmparser_is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [1, 0]
}

fn check_world(engine: &Engine, component: &Component, world: World) -> Result<(), SandboxError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    if !exports.iter().any(|n| n == world.export()) {
        let other = match world {
            World::Client => exports.iter().any(|n| n == SERVER_EXPORT),
            World::Server => exports.iter().any(|n| n == CLIENT_EXPORT),
        };
        let hint = if other {
            match world {
                World::Client => " (it is a ServerApp)",
                World::Server => " (it is a ClientApp)",
            }
        } else {
            ""
        };
        return Err(SandboxError::BadComponent(format!(
            "expected the {world} world, exporting `{}`, but the component exports [{}]{hint}",
            world.export(),
            exports.join(", ")
        )));
    }
    for (name, _) in ty.imports(engine) {
        let allowed = name.starts_with("wasi:") || world.allowed_imports().iter().any(|p| name.starts_with(p));
        if !allowed {
            return Err(SandboxError::BadComponent(format!(
                "imports `{name}`, which a Sepal app of the {world} world may not import \
                 (allowed: wasi:*, {})",
                world.allowed_imports().iter().map(|p| p.trim_end_matches("@0.1.")).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}

fn link_error(e: wasmtime::Error, world: World) -> SandboxError {
    SandboxError::BadComponent(format!("cannot link it as the {world} world: {}", error_text(&e)))
}

fn compile_error(e: &wasmtime::Error) -> SandboxError {
    SandboxError::BadComponent(format!("does not compile: {}", error_text(e)))
}
