//! `sepal clientapp`: runs Wasm ClientApps for a SuperNode in process isolation
//! (what `flwr-clientapp` does for Python ClientApps), with Flower's flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

/// `flwr-clientapp`'s flags, plus the Wasm limits and grants.
#[derive(Debug, clap::Parser)]
pub struct ClientappArgs {
    /// The SuperNode's ClientAppIo API address.
    #[arg(long, default_value = "127.0.0.1:9094")]
    clientappio_api_address: String,
    /// Required: ClientAppIo is plaintext (as in Flower).
    #[arg(long)]
    insecure: bool,
    /// Handle the instruction of this token only, then exit.
    #[arg(long)]
    token: Option<String>,
    /// Handle one instruction, then exit.
    #[arg(long)]
    run_once: bool,
    /// Accepted for compatibility with `flwr-clientapp`; FABs are not installed on disk.
    #[arg(long, hide = true)]
    flwr_dir: Option<PathBuf>,
    /// Limits and grants for the Wasm ClientApps.
    #[command(flatten)]
    wasm: super::wasm_args::WasmArgs,
}

impl ClientappArgs {
    /// Serves instructions until SIGINT/SIGTERM (or one with `--token` / `--run-once`).
    pub async fn run(self) -> anyhow::Result<()> {
        if !self.insecure {
            bail!("--insecure is required: ClientAppIo has no TLS (as with Flower's flwr-clientapp)");
        }
        if self.flwr_dir.is_some() {
            tracing::warn!("--flwr-dir is ignored: Wasm FABs run from memory");
        }
        let options = sepal_appio::clientapp::Options {
            limits: self.wasm.limits(Duration::from_secs(600))?,
            grants: self.wasm.grants()?,
            run_once: self.run_once,
            token: self.token,
            ..Default::default()
        };
        sepal_appio::clientapp::run(&self.clientappio_api_address, options, crate::shutdown::signal()).await?;
        Ok(())
    }
}
