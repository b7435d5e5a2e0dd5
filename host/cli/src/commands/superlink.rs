//! `sepal superlink` / `flower-superlink`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::state::postgres::{is_postgres_url, PgState};
use sepal_superlink::state::sqlite::SqliteState;
use sepal_superlink::state::LinkState;
use sepal_superlink::users::{UserAuth, UserAuthConfig};
use sepal_superlink::{Config, InputLimits, Isolation, Listeners};
use sepal_wire::auth::Allowlist;
use sepal_wire::ServerTls;

use super::isolation::IsolationArg;
use super::resolve;

/// Flower's deployment executor, the default of `--executor`.
const DEPLOYMENT_EXECUTOR: &str = "flwr.superexec.deployment:executor";

/// Flower's value for "keep the state in memory".
const IN_MEMORY: &str = ":flwr-in-memory-state:";

/// Flower 1.20's `flower-superlink` flags (and Sepal's additions).
#[derive(Debug, clap::Parser)]
#[command(name = "flower-superlink", about = "Run a SuperLink (Fleet, ServerAppIo and Exec APIs)")]
pub struct SuperlinkArgs {
    /// Serve Fleet and Exec without TLS.
    #[arg(long)]
    insecure: bool,
    /// TLS: CA certificate (PEM).
    #[arg(long)]
    ssl_ca_certfile: Option<PathBuf>,
    /// TLS: server certificate (PEM).
    #[arg(long)]
    ssl_certfile: Option<PathBuf>,
    /// TLS: server private key (PEM).
    #[arg(long)]
    ssl_keyfile: Option<PathBuf>,
    /// Who runs ServerApps: the SuperLink (subprocess) or an external process.
    #[arg(long, value_enum, default_value = "subprocess")]
    isolation: IsolationArg,
    /// Where state lives: `:flwr-in-memory-state:`; an SQLite file (created if missing)
    /// that keeps runs, logs, nodes, FABs and messages across restarts; or a PostgreSQL
    /// database, `postgresql://user[:password]@host:port/db` (also `postgres://`), that
    /// several SuperLinks can share (plain TCP, no TLS yet).
    #[arg(long, default_value = IN_MEMORY)]
    database: String,
    /// With `--database`: most MiB of message payload kept in it, so that messages in
    /// flight survive a restart (past it, payload is held in memory only) (Sepal addition).
    #[arg(long, default_value_t = 4096)]
    max_kept_objects_mb: u64,
    /// Most MiB one run may hold at the SuperLink in messages and payload objects; a push
    /// past it is refused, storing nothing (Sepal addition).
    #[arg(long, default_value_t = 4096)]
    max_run_mb: usize,
    /// Most instructions one run may have in flight (sent, not yet answered and pulled);
    /// a push past it is refused (Sepal addition).
    #[arg(long, default_value_t = 100_000)]
    max_run_messages: usize,
    /// MiB a run may hold before its replies upload one at a time: past it, a pushed
    /// object waits until the ServerApp takes the replies that arrived before its own, or
    /// asks for it (Sepal addition).
    #[arg(long, default_value_t = 128)]
    reply_buffer_mb: usize,
    /// Most runs whose ServerApps run at once; later runs stay pending, and their logs
    /// say why, until one ends (Sepal addition).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    max_concurrent_runs: u64,
    /// Where FABs are kept (accepted for compatibility; FABs are held with the state).
    #[arg(long)]
    storage_dir: Option<PathBuf>,
    /// CSV of SuperNode public keys allowed to connect.
    #[arg(long)]
    auth_list_public_keys: Option<PathBuf>,
    /// YAML file that turns on user authentication on the Exec API: users sign in with
    /// `flwr login` at an OpenID provider, and see and stop only their own runs (needs
    /// TLS; docs/operating.md, "Authenticating users").
    #[arg(long)]
    user_auth_config: Option<PathBuf>,
    /// Do not check the identity provider's TLS certificate (local tests only).
    #[arg(long)]
    disable_oidc_tls_cert_verification: bool,
    /// Deprecated in Flower and ignored.
    #[arg(long, hide = true)]
    auth_superlink_private_key: Option<PathBuf>,
    /// Deprecated in Flower and ignored.
    #[arg(long, hide = true)]
    auth_superlink_public_key: Option<PathBuf>,
    /// ServerAppIo API address.
    #[arg(long, default_value = "0.0.0.0:9091")]
    serverappio_api_address: String,
    /// Fleet API transport (only grpc-rere is served).
    #[arg(long, default_value = "grpc-rere")]
    fleet_api_type: String,
    /// Fleet API address.
    #[arg(long, default_value = "0.0.0.0:9092")]
    fleet_api_address: String,
    /// Fleet API worker count (Flower supports only 1).
    #[arg(long, default_value_t = 1)]
    fleet_api_num_workers: u32,
    /// Exec API address.
    #[arg(long, default_value = "0.0.0.0:9093")]
    exec_api_address: String,
    /// Ignored, as in Flower.
    #[arg(long, hide = true)]
    flwr_dir: Option<PathBuf>,
    /// The Exec API's executor; only Flower's deployment executor (the default) is
    /// served: runs go to SuperNodes.
    #[arg(long, default_value = DEPLOYMENT_EXECUTOR)]
    executor: String,
    /// Accepted for compatibility with Flower's flags; the deployment executor needs none.
    #[arg(long)]
    executor_dir: Option<PathBuf>,
    /// Accepted for compatibility with Flower's flags: key-value pairs for the deployment
    /// executor, which Sepal's Exec API does not need.
    #[arg(long)]
    executor_config: Option<String>,
    /// Accepted for compatibility with Flower's flags: the SimulationIo API is not served
    /// (Sepal runs deployments, not simulations).
    #[arg(long, default_value = "0.0.0.0:9096")]
    simulationio_api_address: String,
    /// The `flwr-serverapp` executable used in subprocess isolation (Sepal addition).
    #[arg(long, default_value = "flwr-serverapp")]
    serverapp_bin: PathBuf,
    /// Limits and grants for Wasm ServerApps (Sepal addition).
    #[command(flatten)]
    wasm: super::wasm_args::WasmArgs,
    /// Serve Prometheus metrics at `/metrics` and a health check at `/healthz` over HTTP
    /// on this address, e.g. 127.0.0.1:9464 (Sepal addition; off by default).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_address: Option<String>,
    /// Log format (Sepal addition).
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

/// Accepts Flower's deployment executor (under the names Flower's docs and scripts use);
/// refuses the simulation executor and custom ones with the reason.
fn check_executor(executor: &str) -> anyhow::Result<()> {
    match executor {
        DEPLOYMENT_EXECUTOR | "flwr.superexec.deployment:exec" | "deployment:exec" | "deployment:executor" => Ok(()),
        simulation if simulation.contains("simulation") => bail!(
            "--executor {simulation}: the simulation executor is not supported; Sepal runs deployments \
             (flwr run against a federation of SuperNodes). Leave --executor at its default."
        ),
        other => bail!(
            "--executor {other}: custom executors are not supported; Sepal's Exec API runs \
             deployments as Flower's default executor ({DEPLOYMENT_EXECUTOR}) does"
        ),
    }
}

impl SuperlinkArgs {
    /// Flower's rules: `--insecure` wins (with a warning if TLS files are given too); else
    /// all three TLS files are needed.
    fn tls(&self) -> anyhow::Result<Option<ServerTls>> {
        if self.insecure {
            if self.ssl_ca_certfile.is_some() || self.ssl_certfile.is_some() || self.ssl_keyfile.is_some() {
                tracing::warn!("--insecure is set: the --ssl-* files are ignored and Fleet and Exec are plaintext");
            }
            return Ok(None);
        }
        match (&self.ssl_ca_certfile, &self.ssl_certfile, &self.ssl_keyfile) {
            (Some(ca), Some(cert), Some(key)) => {
                Ok(Some(ServerTls { ca: ca.clone(), cert: cert.clone(), key: key.clone() }))
            }
            (None, None, None) => bail!(
                "refusing to start without TLS: pass --ssl-ca-certfile, --ssl-certfile and --ssl-keyfile, or --insecure"
            ),
            _ => bail!("TLS needs all three of --ssl-ca-certfile, --ssl-certfile and --ssl-keyfile"),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.fleet_api_type != "grpc-rere" {
            bail!("--fleet-api-type {:?}: only grpc-rere is supported", self.fleet_api_type);
        }
        if self.fleet_api_num_workers != 1 {
            bail!("--fleet-api-num-workers: only 1 is supported");
        }
        if self.auth_superlink_private_key.is_some() || self.auth_superlink_public_key.is_some() {
            tracing::warn!("--auth-superlink-private-key/--auth-superlink-public-key are deprecated and ignored");
        }
        if self.flwr_dir.is_some() {
            tracing::warn!("--flwr-dir is ignored by the SuperLink");
        }
        check_executor(&self.executor)?;
        if self.executor_dir.is_some() || self.executor_config.is_some() {
            tracing::info!("--executor-dir / --executor-config are accepted for Flower's scripts; the deployment executor needs neither");
        }
        Ok(())
    }

    /// Runs the SuperLink until SIGINT/SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        self.check()?;
        let tls = self.tls()?;
        let node_allowlist = match &self.auth_list_public_keys {
            Some(path) => {
                let list = Allowlist::from_csv_file(path)?;
                tracing::info!(keys = list.len(), file = %path.display(), "only listed SuperNode keys may call Fleet");
                Some(list)
            }
            None => None,
        };
        let user_auth = match &self.user_auth_config {
            Some(path) => {
                if tls.is_none() {
                    bail!(
                        "--user-auth-config needs TLS on the Exec API (tokens must not cross the network in the clear): \
                         remove --insecure and give --ssl-ca-certfile, --ssl-certfile and --ssl-keyfile"
                    );
                }
                let verify = !self.disable_oidc_tls_cert_verification;
                if !verify {
                    tracing::warn!(
                        "--disable-oidc-tls-cert-verification: the identity provider's certificate is not checked"
                    );
                }
                let cfg = UserAuthConfig::load(path, verify)?;
                tracing::info!(issuer = %cfg.oidc.issuer, admins = cfg.admins.len(), "users authenticate on the Exec API");
                Some(Arc::new(UserAuth::new(cfg).map_err(anyhow::Error::msg)?))
            }
            None => {
                if self.disable_oidc_tls_cert_verification {
                    tracing::warn!("--disable-oidc-tls-cert-verification has no effect without --user-auth-config");
                }
                None
            }
        };
        // Check the TLS files before binding anything.
        if let Some(files) = &tls {
            files.load()?;
        }
        let serverappio = resolve("--serverappio-api-address", &self.serverappio_api_address).await?;
        let fleet = resolve("--fleet-api-address", &self.fleet_api_address).await?;
        let exec = resolve("--exec-api-address", &self.exec_api_address).await?;
        let mut listeners =
            Listeners::bind(serverappio, fleet, exec).await.context("cannot bind the SuperLink's addresses")?;
        if let Some(addr) = &self.metrics_address {
            let addr = resolve("--metrics-address", addr).await?;
            listeners =
                listeners.with_metrics(addr).await.with_context(|| format!("cannot bind --metrics-address {addr}"))?;
        }
        let isolation = Isolation::from(self.isolation);
        let security = if tls.is_some() { "TLS on Fleet and Exec" } else { "insecure" };
        tracing::info!(%serverappio, %fleet, %exec, ?isolation, "SuperLink serving (Flower 1.20 APIs, {security})");
        let mut wasm = self.wasm.settings(std::time::Duration::from_secs(86_400))?;
        // One sandbox slot per run that may run at once: a Wasm ServerApp holds its slot
        // for the whole run, so admission, not the sandbox, decides who waits.
        wasm.engine.concurrency = u32::try_from(self.max_concurrent_runs).unwrap_or(u32::MAX);
        let at_once = if isolation == Isolation::Process { 0 } else { wasm.engine.concurrency };
        crate::descriptors::prepare(&wasm, at_once);
        let limits = InputLimits {
            max_kept_object_bytes: self.max_kept_objects_mb << 20,
            max_run_bytes: self.max_run_mb.saturating_mul(1 << 20),
            max_run_messages: self.max_run_messages,
            reply_buffer_bytes: self.reply_buffer_mb.saturating_mul(1 << 20),
            max_concurrent_runs: self.max_concurrent_runs as usize,
            ..InputLimits::default()
        };
        let config = Config {
            serverapp_bin: self.serverapp_bin,
            wasm,
            tls,
            node_allowlist,
            limits,
            user_auth,
            ..Config::new(isolation)
        };
        let state: Arc<dyn LinkState> = if self.database == IN_MEMORY {
            Arc::new(MemoryState::new())
        } else if is_postgres_url(&self.database) {
            let state = PgState::open(&self.database)?;
            tracing::info!(database = %state.name(), "state kept in PostgreSQL");
            Arc::new(state)
        } else {
            tracing::info!(database = %self.database, "state kept in SQLite");
            Arc::new(SqliteState::open(&self.database)?)
        };
        sepal_superlink::serve(config, listeners, state, crate::shutdown::signal()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_deployment_executor_is_served() {
        assert!(check_executor(DEPLOYMENT_EXECUTOR).is_ok());
        assert!(check_executor("deployment:exec").is_ok());
        let e = check_executor("flwr.superexec.simulation:executor").unwrap_err().to_string();
        assert!(e.contains("simulation executor is not supported"), "{e}");
        let e = check_executor("mine.module:exec").unwrap_err().to_string();
        assert!(e.contains("custom executors are not supported"), "{e}");
    }
}
