//! `sepal serverapp`: runs the Wasm ServerApps of a SuperLink's runs, over ServerAppIo,
//! with the call sequence of Flower 1.20's `flwr-serverapp`:
//!
//! ```text
//! PullAppInputs{}                       -> {context, run, fab} (empty: no pending run, ask again later)
//! GetRun{run_id}
//! UpdateRunStatus{running}
//! SendAppHeartbeat{run_id, 30}          now, then every ~20 s
//! (the app runs: GetNodes, PushMessages + PushObject, PullMessages + PullObject + ConfirmMessageReceived)
//! PushLogs{run_id, lines}               as the app writes, batched
//! PushAppOutputs{run_id, context}
//! UpdateRunStatus{finished:completed}   or finished:failed with the cause
//! ```
//!
//! A run handed to this process is its to finish: a FAB whose ServerApp is Python fails
//! with a clear message (run `flwr-serverapp` for those). PERMISSION_DENIED from any call
//! means the run was stopped: the app is dropped, no final status is sent, and the process
//! moves on to the next run.

mod grid;
mod log;
mod stop;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sepal_executor::{AppFailure, Executor, RunApp, Settings, Side};
use sepal_proto::pb;
use sepal_proto::pb::server_app_io_client::ServerAppIoClient;
use sepal_sandbox::{Limits, LogSink, ServerComponent};
use sepal_wire::MAX_GRPC_MESSAGE;
use tonic::transport::Channel;

use crate::error::{Error, RpcError};
use crate::rpc::{channel, unary};
use log::RunLog;
use stop::RunStop;

/// The ServerAppIo client.
pub(crate) type Link = ServerAppIoClient<Channel>;

/// How long the last log lines may take to upload when a run ends.
const LOG_FLUSH: Duration = Duration::from_secs(10);

/// How long the final status may take when the process shuts down mid-run.
const ABANDON_WAIT: Duration = Duration::from_secs(5);

/// How `sepal serverapp` runs ServerApps.
#[derive(Debug, Clone)]
pub struct Options {
    /// Limits per run (default: the sandbox's, with a wall time of one day), grants
    /// (default: nothing) and the engine, as a SuperLink's.
    pub wasm: Settings,
    /// Serve one run, then return (`--run-once`).
    pub run_once: bool,
    /// Pause between asks for a pending run. Default 1 s (Python polls every 3 s).
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wasm: Settings {
                limits: Limits { deadline: Duration::from_secs(86_400), ..Limits::default() },
                ..Settings::default()
            },
            run_once: false,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Serves the runs the SuperLink at `address` (ServerAppIo, `host:port`) hands out, one at
/// a time, until `shutdown` completes (or after one run with [`Options::run_once`]).
///
/// A run in progress at shutdown is stopped and marked finished:failed. Errors are only
/// returned for an unusable address or sandbox; a failed run is recorded in the run.
pub async fn run(address: &str, options: Options, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let executor = Executor::new(options.wasm.clone())?;
    let link = ServerAppIoClient::new(channel(address)?)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    tracing::info!(address, "ServerApp process started; waiting for runs");
    let server = ServerApp { link, executor, options };
    tokio::pin!(shutdown);
    loop {
        let inputs = tokio::select! {
            () = &mut shutdown => return Ok(()),
            inputs = server.next_run() => inputs,
        };
        let run_id = inputs.run.as_ref().map_or(0, |r| r.run_id);
        tokio::select! {
            () = server.serve(inputs) => {}
            () = &mut shutdown => {
                server.abandon(run_id).await;
                return Ok(());
            }
        }
        if server.options.run_once {
            return Ok(());
        }
    }
}

/// How a run ended.
#[derive(Debug)]
enum Outcome {
    Completed,
    Failed(String),
    Stopped(String),
}

/// Why a run did not complete.
#[derive(Debug)]
enum Failure {
    /// The run was stopped (PERMISSION_DENIED, or the heartbeat was refused).
    Stopped(String),
    /// The run failed; the text is the cause.
    Failed(String),
}

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Self {
        if e.is_stopped() {
            Failure::Stopped(e.status.message().to_owned())
        } else {
            Failure::Failed(e.to_string())
        }
    }
}

impl From<AppFailure> for Failure {
    fn from(e: AppFailure) -> Self {
        Failure::Failed(e.to_string())
    }
}

fn failed(details: impl Into<String>) -> Failure {
    Failure::Failed(details.into())
}

fn status(status: &str, sub_status: &str, details: &str) -> pb::RunStatus {
    pb::RunStatus { status: status.into(), sub_status: sub_status.into(), details: details.into() }
}

struct ServerApp {
    link: Link,
    executor: Executor,
    options: Options,
}

impl ServerApp {
    /// Asks for a pending run until there is one.
    async fn next_run(&self) -> pb::PullAppInputsResponse {
        let mut warned = false;
        loop {
            match unary!(self.link, pull_app_inputs, pb::PullAppInputsRequest::default()) {
                Ok(res) if res.run.as_ref().is_some_and(|r| r.run_id != 0) => return res,
                Ok(_) => warned = false,
                Err(e) if !warned => {
                    tracing::warn!("cannot ask the SuperLink for a run ({e}); still trying");
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Runs one run's ServerApp and records how it ended.
    async fn serve(&self, inputs: pb::PullAppInputsResponse) {
        let run_id = inputs.run.as_ref().map_or(0, |r| r.run_id);
        tracing::info!(run_id, "run received");
        let (log, uploader) = log::start(self.link.clone(), run_id, self.executor.settings().host_log_bytes);
        let outcome = match self.execute(run_id, inputs, &log).await {
            Ok(()) => Outcome::Completed,
            Err(Failure::Stopped(reason)) => Outcome::Stopped(reason),
            Err(Failure::Failed(details)) => Outcome::Failed(details),
        };
        let final_status = match &outcome {
            Outcome::Completed => {
                tracing::info!(run_id, "ServerApp finished");
                Some(status("finished", "completed", ""))
            }
            Outcome::Failed(details) => {
                // The SuperLink logs the failure in the run's log when it gets the status.
                tracing::warn!(run_id, "ServerApp failed: {details}");
                Some(status("finished", "failed", details))
            }
            Outcome::Stopped(reason) => {
                tracing::info!(run_id, "Run ID {run_id} stopped ({reason})");
                None
            }
        };
        log.finish(uploader, LOG_FLUSH).await;
        if let Some(final_status) = final_status {
            self.set_status(run_id, final_status).await;
        }
    }

    async fn set_status(&self, run_id: u64, run_status: pb::RunStatus) {
        let req = pb::UpdateRunStatusRequest { run_id, run_status: Some(run_status) };
        match unary!(self.link, update_run_status, req) {
            Ok(_) => {}
            Err(e) if e.is_stopped() => tracing::info!(run_id, "run already finished: {}", e.status.message()),
            Err(e) => tracing::error!(run_id, "cannot record the run's outcome: {e}"),
        }
    }

    /// Marks a run failed because this process is shutting down mid-run.
    async fn abandon(&self, run_id: u64) {
        tracing::warn!(run_id, "shutting down during the run; marking it failed");
        let failed = status("finished", "failed", "the ServerApp process was shut down during the run");
        if tokio::time::timeout(ABANDON_WAIT, self.set_status(run_id, failed)).await.is_err() {
            tracing::warn!(run_id, "could not mark the run failed in time");
        }
    }

    /// The run's lifecycle up to its outputs: the FAB, the component, status running, the
    /// heartbeat, the app, the final context.
    async fn execute(&self, run_id: u64, inputs: pb::PullAppInputsResponse, log: &Arc<RunLog>) -> Result<(), Failure> {
        let context = inputs.context.ok_or_else(|| failed("PullAppInputs returned no context"))?;
        let fab = inputs.fab.ok_or_else(|| failed("PullAppInputs returned no FAB"))?;
        let got = unary!(self.link, get_run, pb::GetRunRequest { run_id, ..Default::default() })?;
        let run = got.run.or(inputs.run).unwrap_or_default();
        let expected = if run.fab_hash.is_empty() { &fab.hash_str } else { &run.fab_hash };
        let app = RunApp::read(&fab.content, expected)?;
        let run_config = app.run_config(&run.override_config)?;
        let component = self.executor.load_server(app.wasm(Side::Server)?).await?;
        let context = pb::Context { run_config, ..context };
        let req = pb::UpdateRunStatusRequest { run_id, run_status: Some(status("running", "", "")) };
        unary!(self.link, update_run_status, req)?;
        tracing::info!(run_id, fab_id = %run.fab_id, "Wasm ServerApp running");

        let stop = RunStop::new();
        let heartbeat = tokio::spawn(stop::heartbeat(self.link.clone(), run_id, stop.clone()));
        let result = self.run_app(run_id, &component, &context, &stop, log).await;
        heartbeat.abort();
        let context = result?;
        let req = pb::PushAppOutputsRequest { run_id, context: Some(context), ..Default::default() };
        unary!(self.link, push_app_outputs, req)?;
        Ok(())
    }

    /// Runs the app to its end; returns the final context (the app's state, the rest kept).
    async fn run_app(
        &self,
        run_id: u64,
        component: &ServerComponent,
        context: &pb::Context,
        stop: &Arc<RunStop>,
        log: &Arc<RunLog>,
    ) -> Result<pb::Context, Failure> {
        let grid = grid::GrpcGrid::new(self.link.clone(), run_id, stop.clone());
        let sink: Arc<dyn LogSink> = log.clone();
        let out = tokio::select! {
            out = self.executor.run_server(component, context, grid, sink) => out,
            reason = stop.stopped() => return Err(Failure::Stopped(reason)),
        };
        out.map_err(|e| match stop.reason() {
            Some(reason) => Failure::Stopped(reason),
            None => e.into(),
        })
    }
}
