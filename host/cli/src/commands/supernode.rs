//! `sepal supernode` / `flower-supernode`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sepal_supernode::retry::RetryPolicy;
use sepal_supernode::{Config, Isolation};
use sepal_wire::auth::Signer;
use sepal_wire::ClientTls;

use super::isolation::IsolationArg;
use super::resolve;

/// Flower 1.20's `flower-supernode` flags (and Sepal's additions).
#[derive(Debug, clap::Parser)]
#[command(name = "flower-supernode", about = "Run a SuperNode (Fleet client and ClientAppIo API)")]
pub struct SupernodeArgs {
    /// Connect to the SuperLink without TLS.
    #[arg(long)]
    insecure: bool,
    /// Use the gRPC request-response transport (the only one served).
    #[arg(long)]
    grpc_rere: bool,
    /// Use the gRPC adapter transport (not supported).
    #[arg(long)]
    grpc_adapter: bool,
    /// Use the REST transport (not supported).
    #[arg(long)]
    rest: bool,
    /// CA certificate (PEM) to verify the SuperLink.
    #[arg(long)]
    root_certificates: Option<PathBuf>,
    /// The SuperLink's Fleet API address.
    #[arg(long, default_value = "0.0.0.0:9092")]
    superlink: String,
    /// Give up reconnecting after this many retries (default: never).
    #[arg(long)]
    max_retries: Option<u32>,
    /// Give up reconnecting after this many seconds (default: never).
    #[arg(long)]
    max_wait_time: Option<f64>,
    /// This node's config for ClientApps, e.g. "partition-id=0 num-partitions=2".
    #[arg(long)]
    node_config: Option<String>,
    /// Base directory handed to `flwr-clientapp`.
    #[arg(long)]
    flwr_dir: Option<PathBuf>,
    /// Who runs ClientApps: the SuperNode (subprocess) or an external process.
    #[arg(long, value_enum, default_value = "subprocess")]
    isolation: IsolationArg,
    /// ClientAppIo API address.
    #[arg(long, default_value = "0.0.0.0:9094")]
    clientappio_api_address: String,
    /// The node's private key (OpenSSH, EC) for SuperLink authentication.
    #[arg(long)]
    auth_supernode_private_key: Option<PathBuf>,
    /// The node's public key (OpenSSH, EC) for SuperLink authentication.
    #[arg(long)]
    auth_supernode_public_key: Option<PathBuf>,
    /// The `flwr-clientapp` executable used in subprocess isolation (Sepal addition).
    #[arg(long, default_value = "flwr-clientapp")]
    clientapp_bin: PathBuf,
    /// Stop a ClientApp that takes longer than this many seconds on one message and
    /// reply with an error (Sepal addition; default: the message's TTL).
    #[arg(long)]
    clientapp_timeout: Option<f64>,
    /// Most messages handled at once, at most one per run, so that a run's slow messages
    /// cannot hold up another run (Sepal addition).
    #[arg(long, default_value_t = sepal_supernode::DEFAULT_MAX_CONCURRENT_MESSAGES as u64, value_parser = clap::value_parser!(u64).range(1..=256))]
    max_concurrent_messages: u64,
    /// Spawn `flwr-clientapp` for each message in subprocess isolation, instead of
    /// forking it from a process that imported Flower once (Sepal addition).
    #[arg(long)]
    no_clientapp_fork_server: bool,
    /// Limits and grants for Wasm ClientApps (Sepal addition).
    #[command(flatten)]
    wasm: super::wasm_args::WasmArgs,
    /// Serve Prometheus metrics at `/metrics` and a health check at `/healthz` over HTTP
    /// on this address, e.g. 127.0.0.1:9465 (Sepal addition; off by default).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_address: Option<String>,
    /// Log format (Sepal addition).
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

impl SupernodeArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.grpc_adapter || self.rest {
            bail!("only the grpc-rere transport is supported (drop --grpc-adapter / --rest)");
        }
        if self.insecure && self.root_certificates.is_some() {
            bail!("--insecure and --root-certificates contradict each other: pass one of them");
        }
        if self.auth_supernode_private_key.is_some() != self.auth_supernode_public_key.is_some() {
            bail!("--auth-supernode-private-key and --auth-supernode-public-key go together: pass both or neither");
        }
        Ok(())
    }

    /// Runs the SuperNode until SIGINT/SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        self.check()?;
        let tls = match (&self.root_certificates, self.insecure) {
            (Some(path), _) => ClientTls::ca_file("--root-certificates", path)?,
            (None, true) => ClientTls::Insecure,
            // As Flower: TLS verified against the system's root certificates.
            (None, false) => ClientTls::SystemRoots,
        };
        // Without the flags a fresh key is made per start, as Flower does.
        let signer = match (&self.auth_supernode_private_key, &self.auth_supernode_public_key) {
            (Some(private), Some(public)) => {
                let signer = Signer::from_openssh(private, public)?;
                tracing::info!(public_key = %public.display(), "signing Fleet requests with the given key pair");
                signer
            }
            _ => Signer::fresh(),
        };
        let node_config = match &self.node_config {
            Some(text) => sepal_fab::parse_config_overrides(text).context("--node-config")?,
            None => Default::default(),
        };
        let clientappio = resolve("--clientappio-api-address", &self.clientappio_api_address).await?;
        let max_wait = self.max_wait_time.map(Duration::try_from_secs_f64).transpose().context("--max-wait-time")?;
        let clientapp_timeout =
            self.clientapp_timeout.map(Duration::try_from_secs_f64).transpose().context("--clientapp-timeout")?;
        let metrics_address = match &self.metrics_address {
            Some(addr) => Some(resolve("--metrics-address", addr).await?),
            None => None,
        };
        let wasm = self.wasm.settings(Duration::from_secs(600))?;
        let isolation = Isolation::from(self.isolation);
        // At most --max-concurrent-messages messages at a time (none in process isolation).
        let at_once = match isolation {
            Isolation::Process => 0,
            Isolation::Subprocess => {
                u32::try_from(self.max_concurrent_messages).unwrap_or(u32::MAX).min(wasm.engine.concurrency)
            }
        };
        crate::descriptors::prepare(&wasm, at_once);
        let config = Config {
            superlink: self.superlink,
            tls,
            node_config: sepal_fab::to_scalars(&node_config),
            clientappio,
            isolation,
            clientapp_bin: self.clientapp_bin,
            flwr_dir: self.flwr_dir,
            retry: RetryPolicy { max_retries: self.max_retries, max_wait },
            clientapp_timeout,
            max_concurrent_messages: self.max_concurrent_messages as usize,
            clientapp_fork_server: !self.no_clientapp_fork_server,
            wasm,
            metrics_address,
        };
        sepal_supernode::run_signed(config, signer, crate::shutdown::signal()).await?;
        Ok(())
    }
}
