//! Test scenarios that run unchanged against any [`Federation`] (all-Python reference or
//! Sepal components), so both sides are held to the same checks.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::{final_line, Federation, EXAMPLE, RUN_TIMEOUT};

/// Runs the example with its default config (2 rounds) to `finished:completed` and checks
/// the ServerApp's log: one `ROUND` line per round, with the ClientApps' `context.state`
/// counters growing from 1 to 2 on every node. Returns the `FINAL` line.
pub fn two_rounds(fed: &Federation) -> Result<String> {
    let flwr = fed.flwr(EXAMPLE)?;
    let run_id = flwr.run(&[])?;
    flwr.wait_for_status(run_id, |s| s == "finished:completed", RUN_TIMEOUT)?;
    let fin = flwr.wait_for_final_line(run_id)?;
    let log = flwr.log_show(run_id)?;
    let nodes = fed.num_supernodes();
    for (round, n) in [(1, 1), (2, 2)] {
        let counters = (0..nodes).map(|i| format!("\"{i}\": {n}")).collect::<Vec<_>>().join(", ");
        let want = format!("ROUND {round}/2: {nodes} train replies, {nodes} eval replies, counters={{{counters}}}");
        ensure!(log.contains(&want), "the run log lacks {want:?}; log:\n{log}");
    }
    let info = flwr.run_info(run_id)?;
    ensure!(info.status == "finished:completed" && info.fab_name == "numpy-fedavg", "flwr ls --run-id shows {info:?}");
    Ok(fin)
}

/// `flwr ls`, `flwr log` and `flwr stop` on a federation with at least 2 SuperNodes:
/// a completed run and a running one are listed with the right statuses, the log shows the
/// ServerApp's output, stopping a finished run is refused, stopping the running one ends
/// it as `finished:stopped`.
pub fn ls_log_stop(fed: &Federation) -> Result<()> {
    let flwr = fed.flwr(EXAMPLE)?;

    let done = flwr.run(&["--run-config", "num-server-rounds=1"])?;
    flwr.wait_for_status(done, |s| s == "finished:completed", RUN_TIMEOUT)?;
    let fin = flwr.wait_for_final_line(done)?;
    ensure!(fin.contains("\"rounds\":1"), "unexpected FINAL line {fin}");
    let log = flwr.log_show(done)?;
    ensure!(log.contains("ROUND 1/1:"), "flwr log --show lacks the ServerApp's ROUND line:\n{log}");

    let long = flwr.run(&["--run-config", "num-server-rounds=50"])?;
    flwr.wait_for_status(long, |s| s == "running", RUN_TIMEOUT)?;

    let runs = flwr.ls()?;
    let status_of = |id: u64| {
        runs.iter()
            .find(|r| r.run_id == id)
            .map(|r| r.status.clone())
            .with_context(|| format!("flwr ls does not list run {id}: {runs:?}"))
    };
    ensure!(runs.len() == 2, "flwr ls lists {} runs: {runs:?}", runs.len());
    ensure!(status_of(done)? == "finished:completed", "flwr ls: {runs:?}");
    let st = status_of(long)?;
    ensure!(matches!(st.as_str(), "pending" | "starting" | "running"), "flwr ls shows the long run as {st}");
    ensure!(flwr.run_info(long)?.fab_name == "numpy-fedavg", "flwr ls --run-id shows the wrong app");

    if flwr.stop(done).is_ok() {
        bail!("flwr stop on a finished run succeeded; Flower refuses it (FAILED_PRECONDITION)");
    }
    flwr.stop(long)?;
    flwr.wait_for_status(long, |s| s == "finished:stopped", Duration::from_secs(30))?;
    ensure!(
        flwr.run_info(long)?.status == "finished:stopped",
        "flwr ls does not show the stopped run as finished:stopped"
    );
    // The stopped run's log is still readable.
    let log = flwr.log_show(long)?;
    ensure!(final_line(&log).is_none(), "a stopped run printed FINAL:\n{log}");
    Ok(())
}
