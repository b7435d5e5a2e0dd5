//! Binding and serving the three APIs.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use sepal_executor::Executor;
use sepal_metrics::{RpcLayer, RpcMetrics, SandboxMetrics};
use sepal_proto::pb::exec_server::ExecServer;
use sepal_proto::pb::fleet_server::FleetServer;
use sepal_proto::pb::server_app_io_server::ServerAppIoServer;
use sepal_wire::auth::{Allowlist, FleetAuth};
use sepal_wire::{dial_address, ServerTls, TlsFileError, MAX_GRPC_MESSAGE};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Server, ServerTlsConfig};
use tower_layer::{Identity, Stack};

use crate::exec::ExecService;
use crate::fleet::FleetService;
use crate::launcher::{self, LauncherConfig};
use crate::link::Link;
use crate::serverappio::ServerAppIoService;
use crate::state::timed::TimedState;
use crate::state::LinkState;
use crate::users::UserAuth;

pub use sepal_executor::Isolation;

/// How the SuperLink runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who runs ServerApps.
    pub isolation: Isolation,
    /// The `flwr-serverapp` executable for subprocess isolation.
    pub serverapp_bin: PathBuf,
    /// Limits and grants for Wasm ServerApps run in-process.
    pub wasm: sepal_executor::Settings,
    /// TLS for Fleet and Exec (`None`: plaintext, `--insecure`). ServerAppIo is always plaintext.
    pub tls: Option<ServerTls>,
    /// How much input is accepted where it enters.
    pub limits: crate::limits::InputLimits,
    /// `--auth-list-public-keys`: only these SuperNode keys may call Fleet (`None`: any
    /// key with a valid signature). Not stored in the link state: it is read afresh from
    /// the CSV at every start, which is also what Flower does in effect.
    pub node_allowlist: Option<Allowlist>,
    /// `--user-auth-config`: users authenticate with an OpenID provider to use the Exec
    /// API, and runs belong to who submitted them (`None`: anyone who reaches it may use
    /// every run). Needs [`Self::tls`].
    pub user_auth: Option<Arc<UserAuth>>,
}

impl Config {
    /// A configuration with the given isolation and defaults elsewhere.
    pub fn new(isolation: Isolation) -> Self {
        Self {
            isolation,
            serverapp_bin: "flwr-serverapp".into(),
            wasm: sepal_executor::Settings::default(),
            tls: None,
            node_allowlist: None,
            user_auth: None,
            limits: Default::default(),
        }
    }
}

/// Why the SuperLink stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A gRPC server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// A TLS file cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsFileError),
    /// User authentication is configured without TLS: tokens would cross the network in
    /// the clear.
    #[error("user authentication (--user-auth-config) needs TLS on the Exec API; remove --insecure and give the --ssl-* files")]
    UserAuthWithoutTls,
    /// The Wasm sandbox could not be set up.
    #[error("cannot set up the Wasm sandbox: {0}")]
    Sandbox(#[from] sepal_sandbox::SandboxError),
}

/// The three bound listeners.
pub struct Listeners {
    /// ServerAppIo (default port 9091).
    pub serverappio: TcpListener,
    /// Fleet (default port 9092).
    pub fleet: TcpListener,
    /// Exec (default port 9093).
    pub exec: TcpListener,
    /// `/metrics` and `/healthz` over HTTP (`--metrics-address`; `None`: off).
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the three addresses.
    pub async fn bind(serverappio: SocketAddr, fleet: SocketAddr, exec: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            serverappio: TcpListener::bind(serverappio).await?,
            fleet: TcpListener::bind(fleet).await?,
            exec: TcpListener::bind(exec).await?,
            metrics: None,
        })
    }

    /// Also serves metrics and the health check on `addr`.
    pub async fn with_metrics(mut self, addr: SocketAddr) -> std::io::Result<Self> {
        self.metrics = Some(TcpListener::bind(addr).await?);
        Ok(self)
    }
}

/// A server whose calls are recorded by `layer`.
fn base_server(layer: &RpcLayer) -> Server<Stack<RpcLayer, Identity>> {
    sepal_wire::net::server().layer(layer.clone())
}

/// A server for Fleet or Exec: with TLS when configured.
fn public_server(
    tls: Option<&ServerTlsConfig>,
    layer: &RpcLayer,
) -> Result<Server<Stack<RpcLayer, Identity>>, tonic::transport::Error> {
    match tls {
        Some(tls) => sepal_wire::net::server().tls_config(tls.clone()).map(|s| s.layer(layer.clone())),
        None => Ok(base_server(layer)),
    }
}

/// Serves the three APIs until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    state: Arc<dyn LinkState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Bad TLS files stop the start before anything runs.
    let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
    if config.user_auth.is_some() && tls.is_none() {
        return Err(ServeError::UserAuthWithoutTls);
    }
    if let Some(users) = config.user_auth.clone() {
        // Say early whether the provider can be reached; calls retry it as they need it.
        tokio::spawn(async move {
            if let Err(e) = users.provider().discovery().await {
                tracing::warn!("the identity provider cannot be used yet (logins will fail until it can): {e}");
            }
        });
    }
    let mut registry = Registry::default();
    let metrics_on = listeners.metrics.is_some();
    let layer = RpcLayer::new(metrics_on.then(|| RpcMetrics::register(&mut registry)));
    let sandbox_metrics = metrics_on.then(|| SandboxMetrics::register(&mut registry));
    let state: Arc<dyn LinkState> = match metrics_on {
        true => Arc::new(TimedState::register(state, &mut registry)),
        false => state,
    };
    let (mut fleet_server, mut exec_server) =
        (public_server(tls.as_ref(), &layer)?, public_server(tls.as_ref(), &layer)?);
    let link = Link::new(state, config.limits.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let closing = link.clone();
    tokio::spawn(async move {
        shutdown.await;
        // End held pulls and log streams first, so the servers can drain.
        let _ = closing.events.closing.send(true);
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    if let Some(listener) = listeners.metrics {
        let exposition = std::sync::Arc::new(crate::metrics::exposition(link.clone(), registry));
        let addr = listener.local_addr().ok();
        tracing::info!(address = ?addr, "metrics at /metrics, health at /healthz");
        let shutdown = stopped();
        tokio::spawn(async move {
            if let Err(e) = sepal_metrics::serve(listener, exposition, shutdown).await {
                tracing::error!("the metrics server stopped: {e}");
            }
        });
    }

    let launcher = match config.isolation {
        Isolation::Subprocess => {
            let serverappio = dial_address(listeners.serverappio.local_addr().expect("bound listener"));
            let config = LauncherConfig {
                serverapp_bin: config.serverapp_bin.clone(),
                serverappio,
                executor: Executor::new(config.wasm.clone())?
                    .observed_by(sandbox_metrics.as_ref().map(SandboxMetrics::observer)),
            };
            Some(tokio::spawn(launcher::run(link.clone(), config)))
        }
        Isolation::Process => None,
    };

    let fleet = FleetServer::new(FleetService::new(link.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let fleet = InterceptedService::new(fleet, FleetAuth::new(config.node_allowlist.clone()));
    let serverappio = ServerAppIoServer::new(ServerAppIoService::new(link.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let exec = ExecServer::new(ExecService::with_users(link.clone(), config.user_auth.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);

    let (health_fleet, health_sio, health_exec) = (health_service(), health_service(), health_service());
    let servers = async {
        tokio::try_join!(
            fleet_server
                .add_service(health_fleet)
                .add_service(fleet)
                .serve_with_incoming_shutdown(sepal_wire::net::incoming(listeners.fleet), stopped()),
            base_server(&layer)
                .add_service(health_sio)
                .add_service(serverappio)
                .serve_with_incoming_shutdown(sepal_wire::net::incoming(listeners.serverappio), stopped()),
            exec_server
                .add_service(health_exec)
                .add_service(exec)
                .serve_with_incoming_shutdown(sepal_wire::net::incoming(listeners.exec), stopped()),
        )
    };
    // Graceful shutdown waits for clients to close their connections; SuperNodes keep
    // theirs open, so after a short grace the servers are dropped instead.
    let result = tokio::select! {
        result = servers => result.map(|_| ()),
        () = async { stopped().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::info!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
            Ok(())
        }
    };
    if let Some(task) = launcher {
        task.abort();
    }
    result.map_err(ServeError::from)
}

/// How long a stopping SuperLink lets calls in progress finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn health_service() -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    // Serving as soon as bound; the empty service name stands for the whole server.
    drop(reporter);
    service
}
