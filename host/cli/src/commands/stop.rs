//! `sepal stop`: stop a run (`flwr stop`).

use anyhow::bail;
use sepal_proto::pb;
use tonic::Code;

use crate::exec::AppFederationArgs;
use crate::output::{out, out_json, report, OutputFormat};

/// `flwr stop` arguments.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The run to stop.
    #[arg(value_name = "RUN_ID")]
    run_id: u64,
    #[command(flatten)]
    federation: AppFederationArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    format: OutputFormat,
}

/// What `flwr stop --format json` prints.
#[derive(serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct StopJson {
    success: bool,
    run_id: u64,
}

impl StopArgs {
    /// Stops the run.
    pub async fn run(self) -> anyhow::Result<()> {
        let format = self.format;
        report(format, self.stop().await)
    }

    async fn stop(self) -> anyhow::Result<()> {
        let run_id = self.run_id;
        let mut exec = self.federation.connect().await?;
        let success = match exec.client.stop_run(pb::StopRunRequest { run_id }).await {
            Ok(response) => response.into_inner().success,
            // The SuperLink's message says why (e.g. "Run ID 5 is already finished").
            Err(status) if status.code() == Code::FailedPrecondition => {
                bail!("cannot stop run {run_id}: {}", status.message())
            }
            Err(status) => return Err(exec.error(&status, &format!("the SuperLink refused to stop run {run_id}"))),
        };
        if !success {
            bail!("run {run_id} couldn't be stopped");
        }
        match self.format {
            OutputFormat::Json => out_json(&StopJson { success: true, run_id }),
            OutputFormat::Default => out(&format!("Run {run_id} successfully stopped.\n")),
        }
    }
}
