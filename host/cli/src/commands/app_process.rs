//! What `sepal serverapp` and `sepal clientapp` share: Flower's `--insecure` and `--flwr-dir`
//! of an app process (`flwr-serverapp`, `flwr-clientapp`), and the Wasm limits and grants.

use std::path::PathBuf;

use anyhow::bail;

use super::wasm_args::WasmArgs;

/// The flags both app processes take. Each command sets the help of `--insecure` to name
/// its API.
#[derive(Debug, clap::Args)]
pub struct AppProcessArgs {
    /// Required: the app's API is plaintext (as in Flower).
    #[arg(long)]
    insecure: bool,
    /// Accepted for compatibility with Flower's app processes; FABs are not installed on disk.
    #[arg(long, hide = true)]
    flwr_dir: Option<PathBuf>,
    /// Limits and grants for the Wasm apps.
    #[command(flatten)]
    pub wasm: WasmArgs,
}

impl AppProcessArgs {
    /// Refuses to start without `--insecure`, since `api` has no TLS (as with Flower's
    /// `program`), and warns that `--flwr-dir` is ignored.
    pub fn check(&self, api: &str, program: &str) -> anyhow::Result<()> {
        if !self.insecure {
            bail!("--insecure is required: {api} has no TLS (as with Flower's {program})");
        }
        if self.flwr_dir.is_some() {
            tracing::warn!("--flwr-dir is ignored: Wasm FABs run from memory");
        }
        Ok(())
    }
}
