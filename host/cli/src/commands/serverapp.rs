//! `sepal serverapp`: runs Wasm ServerApps for a SuperLink in process isolation
//! (what `flwr-serverapp` does for Python ServerApps), with Flower's flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

/// `flwr-serverapp`'s flags, plus the Wasm limits and grants.
#[derive(Debug, clap::Parser)]
pub struct ServerappArgs {
    /// The SuperLink's ServerAppIo API address.
    #[arg(long, default_value = "127.0.0.1:9091")]
    serverappio_api_address: String,
    /// Required: ServerAppIo is plaintext (as in Flower).
    #[arg(long)]
    insecure: bool,
    /// Serve one run, then exit.
    #[arg(long)]
    run_once: bool,
    /// Accepted for compatibility with `flwr-serverapp`; FABs are not installed on disk.
    #[arg(long, hide = true)]
    flwr_dir: Option<PathBuf>,
    /// Limits and grants for the Wasm ServerApps.
    #[command(flatten)]
    wasm: super::wasm_args::WasmArgs,
}

impl ServerappArgs {
    /// Serves runs until SIGINT/SIGTERM (or one run with `--run-once`).
    pub async fn run(self) -> anyhow::Result<()> {
        if !self.insecure {
            bail!("--insecure is required: ServerAppIo has no TLS (as with Flower's flwr-serverapp)");
        }
        if self.flwr_dir.is_some() {
            tracing::warn!("--flwr-dir is ignored: Wasm FABs run from memory");
        }
        let options = sepal_appio::serverapp::Options {
            limits: self.wasm.limits(Duration::from_secs(86_400))?,
            grants: self.wasm.grants()?,
            run_once: self.run_once,
            ..Default::default()
        };
        sepal_appio::serverapp::run(&self.serverappio_api_address, options, crate::shutdown::signal()).await?;
        Ok(())
    }
}
