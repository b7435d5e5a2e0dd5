//! The Wasm sandbox: runs Flower apps compiled to WebAssembly components inside wasmtime,
//! under limits an operator can trust with code they did not write.
//!
//! This is the only crate in Sepal that names wasmtime. The SuperNode runs ClientApps with
//! a [`ClientRunner`] (one message in, one reply out, a fresh store per message); the
//! SuperLink runs ServerApps with a [`ServerRunner`] and gives them the federation through
//! a [`GridHost`] it implements. The boundary is the committed WIT world
//! (`guest-sdk/wit/sepal-app.wit`): Flower protobuf bytes in and out.
//!
//! ```ignore
//! let sandbox = Sandbox::new(SandboxConfig::default())?;          // once per process
//! let app = sandbox.load_client(&wasm_bytes)?;                     // once per FAB (cached by sha256)
//! let (reply, context) = sandbox
//!     .client_runner()
//!     .handle(&app, &message, &context, &Limits::default(), &Grants::none(), log)
//!     .await?;                                                     // per message
//! let reply: pb::Message = decode_reply(&reply[..])?;             // untrusted bytes
//! ```
//!
//! # Defaults (what is denied, what can be granted, the limits)
//!
//! Denied unless the operator grants it ([`Grants`]; a FAB can grant itself nothing):
//!
//! - **Filesystem**: no preopened directories, so the guest has no filesystem at all
//!   (`/etc/passwd` is "not found"). Grantable: read-only directories
//!   ([`Grants::read_only_dir`]; writes fail with a permission error, `..` and symlink
//!   escapes are blocked).
//! - **Network**: no TCP, no UDP, no name lookup. Grantable: outbound TCP to listed
//!   `host:port` pairs ([`Grants::allow_tcp`], resolved when granted), at most
//!   [`Limits::sockets`] open at once. Listening stays denied.
//! - **HTTP**: none. Grantable: outgoing `wasi:http` requests to listed origins
//!   ([`Grants::allow_http`]), within [`HttpLimits`] (timeouts, a response-body cap, requests
//!   in flight); a request to any other origin gets `HTTP-request-denied` and the log a
//!   notice naming the origin, before anything is resolved or connected.
//! - **Environment and arguments**: none. Grantable: environment variables ([`Grants::env`]).
//! - **Stdin**: closed. Stdout and stderr are captured into the run's log through the
//!   caller's [`LogSink`], as is the WIT `log` import.
//! - Always available: clocks and random numbers (WASI), and the world's own imports.
//!
//! Limits per invocation ([`Limits`], defaults in brackets): memory per instance [1 GiB],
//! wall-time deadline covering guest code and host waits [600 s; pass the message's TTL
//! left with [`Limits::with_deadline_at_most`]], captured stdout / stderr / log [256 KiB
//! each; the rest is dropped and a notice logged, the app is not killed], instances /
//! tables / memories [32 / 32 / 8], table elements [1 M], host resources held at once
//! (WASI handles: sockets, files, streams, pollables) [256], open TCP sockets [16; with a
//! TCP grant], one copy from the guest to the host [the memory limit]. Growing past a
//! memory or table limit traps at once and is reported as [`SandboxError::MemoryLimit`];
//! holding too many resources or copying too much at once ends the invocation with
//! [`SandboxError::ResourceLimit`]; one socket too many is refused to the guest with
//! WASI's `new-socket-limit`.
//!
//! Engine ([`SandboxConfig`]): Cranelift; epoch interruption with a 10 ms ticker thread;
//! 1 MiB Wasm stack; SIMD on, relaxed SIMD, threads, memory64, GC and async components
//! off; a pooling allocator sized for 16 concurrent invocations with 2 MiB / 64 KiB kept
//! resident per slot; a hard ceiling of 1 GiB per linear memory.
//!
//! Every failure is a [`SandboxError`] that names its cause (deadline, memory, stack,
//! trap with the panic message, the app's own error, a bad component, invalid output);
//! the store is dropped and the engine keeps serving.
//!
//! # Compiled-component cache
//!
//! [`Sandbox::load_client`] / [`Sandbox::load_server`] compile a component once per sha256
//! of its bytes, check that it targets the expected world, resolve its imports once
//! (`InstancePre`) and keep it in memory. With [`SandboxConfig::artifact_dir`] set, the
//! precompiled native code is also kept on disk in a host-only (0700) directory, with its
//! sha256 recorded and checked before it is loaded. Compiling untrusted code can take a
//! lot of CPU and memory and is outside wasmtime's security promise: an operator who
//! accepts FABs from strangers should compile in a separate, resource-limited process.
//!
//! # Layout
//!
//! - [`config`]: [`SandboxConfig`], [`Limits`], [`Grants`].
//! - `engine`: [`Sandbox`] (engine, epoch ticker, linkers, component cache),
//!   [`ClientComponent`], [`ServerComponent`].
//! - `artifacts`: the persisted precompiled-component cache (the crate's one `unsafe`).
//! - `bindings`: `wasmtime::component::bindgen!` for the `client` and `server` worlds.
//! - `http_policy`: the `wasi:http` policy (granted origins, [`HttpLimits`]); `origin`: [`Origin`].
//! - `store`: the per-invocation store state (WASI from [`Grants`], the resource limiter
//!   from [`Limits`]), the deadline and the error mapping.
//! - `client`: [`ClientRunner`].
//! - `server`: [`ServerRunner`], [`GridHost`], [`GridError`].
//! - [`log`]: [`LogSink`], [`LogBuffer`] and the truncating stdout/stderr capture.
//! - [`error`]: [`SandboxError`], [`TrapKind`].
//!
//! Tests: `tests/hostile.rs` (one hostile guest per attack, each asserting the exact
//! cause), `tests/resources.rs` (sockets, host resources and the copy limit) and
//! `tests/server.rs`, with guests under `tests/guests/` built once per test run by the
//! `sepal-guests` crate.

mod artifacts;
mod bindings;
mod client;
pub mod config;
mod engine;
pub mod error;
mod http_policy;
pub mod log;
mod origin;
mod server;
mod store;

pub use client::ClientRunner;
pub use config::{DirGrant, Grants, HttpLimits, Limits, Origin, SandboxConfig};
pub use engine::{ClientComponent, Sandbox, ServerComponent};
pub use error::{SandboxError, TrapKind};
pub use log::{LogBuffer, LogLevel, LogSink, LogSource};
pub use server::{GridError, GridFuture, GridHost, ServerRunner};

/// Decodes bytes an app returned (a reply message or a context) as the protobuf type `M`.
/// What the app returns is untrusted: bytes that are not a valid `M` become
/// [`SandboxError::InvalidOutput`].
pub fn decode_reply<M: prost::Message + Default>(bytes: impl bytes::Buf) -> Result<M, SandboxError> {
    let len = bytes.remaining();
    M::decode(bytes).map_err(|e| {
        SandboxError::InvalidOutput(format!(
            "{len} bytes are not a valid {}: {e}",
            std::any::type_name::<M>().rsplit("::").next().unwrap_or("message")
        ))
    })
}

fn log_level_client(level: bindings::client::sepal::app::log::Level) -> LogLevel {
    use bindings::client::sepal::app::log::Level;
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

fn log_level_server(level: bindings::server::sepal::app::log::Level) -> LogLevel {
    use bindings::server::sepal::app::log::Level;
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}
