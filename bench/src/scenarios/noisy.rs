//! Noisy neighbours: the Wasm quickstart's wall time alone, and beside (or right after) a
//! hostile run on the same SuperLink and SuperNodes, measured side by side on one
//! federation (issue #11's rule: every other run finishes in about the time it would take
//! alone). The hostile runs are `tests/apps/hostile`'s quota attacks.

use std::time::Duration;

use anyhow::{bail, Result};
use sepal_tests::wasm_apps::{quickstart, wasm_app, SepalFederation};

use crate::measure::{run_wall_time, Latencies};
use crate::report::{fmt_duration, fmt_ratio};
use crate::{Opts, Report, Table};

/// Upper bound for one run.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// The good run: the quickstart, a few rounds.
const GOOD_RUN: &str = "num-server-rounds=3";

/// A hostile neighbour: a label, the hostile run config (`None`: alone), and whether the
/// good runs go beside it (`true`) or right after it ended (`false`).
type Neighbour = (String, Option<String>, bool);

/// The neighbours, in table order (smaller floods in smoke mode).
fn neighbours(smoke: bool) -> Vec<Neighbour> {
    let (pushes, flood) = if smoke { (20, 10_000) } else { (400, 100_000) };
    vec![
        ("none (alone)".into(), None, true),
        (
            "5 spinning messages per node (`spin-nodes:5`)".into(),
            Some("attack=\"spin-nodes:5\" reply-timeout=600.0".into()),
            true,
        ),
        (
            format!("pushes of 8 MiB to a node that does not exist (`push-nowhere:{pushes}:8`)"),
            Some(format!("attack=\"push-nowhere:{pushes}:8\"")),
            true,
        ),
        (
            format!("right after a run that left {flood} instructions and ended (`push-flood:{flood}:10000`)"),
            Some(format!("attack=\"push-flood:{flood}:10000\"")),
            false,
        ),
    ]
}

/// Runs the scenario.
pub fn run(opts: &Opts) -> Result<Report> {
    let runs = if opts.smoke { 1 } else { 5 };
    // Spinning messages end at the nodes' 20 s limit, so the federation stays usable.
    let fed = SepalFederation::start(2, &[], &["--wasm-time-limit", "20"])?;
    good_run(&fed)?; // warm-up: nodes registered, components compiled
    let mut table = Table::new(&["neighbour", "quickstart runs", "median", "worst", "vs alone (median)"]);
    let mut alone = None;
    for (label, attack, beside) in neighbours(opts.smoke) {
        eprintln!("noisy: the quickstart beside {label}");
        let hostile = attack.map(|config| fed.submit(&wasm_app("hostile"), &config)).transpose()?;
        if let (Some(id), false) = (hostile, beside) {
            finish(&fed, id)?;
        }
        let mut walls = Latencies::new();
        for _ in 0..runs {
            walls.push(good_run(&fed)?);
        }
        if let Some(id) = hostile.filter(|_| beside) {
            stop(&fed, id)?;
        }
        let median = walls.quantile(0.5);
        let base = *alone.get_or_insert(median.as_secs_f64());
        table.row(vec![
            label,
            runs.to_string(),
            fmt_duration(median),
            fmt_duration(walls.quantile(1.0)),
            fmt_ratio(median.as_secs_f64(), base),
        ]);
    }
    let mut report = Report::new("noisy", "Noisy neighbours", String::new());
    report.tables.push((
        "The Wasm quickstart (3 rounds, 2 nodes) on one Sepal federation, alone and beside a hostile Wasm run; \
         default limits, SuperNodes with `--wasm-time-limit 20`."
            .into(),
        table,
    ));
    report.notes = vec![
        "Wall time: the SuperLink's `finished_at - pending_at` of each quickstart run; the hostile run is \
         submitted first and stopped after the quickstart runs (the flood: the quickstart runs after it ended)."
            .into(),
        "\"vs alone\": the median beside the neighbour divided by the median alone (1× is no slowdown).".into(),
    ];
    Ok(report)
}

/// One quickstart run: its wall time.
fn good_run(fed: &SepalFederation) -> Result<Duration> {
    let id = fed.submit(&quickstart(), GOOD_RUN)?;
    finish(fed, id)?;
    let exec = fed.exec_addr();
    run_wall_time(&sepal_tests::flwr::list_run(exec, id, None)?)
}

/// Waits for a run to complete.
fn finish(fed: &SepalFederation, run_id: u64) -> Result<()> {
    let status = fed.wait_finished(run_id, RUN_TIMEOUT)?;
    if status.status != "finished:completed" {
        bail!("run {run_id} ended {status:?}:\n{}", fed.log_show(run_id)?);
    }
    Ok(())
}

/// Stops a run that may still be running.
fn stop(fed: &SepalFederation, run_id: u64) -> Result<()> {
    if !fed.status(run_id)?.is_finished() {
        fed.cli(&["stop", &run_id.to_string(), "--superlink", &fed.exec_addr().to_string()])?;
    }
    Ok(())
}
