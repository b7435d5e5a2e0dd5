//! `sepal demo`: a whole local federation in one process, running a Wasm app.
//!
//! Starts a SuperLink (in-memory state, subprocess isolation, loopback ports chosen by
//! the OS) and N SuperNodes, each with its own partition in its node config; submits
//! the app; prints its log as the rounds go; reports the final status; shuts down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sepal_executor::Settings;
use sepal_proto::pb;
use sepal_sandbox::SandboxConfig;
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::{Config as LinkConfig, Isolation as LinkIsolation, Listeners};
use sepal_supernode::retry::RetryPolicy;
use sepal_supernode::Config as NodeConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::exec::Exec;

/// Run a local federation (SuperLink and SuperNodes in this process) on a Wasm app.
#[derive(Debug, clap::Parser)]
pub struct DemoArgs {
    /// The app directory (its pyproject.toml names the .wasm components).
    #[arg(default_value = "examples/quickstart")]
    app: PathBuf,
    /// How many SuperNodes to start.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// Run config overrides, e.g. "num-server-rounds=5".
    #[arg(long, short = 'c')]
    run_config: Option<String>,
}

impl DemoArgs {
    /// Runs the demo to the end of the run.
    pub async fn run(self) -> anyhow::Result<()> {
        if self.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        let built = sepal_fab::build_fab_with_limit(&self.app, sepal_fab::FAB_MAX_SIZE).with_context(|| {
            format!(
                "cannot build a FAB from {} (build its Wasm components first, e.g. examples/quickstart/build.sh)",
                self.app.display()
            )
        })?;
        let overrides = match &self.run_config {
            Some(text) => sepal_fab::parse_config_overrides(text).context("--run-config")?,
            None => Default::default(),
        };
        let (stop_nodes, nodes_stopped) = watch::channel(false);
        let (stop_link, link_stopped) = watch::channel(false);
        let exec = start_federation(self.nodes, &link_stopped, &nodes_stopped).await?;
        println!("Local federation: 1 SuperLink, {} SuperNodes (Exec API at {exec})", self.nodes);
        let result = run_app(exec, built.bytes, built.hash, sepal_fab::to_scalars(&overrides)).await;
        // Nodes first, so they can unregister from a SuperLink that is still there.
        let _ = stop_nodes.send(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop_link.send(true);
        result
    }
}

fn shutdown_signal(stopped: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = stopped.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Starts the SuperLink and the SuperNodes; returns the Exec address.
async fn start_federation(
    nodes: u32,
    link_stopped: &watch::Receiver<bool>,
    nodes_stopped: &watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let listeners = Listeners::bind(any, any, any).await.context("cannot bind loopback ports")?;
    let fleet = listeners.fleet.local_addr()?;
    let exec = listeners.exec.local_addr()?;
    // Every part of the demo keeps compiled components in the same place, so only the
    // first run of an app compiles it.
    let engine = SandboxConfig { artifact_dir: sepal_executor::default_cache_dir(), ..SandboxConfig::default() };
    let wasm = Settings { engine, ..Settings::default() };
    let link = sepal_superlink::serve(
        LinkConfig { wasm: wasm.clone(), ..LinkConfig::new(LinkIsolation::Subprocess) },
        listeners,
        Arc::new(MemoryState::new()),
        shutdown_signal(link_stopped),
    );
    tokio::spawn(async move {
        if let Err(e) = link.await {
            eprintln!("error: the SuperLink stopped: {e}");
        }
    });
    for partition in 0..nodes {
        let listener = TcpListener::bind(any).await.context("cannot bind a loopback port")?;
        let node_config =
            sepal_fab::parse_config_overrides(&format!("partition-id={partition} num-partitions={nodes}"))?;
        let config = NodeConfig {
            node_config: sepal_fab::to_scalars(&node_config),
            clientappio: listener.local_addr()?,
            retry: RetryPolicy { max_retries: Some(5), max_wait: Some(Duration::from_secs(30)) },
            wasm: wasm.clone(),
            ..NodeConfig::new(fleet.to_string(), sepal_wire::ClientTls::Insecure)
        };
        let node = sepal_supernode::serve(config, listener, shutdown_signal(nodes_stopped));
        tokio::spawn(async move {
            if let Err(e) = node.await {
                eprintln!("error: a SuperNode stopped: {e}");
            }
        });
    }
    Ok(exec)
}

/// Submits the FAB, prints its log until the run ends, and reports how it ended.
async fn run_app(
    exec: SocketAddr,
    fab: Vec<u8>,
    hash: String,
    override_config: std::collections::HashMap<String, pb::Scalar>,
) -> anyhow::Result<()> {
    let mut exec = Exec::connect(&exec.to_string()).await?;
    let req = pb::StartRunRequest {
        fab: Some(pb::Fab { hash_str: hash, content: fab }),
        override_config,
        ..Default::default()
    };
    let res = exec.client.start_run(req).await.map_err(|s| exec.error(&s, "the SuperLink refused the run"))?;
    let run_id = res.into_inner().run_id.context("the SuperLink started no run")?;
    println!("Started run {run_id}\n");
    super::log::follow_until_interrupted(&mut exec, run_id).await?;
    let runs = exec.client.list_runs(pb::ListRunsRequest { run_id: Some(run_id) }).await;
    let runs = runs.map_err(|s| exec.error(&s, "cannot read the run's status"))?.into_inner();
    let status = runs.run_dict.get(&run_id).and_then(|r| r.status.clone()).unwrap_or_default();
    println!("\nRun {run_id}: {}:{}", status.status, status.sub_status);
    if status.sub_status != "completed" {
        bail!("the run did not complete: {}", if status.details.is_empty() { "no details" } else { &status.details });
    }
    Ok(())
}
