//! The SuperNode: a data owner's agent in a Flower federation, speaking Flower 1.20's
//! Fleet API to a SuperLink and ClientAppIo to ClientApp processes.
//!
//! # Layout
//!
//! - [`main_loop`]: register, heartbeat, pull, run, push; reconnect when the SuperLink
//!   goes away.
//! - [`fleet`]: the signed, retrying Fleet client; [`retry`] backs off.
//! - [`node`]: the node's runs, contexts and the instruction waiting for a ClientApp.
//! - [`clientappio`]: the ClientAppIo service Python ClientApps talk to.
//! - [`clientapps`]: the one interface that runs ClientApps: Python ones over ClientAppIo,
//!   Wasm ones in-process through `sepal-executor`.
//! - [`config`]: settings and config values.

pub mod clientappio;
pub mod clientapps;
pub mod config;
pub mod fleet;
pub mod main_loop;
pub mod metrics;
pub mod node;
pub mod retry;

use std::future::Future;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use sepal_core::store::ObjectStore;
use sepal_executor::Executor;
use sepal_metrics::{RpcLayer, RpcMetrics, SandboxMetrics};
use sepal_proto::pb::client_app_io_server::ClientAppIoServer;
use sepal_wire::auth::Signer;
use sepal_wire::{dial_address, MAX_GRPC_MESSAGE};
use tokio::net::TcpListener;

pub use config::{Config, Isolation, DEFAULT_MAX_CONCURRENT_MESSAGES};

/// Why a SuperNode stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SuperLink address is not usable.
    #[error("invalid SuperLink address: {0}")]
    Address(#[from] tonic::transport::Error),
    /// The ClientAppIo address could not be bound.
    #[error("cannot listen for ClientApps on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Wasm sandbox could not be set up.
    #[error("cannot set up the Wasm sandbox: {0}")]
    Sandbox(#[from] sepal_sandbox::SandboxError),
    /// The SuperLink could not be reached (as the retry flags allow) or refused the node.
    #[error("SuperLink: {}", .0.message())]
    Link(#[from] tonic::Status),
}

/// Binds the ClientAppIo address and runs a SuperNode (with a fresh key) until `shutdown`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    run_signed(config, Signer::fresh(), shutdown).await
}

/// As [`run`], signing Fleet requests with `signer` (the node's own key pair, e.g.
/// from `--auth-supernode-private-key/-public-key`).
pub async fn run_signed(
    config: Config,
    signer: Signer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = TcpListener::bind(config.clientappio)
        .await
        .map_err(|source| Error::Bind { addr: config.clientappio, source })?;
    serve_signed(config, signer, listener, shutdown).await
}

/// Runs a SuperNode (with a fresh key) with ClientAppIo on an already bound listener
/// until `shutdown`.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_signed(config, Signer::fresh(), listener, shutdown).await
}

/// As [`serve`], signing Fleet requests with `signer`.
pub async fn serve_signed(
    config: Config,
    signer: Signer,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let local = listener.local_addr().map_err(|source| Error::Bind { addr: config.clientappio, source })?;
    let state = Arc::new(node::NodeState::default());
    let objects = Arc::new(ObjectStore::new());
    let mode = match config.isolation {
        Isolation::Subprocess => clientapps::python::PythonMode::Subprocess {
            program: config.clientapp_bin.clone(),
            clientappio: dial_address(local).to_string(),
            flwr_dir: config.flwr_dir.clone(),
            fork_server: config.clientapp_fork_server,
        },
        Isolation::Process => clientapps::python::PythonMode::Process,
    };
    let python = Arc::new(clientapps::python::PythonRunner::new(state.clone(), mode));
    // Process isolation runs no app code here: every ClientApp, Python or Wasm (`sepal
    // clientapp`), is an external process served over ClientAppIo.
    let metrics = metrics::NodeMetrics::default();
    let mut registry = Registry::default();
    let rpc = config.metrics_address.map(|_| {
        metrics.register(&mut registry);
        RpcMetrics::register(&mut registry)
    });
    let sandbox_metrics = config.metrics_address.map(|_| SandboxMetrics::register(&mut registry));
    let runner: Arc<dyn clientapps::Runner> = match config.isolation {
        Isolation::Process => python,
        Isolation::Subprocess => {
            let executor =
                Executor::new(config.wasm.clone())?.observed_by(sandbox_metrics.as_ref().map(SandboxMetrics::observer));
            let wasm = clientapps::wasm::WasmRunner::new(executor, state.clone(), objects.clone());
            Arc::new(clientapps::ByKind { python, wasm: Arc::new(wasm) })
        }
    };
    let fleet = fleet::Fleet::new(&config.superlink, &config.tls, signer, config.retry)?;

    let service = ClientAppIoServer::new(clientappio::ClientAppIoService::new(state.clone(), objects.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let metrics_server = match config.metrics_address {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
            tracing::info!(%addr, "metrics at /metrics, health at /healthz");
            let exposition = Arc::new(metrics::exposition(registry, state.clone()));
            Some(tokio::spawn(sepal_metrics::serve(listener, exposition, std::future::pending())))
        }
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = sepal_wire::net::server().layer(RpcLayer::new(rpc)).add_service(service);
    let server = tokio::spawn(router.serve_with_incoming_shutdown(sepal_wire::net::incoming(listener), async {
        let _ = stop_rx.await;
    }));
    tracing::info!(clientappio = %local, superlink = %config.superlink, "SuperNode starting");
    let node = main_loop::SuperNode::new(&config, fleet, state.clone(), objects, runner, metrics);
    let result = node.run(shutdown).await;
    state.close();
    let _ = stop_tx.send(());
    if let Some(task) = metrics_server {
        task.abort();
    }
    // Held calls end at `close`; others still in progress get a moment, then are closed.
    let abort = server.abort_handle();
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::info!("ClientAppIo calls still open after {SHUTDOWN_GRACE:?}; closing them");
        abort.abort();
    }
    result.map_err(Error::from)
}

/// How long a stopping SuperNode lets ClientAppIo calls in progress finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
