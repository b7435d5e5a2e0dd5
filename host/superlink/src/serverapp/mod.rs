//! Wasm ServerApps run in-process under subprocess isolation: the SuperLink's adapter
//! around [`sepal_executor`]. The app drives the federation through a [`grid::LinkGrid`]
//! wired to the link state; this module walks the run through its statuses, keeps its
//! heartbeat fresh, and records the outcome.

mod grid;

use std::sync::Arc;
use std::time::Duration;

use sepal_executor::log::ServerLog;
use sepal_executor::{AppFailure, Executor, RunApp, Side};

use crate::lease::Leases;
use crate::link::{finished, Link};
use crate::state::{status, RunState};
use grid::LinkGrid;

/// The heartbeat interval declared for an in-process ServerApp (Flower's default).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// How a ServerApp comes to run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// For a pending run.
    Fresh,
    /// Again, from its start, for a run whose ServerApp ran on a SuperLink replica that
    /// died (its lease lapsed).
    TakeOver,
}

/// Runs the Wasm ServerApp of a run (its FAB read as `app`) to its end and records the
/// outcome; `leases` holds the run's lease, taken by the caller, while it runs.
pub async fn run(link: Arc<Link>, executor: Executor, run_id: u64, app: RunApp, leases: Leases, start: Start) {
    drive(&link, &executor, run_id, &app, &leases, start).await;
    leases.release(run_id);
}

async fn drive(link: &Arc<Link>, executor: &Executor, run_id: u64, app: &RunApp, leases: &Leases, start: Start) {
    match start {
        Start::Fresh => {
            let starting = status::status(status::STARTING, "", "");
            if !matches!(link.update_run_status(run_id, starting), Ok(true)) {
                return; // someone else took the run
            }
        }
        Start::TakeOver => {
            tracing::warn!(run_id, "taking over a run whose SuperLink replica stopped: its ServerApp starts again");
            let _ = link.add_host_line(
                run_id,
                "The SuperLink replica running this ServerApp stopped; it starts again on another replica.",
            );
        }
    }
    let outcome = tokio::select! {
        outcome = execute(link, executor, run_id, app) => outcome,
        _ = run_finished_elsewhere(link, run_id) => return,
        _ = heartbeat(link, run_id) => return,
        _ = leases.hold(run_id) => return,
    };
    let new_status = match outcome {
        Ok(()) => finished(status::COMPLETED, ""),
        Err(failure) => {
            let details = failure.to_string();
            let _ = link.add_host_line(run_id, &format!("ServerApp failed: {details}"));
            tracing::warn!(run_id, "Wasm ServerApp failed: {details}");
            finished(status::FAILED, &details)
        }
    };
    if let Err(e) = link.update_run_status(run_id, new_status) {
        tracing::error!(run_id, "cannot record the run's outcome: {e}");
    }
}

/// Keeps the run's ServerApp heartbeat fresh like an external ServerApp does, so that a
/// run whose in-process app vanished (the SuperLink stopped) fails after a restart instead
/// of staying "running". Never completes.
async fn heartbeat(link: &Link, run_id: u64) {
    loop {
        if let Err(e) = link.state.ack_app_heartbeat(run_id, HEARTBEAT_INTERVAL.as_secs_f64()) {
            tracing::warn!(run_id, "cannot record the ServerApp's heartbeat: {e}");
        }
        tokio::time::sleep(HEARTBEAT_INTERVAL / 2).await;
    }
}

/// Completes when the run is finished by someone else (a user's StopRun).
async fn run_finished_elsewhere(link: &Link, run_id: u64) {
    let mut changed = link.events.run_changed.subscribe();
    loop {
        let done = link.run_status(run_id).map(|s| RunState::parse(&s.status) == Some(RunState::Finished));
        if done.unwrap_or(true) || changed.changed().await.is_err() {
            return;
        }
    }
}

/// A failure of the SuperLink itself (its state), reported as the run's failure.
fn host(e: impl std::fmt::Display) -> AppFailure {
    AppFailure::Raised(e.to_string())
}

async fn execute(link: &Arc<Link>, executor: &Executor, run_id: u64, app: &RunApp) -> Result<(), AppFailure> {
    let run = link.state.run(run_id).map_err(host)?.ok_or_else(|| host("the run vanished"))?;
    let mut context = link.state.serverapp_context(run_id).map_err(host)?.unwrap_or_default();
    context.run_config = app.run_config(&run.override_config)?;
    let component = executor.load_server(app.wasm(Side::Server)?).await?;
    link.update_run_status(run_id, status::status(status::RUNNING, "", "")).map_err(host)?;
    // Entering "running" clears the heartbeat deadline; set one at once, so the run fails
    // after a restart even if the SuperLink stops before the next periodic heartbeat.
    link.state.ack_app_heartbeat(run_id, HEARTBEAT_INTERVAL.as_secs_f64()).map_err(host)?;
    tracing::info!(run_id, "Wasm ServerApp running");

    let grid = LinkGrid::new(link.clone(), run_id);
    let log_link = link.clone();
    let log = Arc::new(ServerLog::new(run_id, executor.settings().host_log_bytes, move |line: String| {
        let _ = log_link.add_log(run_id, &line);
    }));
    let context = executor.run_server(&component, &context, grid, log).await?;
    link.state.set_serverapp_context(run_id, context).map_err(host)
}
