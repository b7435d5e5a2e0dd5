//! `sepal clientapp`: runs Wasm ClientApps for a SuperNode in process isolation
//! (what `flwr-clientapp` does for Python ClientApps), with Flower's flags.

use std::time::Duration;

use super::app_process::AppProcessArgs;

/// `flwr-clientapp`'s flags, plus the Wasm limits and grants.
#[derive(Debug, clap::Parser)]
#[command(mut_arg("insecure", |a| a.help("Required: ClientAppIo is plaintext (as in Flower)")))]
pub struct ClientappArgs {
    /// The SuperNode's ClientAppIo API address.
    #[arg(long, default_value = "127.0.0.1:9094")]
    clientappio_api_address: String,
    /// Handle the instruction of this token only, then exit.
    #[arg(long)]
    token: Option<String>,
    /// Handle one instruction, then exit.
    #[arg(long)]
    run_once: bool,
    #[command(flatten)]
    process: AppProcessArgs,
}

impl ClientappArgs {
    /// Serves instructions until SIGINT/SIGTERM (or one with `--token` / `--run-once`).
    pub async fn run(self) -> anyhow::Result<()> {
        self.process.check("ClientAppIo", "flwr-clientapp")?;
        let wasm = self.process.wasm.settings(Duration::from_secs(600))?;
        crate::descriptors::prepare(&wasm, wasm.engine.concurrency);
        let options =
            sepal_appio::clientapp::Options { wasm, run_once: self.run_once, token: self.token, ..Default::default() };
        sepal_appio::clientapp::run(&self.clientappio_api_address, options, crate::shutdown::signal()).await?;
        Ok(())
    }
}
