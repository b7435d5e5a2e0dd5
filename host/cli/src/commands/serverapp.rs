//! `sepal serverapp`: runs Wasm ServerApps for a SuperLink in process isolation
//! (what `flwr-serverapp` does for Python ServerApps), with Flower's flags.

use std::time::Duration;

use super::app_process::AppProcessArgs;

/// `flwr-serverapp`'s flags, plus the Wasm limits and grants.
#[derive(Debug, clap::Parser)]
#[command(mut_arg("insecure", |a| a.help("Required: ServerAppIo is plaintext (as in Flower)")))]
pub struct ServerappArgs {
    /// The SuperLink's ServerAppIo API address.
    #[arg(long, default_value = "127.0.0.1:9091")]
    serverappio_api_address: String,
    /// Serve one run, then exit.
    #[arg(long)]
    run_once: bool,
    #[command(flatten)]
    process: AppProcessArgs,
}

impl ServerappArgs {
    /// Serves runs until SIGINT/SIGTERM (or one run with `--run-once`).
    pub async fn run(self) -> anyhow::Result<()> {
        self.process.check("ServerAppIo", "flwr-serverapp")?;
        let wasm = self.process.wasm.settings(Duration::from_secs(86_400))?;
        crate::descriptors::prepare(&wasm, wasm.engine.concurrency);
        let options = sepal_appio::serverapp::Options { wasm, run_once: self.run_once, ..Default::default() };
        sepal_appio::serverapp::run(&self.serverappio_api_address, options, crate::shutdown::signal()).await?;
        Ok(())
    }
}
