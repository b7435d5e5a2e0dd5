//! End-to-end FedAvg: the quickstart's logistic regression, N nodes, R rounds, from the
//! run's submission to `finished:completed`, on three stacks:
//!
//! - **Flower**: Python SuperLink and SuperNodes, the numpy twin of the quickstart
//!   (bench/apps/quickstart-numpy) in `flwr-serverapp` / `flwr-clientapp` subprocesses;
//! - **Sepal + Python apps**: Sepal's SuperLink and SuperNodes running the same numpy apps
//!   through the same Flower app processes;
//! - **Sepal + Wasm**: Sepal's SuperLink and SuperNodes running examples/quickstart's Wasm
//!   components in-process.
//!
//! The time is the SuperLink's own record of the run (`finished_at - pending_at` from the
//! Exec API), so `flwr run`'s start-up and the harness's polling are not in it. Each stack
//! first does a one-round warm-up run (nodes registered, FAB installed, files cached).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sepal_tests::wasm_apps::{quickstart, sepal_run};
use sepal_tests::{flwr, Federation, Impl};

use crate::measure::run_wall_time;
use crate::report::{fmt_duration, fmt_ratio};
use crate::{Opts, Report, Table};

/// Upper bound for one measured run (10 Python nodes, 5 rounds: about 2 minutes).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// The stacks compared, in table order (the first is the baseline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    Flower,
    SepalPython,
    SepalWasm,
}

impl Stack {
    const ALL: [Stack; 3] = [Stack::Flower, Stack::SepalPython, Stack::SepalWasm];

    fn label(self) -> &'static str {
        match self {
            Stack::Flower => "Flower 1.20 (Python everything)",
            Stack::SepalPython => "Sepal + Python apps",
            Stack::SepalWasm => "Sepal + Wasm apps",
        }
    }

    fn runtime(self) -> Impl {
        if self == Stack::Flower {
            Impl::Python
        } else {
            Impl::Sepal
        }
    }
}

/// One measured run.
struct Measured {
    wall: Duration,
    /// The ServerApp's last line about accuracy (shows both stacks learned the same thing).
    accuracy: String,
}

/// Runs the scenario.
pub fn run(opts: &Opts) -> Result<Report> {
    let (node_counts, rounds): (&[usize], u64) = if opts.smoke { (&[2], 1) } else { (&[2, 10], 5) };
    let numpy_app = crate::bench_app("quickstart-numpy");
    let wasm_app = quickstart();

    let mut table = Table::new(&["nodes", "stack", "wall time", "per round", "vs Flower", "final accuracy"]);
    for &nodes in node_counts {
        let mut baseline = None;
        for stack in Stack::ALL {
            eprintln!("e2e: {} with {nodes} nodes, {rounds} rounds", stack.label());
            let m = measure(stack, nodes, rounds, !opts.smoke, &numpy_app, &wasm_app)
                .with_context(|| format!("{} with {nodes} nodes", stack.label()))?;
            let secs = m.wall.as_secs_f64();
            let base = *baseline.get_or_insert(secs);
            table.row(vec![
                nodes.to_string(),
                stack.label().to_string(),
                fmt_duration(m.wall),
                fmt_duration(m.wall / rounds as u32),
                if stack == Stack::Flower { "1×".to_string() } else { fmt_ratio(base, secs) },
                m.accuracy,
            ]);
        }
    }
    let mut report = Report::new("e2e", "End-to-end FedAvg (quickstart logistic regression)", String::new());
    report.tables.push((format!("{rounds} rounds of train + evaluate, subprocess isolation."), table));
    let starts = if opts.smoke { 1 } else { COLD_STARTS };
    report.tables.push((
        format!(
            "Cold start, Sepal + Wasm apps: {COLD_ROUNDS} rounds, 2 nodes, on a federation started for the run \
             (fresh processes, nothing cached but the compiled components from the runs above); \
             {starts} federations."
        ),
        cold_starts(starts, &wasm_app)?,
    ));
    report.notes = vec![
        "Wall time: the SuperLink's `finished_at - pending_at` of the run (Exec `ListRuns`), after a \
         one-round warm-up run on the same federation."
            .into(),
        "\"vs Flower\": Flower's wall time divided by this stack's (higher is faster).".into(),
        "Flower's SuperNodes and its ServerApp process poll every 3 s; Sepal's SuperNodes hold their \
         PullMessages open at a Sepal SuperLink, and Wasm ServerApps are woken by replies."
            .into(),
    ];
    Ok(report)
}

/// Rounds of a cold-start run.
const COLD_ROUNDS: u64 = 2;

/// How many fresh federations the cold start is measured on.
const COLD_STARTS: usize = 5;

/// The quickstart submitted to fresh federations (`starts` of them), no warm-up: the
/// median, best and worst submission-to-finished time.
fn cold_starts(starts: usize, wasm: &Path) -> Result<Table> {
    let mut walls = crate::measure::Latencies::new();
    for i in 0..starts {
        eprintln!("e2e: cold start {}/{starts}", i + 1);
        let fed = Federation::builder().superlink(Impl::Sepal).supernode(Impl::Sepal).supernodes(2).start()?;
        let id = sepal_run(fed.exec_addr(), wasm, &format!("num-server-rounds={COLD_ROUNDS} min-nodes=2"))?;
        let flwr = fed.flwr_app(wasm)?;
        flwr.wait_for_status(id, |s| s == "finished:completed", RUN_TIMEOUT)?;
        walls.push(run_wall_time(&flwr::list_run(fed.exec_addr(), id, None)?)?);
    }
    let mut table = Table::new(&["runs", "median", "best", "worst"]);
    table.row(vec![
        starts.to_string(),
        fmt_duration(walls.quantile(0.5)),
        fmt_duration(walls.quantile(0.0)),
        fmt_duration(walls.quantile(1.0)),
    ]);
    Ok(table)
}

fn measure(stack: Stack, nodes: usize, rounds: u64, warm_up: bool, numpy: &Path, wasm: &Path) -> Result<Measured> {
    let fed = Federation::builder().superlink(stack.runtime()).supernode(stack.runtime()).supernodes(nodes).start()?;
    let flwr = fed.flwr_app(numpy)?;
    let submit = |rounds: u64| -> Result<u64> {
        let config = format!("num-server-rounds={rounds} min-nodes={nodes}");
        match stack {
            Stack::SepalWasm => sepal_run(fed.exec_addr(), wasm, &config),
            _ => flwr.run(&["--run-config", &config]),
        }
    };
    if warm_up {
        let id = submit(1)?;
        flwr.wait_for_status(id, |s| s == "finished:completed", RUN_TIMEOUT)?;
    }
    let id = submit(rounds)?;
    flwr.wait_for_status(id, |s| s == "finished:completed", RUN_TIMEOUT)?;
    let run = flwr::list_run(fed.exec_addr(), id, None)?;
    let wall = run_wall_time(&run)?;
    let log = flwr.log_show(id)?;
    let accuracy = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("accuracy ").map(|(_, rest)| rest.trim().to_string()))
        .with_context(|| format!("the ServerApp logged no accuracy:\n{log}"))?;
    Ok(Measured { wall, accuracy: accuracy.split(',').next().unwrap_or_default().to_string() })
}
