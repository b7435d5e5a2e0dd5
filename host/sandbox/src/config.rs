//! What the operator configures: the engine ([`SandboxConfig`]), the per-invocation
//! [`Limits`] and the capabilities an app is granted ([`Grants`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::SandboxError;

pub use crate::origin::Origin;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

/// Engine-wide settings, fixed when the [`Sandbox`](crate::Sandbox) is created (one per
/// process).
///
/// The defaults follow the measured recommendation in `spec/wasm-host.md` (7.3): a pooling
/// allocator with keep-resident slots, epoch interruption with a 10 ms tick, a 1 MiB Wasm
/// stack, SIMD on, threads and relaxed SIMD off.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// How many apps may run at the same time (each running invocation holds one pooling
    /// slot). More invocations wait for a free slot. Default 16.
    pub concurrency: u32,
    /// The hard ceiling on one linear memory, in bytes: the pooling allocator's slot size.
    /// [`Limits::memory_bytes`] can only lower it. Default 1 GiB.
    pub max_memory_bytes: usize,
    /// The native stack Wasm code may use (`Config::max_wasm_stack`). Default 1 MiB.
    pub max_wasm_stack: usize,
    /// How often the epoch ticker thread advances the engine's epoch; deadlines are this
    /// precise. Default 10 ms.
    pub epoch_tick: Duration,
    /// Pool sizing per component instance: core instances (a Rust component has about 3,
    /// a componentize-py one about 10). Default 32.
    pub max_core_instances_per_component: u32,
    /// Pool sizing per component instance: linear memories. Default 8.
    pub max_memories_per_component: u32,
    /// Pool sizing per component instance: tables. Default 32.
    pub max_tables_per_component: u32,
    /// The ceiling on one table's elements (pool slot size). Default 1,000,000.
    pub max_table_elements: usize,
    /// Linear memory kept mapped in a freed pool slot, so the next instance does not page
    /// fault on it. Default 2 MiB (measured: this is what makes the pool scale across
    /// threads).
    pub linear_memory_keep_resident: usize,
    /// Table memory kept mapped in a freed slot. Default 64 KiB.
    pub table_keep_resident: usize,
    /// How many compiled components the in-memory cache keeps (least recently loaded are
    /// evicted first; handles already given out stay valid). Default 64.
    pub cache_capacity: usize,
    /// Where to persist precompiled components (`.cwasm`, native code). `None` (the default)
    /// keeps them in memory only. The directory is created with mode 0700 and must not be
    /// writable by anyone but the host user; every artifact carries its sha256, which is
    /// checked before the artifact is loaded.
    pub artifact_dir: Option<PathBuf>,
    /// The most bytes of precompiled components kept in [`SandboxConfig::artifact_dir`];
    /// past it, the ones written longest ago are removed. Default 1 GiB.
    pub artifact_dir_max_bytes: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            concurrency: 16,
            max_memory_bytes: GIB,
            max_wasm_stack: MIB,
            epoch_tick: Duration::from_millis(10),
            max_core_instances_per_component: 32,
            max_memories_per_component: 8,
            max_tables_per_component: 32,
            max_table_elements: 1_000_000,
            linear_memory_keep_resident: 2 * MIB,
            table_keep_resident: 64 * KIB,
            cache_capacity: 64,
            artifact_dir: None,
            artifact_dir_max_bytes: GIB as u64,
        }
    }
}

/// Per-invocation limits (one ClientApp message, or one whole ServerApp run).
///
/// | limit | default |
/// |---|---|
/// | memory per instance | 1 GiB (never above [`SandboxConfig::max_memory_bytes`]) |
/// | deadline (wall time, covers CPU and waiting in the host) | 600 s |
/// | captured stdout / stderr / log import | 256 KiB each; the rest is dropped, not fatal |
/// | instances / tables / memories per store | 32 / 32 / 8 |
/// | table elements | 1,000,000 |
/// | host resources held at once (sockets, files, streams, pollables) | 256 |
/// | open TCP sockets (only with a TCP grant) | 16 |
/// | bytes copied from the app to the host in one call | the memory limit |
/// | outgoing HTTP (only with an HTTP grant) | see [`HttpLimits`] |
///
/// Growing memory or a table past a limit traps at once (`trap_on_grow_failure`), so the
/// cause is reported as [`SandboxError::MemoryLimit`] instead of an allocation failure
/// inside the guest. Holding more host resources ends the invocation with
/// [`SandboxError::ResourceLimit`]; one socket too many is refused to the app with WASI's
/// `new-socket-limit` error, and the app carries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one linear memory may grow to. Default 1 GiB.
    ///
    /// It also bounds one copy from the app to the host (wasmtime's "hostcall fuel"): a
    /// reply, a context, a push or a log message may be as large as the app's memory, and
    /// no larger, so what fits in the app's memory also crosses the boundary (wasmtime's
    /// own default would stop every copy at 128 MiB). Copies from the host into the app
    /// are bounded by the memory itself.
    pub memory_bytes: usize,
    /// Wall time the invocation may take, from the moment it gets a pool slot. Epoch
    /// interruption stops guest code; host waits (a sleep, `send-and-receive`) are cut off
    /// too. Default 600 s.
    pub deadline: Duration,
    /// Bytes of stdout kept (and forwarded to the log sink); the rest is dropped and a
    /// truncation notice is logged. Default 256 KiB.
    pub stdout_bytes: usize,
    /// Bytes of stderr kept. Default 256 KiB.
    pub stderr_bytes: usize,
    /// Bytes of messages through the `log` import kept. Default 256 KiB.
    pub log_bytes: usize,
    /// Core and component instances per store. Default 32.
    pub instances: usize,
    /// Tables per store. Default 32.
    pub tables: usize,
    /// Linear memories per store. Default 8.
    pub memories: usize,
    /// Elements one table may grow to. Default 1,000,000.
    pub table_elements: usize,
    /// Host resources the app may hold at once: every WASI handle (socket, file or
    /// directory, stream, pollable) is an entry in the store's resource table, which holds
    /// at most this many. Sockets and files are host file descriptors, so this also bounds
    /// the descriptors one invocation can hold (with a directory grant, each open file is
    /// one). Going past it ends the invocation with [`SandboxError::ResourceLimit`].
    /// Default 256.
    pub resources: usize,
    /// TCP sockets the app may hold open at once (each is a host file descriptor). Only
    /// reachable with a TCP grant ([`Grants::allow_tcp`]); without one, no socket can be
    /// created at all. Creating one more fails in the app with `new-socket-limit` (Rust's
    /// `std` reads it as EMFILE, "No file descriptors available"); the app is not ended.
    /// Default 16.
    pub sockets: usize,
    /// Bounds on outgoing HTTP requests (only reachable with [`Grants::allow_http`]).
    pub http: HttpLimits,
}

/// Bounds on the outgoing HTTP requests of one invocation (`wasi:http`), which only an
/// HTTP grant ([`Grants::allow_http`]) makes possible.
///
/// A guest may ask for its own timeouts (`request-options`); it gets the shorter of its
/// own and these. Every request also ends with the invocation's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to open the connection (TCP, and TLS for `https`). Default 10 s.
    pub connect_timeout: Duration,
    /// Time from sending the request to the response's first byte. Default 60 s.
    pub first_byte_timeout: Duration,
    /// The longest pause between two chunks of a response body. Default 60 s.
    pub between_bytes_timeout: Duration,
    /// Bytes of one response body the guest may read; past it, the body ends with
    /// `HTTP-response-body-size` and the log gets a notice. Default 16 MiB.
    pub response_bytes: u64,
    /// Requests in flight at once (sent and their response body not yet finished or
    /// dropped); one more fails at once with `connection-limit-reached`. Each holds a
    /// socket. Default 8.
    pub concurrent_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            between_bytes_timeout: Duration::from_secs(60),
            response_bytes: 16 * MIB as u64,
            concurrent_requests: 8,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: GIB,
            deadline: Duration::from_secs(600),
            stdout_bytes: 256 * KIB,
            stderr_bytes: 256 * KIB,
            log_bytes: 256 * KIB,
            instances: 32,
            tables: 32,
            memories: 8,
            table_elements: 1_000_000,
            resources: 256,
            sockets: 16,
            http: HttpLimits::default(),
        }
    }
}

impl Limits {
    /// The same limits with the deadline lowered to `at_most` if that is shorter, for
    /// example the time a message has left to live.
    pub fn with_deadline_at_most(mut self, at_most: Duration) -> Self {
        self.deadline = self.deadline.min(at_most);
        self
    }

    /// The same limits with the memory cap set to `bytes`.
    pub fn with_memory(mut self, bytes: usize) -> Self {
        self.memory_bytes = bytes;
        self
    }
}

/// A host directory mounted read-only in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host_path: PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest_path: String,
}

/// What the operator grants an app. A FAB cannot grant itself anything: these come from
/// the SuperNode's / SuperLink's own configuration.
///
/// The default ([`Grants::none`]) grants nothing: no preopened directories (the guest sees
/// no filesystem at all, so `/etc/passwd` is "not found"), no environment variables, no
/// arguments, no stdin, no network (no TCP, no UDP, no name lookup). Stdout and stderr are
/// captured into the run's log. Clocks and random numbers are always available.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Directories mounted read-only (`FsPerms::ReadOnly`: reads work, writes, creates and
    /// deletes fail with a permission error; `..` and symlink escapes are blocked).
    pub read_only_dirs: Vec<DirGrant>,
    /// Addresses the guest may open outbound TCP connections to. Nothing else: no
    /// listening, no UDP, no name lookup (names are resolved here, when the grant is made).
    pub tcp_connect: Vec<SocketAddr>,
    /// Origins the guest may send HTTP requests to (`wasi:http`); a request to any other
    /// origin is refused with `HTTP-request-denied` before anything is resolved or
    /// connected.
    pub http_origins: Vec<Origin>,
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
}

impl Grants {
    /// Nothing granted (the default).
    pub fn none() -> Self {
        Grants::default()
    }

    /// Mounts the host directory `host_path` read-only at `guest_path` (for example the
    /// node's training data at `/data`). The directory must exist.
    pub fn read_only_dir(
        mut self,
        host_path: impl AsRef<Path>,
        guest_path: impl Into<String>,
    ) -> Result<Self, SandboxError> {
        let host_path = host_path.as_ref();
        let meta = std::fs::metadata(host_path)
            .map_err(|e| SandboxError::Config(format!("read-only dir {}: {e}", host_path.display())))?;
        if !meta.is_dir() {
            return Err(SandboxError::Config(format!("read-only dir {} is not a directory", host_path.display())));
        }
        let guest_path = guest_path.into();
        if guest_path.is_empty() {
            return Err(SandboxError::Config("empty guest path for a read-only dir".into()));
        }
        self.read_only_dirs.push(DirGrant { host_path: host_path.to_path_buf(), guest_path });
        Ok(self)
    }

    /// Allows outbound TCP to `host:port`. A name is resolved now, and every address it
    /// resolves to is allowed (the guest itself cannot look names up).
    pub fn allow_tcp(mut self, host_port: &str) -> Result<Self, SandboxError> {
        let addrs: Vec<SocketAddr> = host_port
            .to_socket_addrs()
            .map_err(|e| SandboxError::Config(format!("tcp grant {host_port:?}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(SandboxError::Config(format!("tcp grant {host_port:?} resolves to no address")));
        }
        for addr in addrs {
            if !self.tcp_connect.contains(&addr) {
                self.tcp_connect.push(addr);
            }
        }
        Ok(self)
    }

    /// Allows outgoing HTTP requests to `origin` (`scheme://host[:port]`, e.g.
    /// `http://127.0.0.1:5000`; the port defaults to 80 for `http`, 443 for `https`). The
    /// host name is resolved now to catch typos; requests resolve it again when they are
    /// sent (the guest itself cannot look names up).
    pub fn allow_http(mut self, origin: &str) -> Result<Self, SandboxError> {
        let parsed = Origin::parse(origin).map_err(|e| SandboxError::Config(format!("http grant {origin:?}: {e}")))?;
        let resolved = (parsed.host.trim_start_matches('[').trim_end_matches(']'), parsed.port).to_socket_addrs();
        if let Err(e) = resolved {
            return Err(SandboxError::Config(format!("http grant {origin:?}: cannot resolve {}: {e}", parsed.host)));
        }
        if !self.http_origins.contains(&parsed) {
            self.http_origins.push(parsed);
        }
        Ok(self)
    }

    /// Sets an environment variable the guest sees.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}
