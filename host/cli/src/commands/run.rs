//! `sepal run`: submit an app (built in memory) or a `.fab` file to a SuperLink, as `flwr run`
//! does, `.wasm` components included.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use sepal_fab::{ConfigMap, ConfigValue};
use sepal_proto::pb;
use serde::Serialize;

use super::build::{build_dir, read_fab_file, LoadedFab};
use super::log::follow_until_interrupted;
use crate::exec::{project_dir_of, Exec, FederationArgs};
use crate::output::{out, out_json, report, OutputFormat};

/// `flwr run` arguments (plus `--superlink`).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Path of the Flower app to run (built in memory), or a built `.fab` file (whose
    /// federation then comes from ./pyproject.toml or --superlink).
    #[arg(value_name = "APP|FAB", default_value = ".")]
    app: PathBuf,
    #[command(flatten)]
    federation: FederationArgs,
    /// Override run config values: 'key1=value1 key2="text"' (TOML values; may be repeated,
    /// or one .toml file). The keys must exist in the app's [tool.flwr.app.config].
    #[arg(short = 'c', long = "run-config", value_name = "KEY=VALUE ...")]
    run_config: Vec<String>,
    /// Follow the run's log after starting it.
    #[arg(long)]
    stream: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    format: OutputFormat,
}

/// What `flwr run --format json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct RunJson<'a> {
    success: bool,
    run_id: u64,
    fab_id: String,
    fab_name: &'a str,
    fab_version: &'a str,
    fab_hash: &'a str,
    fab_filename: &'a str,
}

impl RunArgs {
    /// Starts the run (and follows its log with `--stream`).
    pub async fn run(self) -> anyhow::Result<()> {
        let format = self.format;
        let stream = self.stream;
        let (mut exec, run_id) = report(format, self.start().await)?;
        if stream {
            follow_until_interrupted(&mut exec, run_id).await?;
        }
        Ok(())
    }

    async fn start(self) -> anyhow::Result<(Exec, u64)> {
        let federation = self.federation.resolve(&project_dir_of(&self.app))?;
        let fab = load(&self.app)?;
        let overrides = sepal_fab::parse_config_args(&self.run_config).map_err(|e| anyhow!("--run-config: {e}"))?;
        let request = pb::StartRunRequest {
            fab: Some(pb::Fab { hash_str: fab.hash.clone(), content: fab.bytes }),
            override_config: sepal_fab::to_scalars(&overrides),
            federation_options: Some(config_record(&federation.options)),
        };
        let mut exec = Exec::connect(&federation.address).await?;
        let response = match exec.client.start_run(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(exec.error(&status, "the SuperLink refused the run")),
        };
        let Some(run_id) = response.run_id else {
            // Flower's SuperLink answers an unreadable or oversized FAB with no run id.
            bail!("the SuperLink at {} did not start the run (it returned no run id)", exec.address);
        };
        match self.format {
            OutputFormat::Json => out_json(&RunJson {
                success: true,
                run_id,
                fab_id: fab.manifest.fab_id(),
                fab_name: fab.manifest.name(),
                fab_version: fab.manifest.version(),
                fab_hash: &fab.hash[..sepal_fab::FAB_HASH_TRUNCATION.min(fab.hash.len())],
                fab_filename: &fab.file_name,
            })?,
            OutputFormat::Default => out(&format!("Started run {run_id}\n"))?,
        }
        Ok((exec, run_id))
    }
}

/// The FAB for `APP|FAB`: a directory is built in memory, a file is read as a `.fab`.
fn load(app: &std::path::Path) -> anyhow::Result<LoadedFab> {
    match std::fs::metadata(app) {
        Ok(meta) if meta.is_dir() => build_dir(app),
        Ok(_) => read_fab_file(app),
        Err(e) => Err(e).with_context(|| format!("{}: no such app directory or .fab file", app.display())),
    }
}

/// The federation's `options.*` as the ConfigRecord `StartRunRequest.federation_options`
/// carries, in order.
fn config_record(config: &ConfigMap) -> pb::ConfigRecord {
    use pb::config_record_value::Value;
    let items = config
        .iter()
        .map(|(key, value)| {
            let value = match value {
                ConfigValue::Bool(b) => Value::Bool(*b),
                ConfigValue::Int(i) => Value::Sint64(*i),
                ConfigValue::Float(x) => Value::Double(*x),
                ConfigValue::Str(s) => Value::String(s.clone()),
            };
            pb::config_record::Item { key: key.clone(), value: Some(pb::ConfigRecordValue { value: Some(value) }) }
        })
        .collect();
    pb::ConfigRecord { items }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_config_becomes_scalars() {
        use pb::scalar::Scalar;
        let config = sepal_fab::parse_config_args(&[r#"lr=0.5 rounds=3 flag=true name="x y""#]).unwrap();
        let scalars: Vec<Scalar> = config.values().map(|v| sepal_fab::to_scalar(v).scalar.unwrap()).collect();
        assert_eq!(scalars, [Scalar::Double(0.5), Scalar::Sint64(3), Scalar::Bool(true), Scalar::String("x y".into())]);
        let record = config_record(&config);
        assert_eq!(record.items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["lr", "rounds", "flag", "name"]);
        assert_eq!(record.items[1].value.as_ref().unwrap().value, Some(pb::config_record_value::Value::Sint64(3)));
    }
}
