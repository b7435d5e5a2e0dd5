//! `dispatch`: how long a SuperNode takes from an instruction landing to its reply being
//! pushed, for a trivial ClientApp, in each way a SuperNode can run one.
//!
//! Every case is one Sepal SuperLink and one SuperNode with an instrumented Fleet proxy
//! ([`proxy`]) in between; a ServerApp sends `M` tiny `query` messages one at a time and
//! the ClientApp answers each with a tiny record. The proxy measures every SuperNode the
//! same way, at the wire: from the PullMessages response carrying the instruction leaving
//! towards the SuperNode to the PushMessages request carrying the reply arriving. That
//! window holds the SuperNode's object pulls, its delivery confirmation, starting or
//! reaching the ClientApp, the app itself, and the push.

mod proxy;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use sepal_tests::{flwr, wasm_apps, Federation, Impl, Isolation};

use crate::measure::Latencies;
use crate::report::{fmt_duration, fmt_ratio};
use crate::{Opts, Report, Table};
use proxy::{Dispatch, FleetProxy};

/// Instructions per case in a full run.
const FULL_MESSAGES: usize = 30;
/// Instructions per case in a smoke run.
const SMOKE_MESSAGES: usize = 2;
/// Upper bound for a case's run, beyond a per-message allowance.
const RUN_BASE_TIMEOUT: Duration = Duration::from_secs(90);
/// Allowance per message (a Python ClientApp process start is 1-3 s; Flower's SuperNode
/// also sleeps 3 s after an empty pull).
const PER_MESSAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Which app a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    /// `bench/apps/dispatch-py`, submitted with `flwr run`.
    Python,
    /// `bench/apps/dispatch-wasm`, submitted with `sepal run`.
    Wasm,
}

/// One SuperNode configuration.
#[derive(Clone, Copy, Debug)]
struct Case {
    supernode: Impl,
    isolation: Isolation,
    app: App,
    /// How the ClientApp runs, for the table.
    how: &'static str,
}

/// Flower's own SuperNode first: it is the baseline of the ratios.
const CASES: [Case; 5] = [
    Case {
        supernode: Impl::Python,
        isolation: Isolation::Subprocess,
        app: App::Python,
        how: "Python, `flwr-clientapp` process per message (subprocess isolation)",
    },
    Case {
        supernode: Impl::Sepal,
        isolation: Isolation::Subprocess,
        app: App::Wasm,
        how: "Wasm, in-process sandbox (subprocess isolation)",
    },
    Case {
        supernode: Impl::Sepal,
        isolation: Isolation::Subprocess,
        app: App::Python,
        how: "Python, `flwr-clientapp` process per message (subprocess isolation)",
    },
    Case {
        supernode: Impl::Sepal,
        isolation: Isolation::Process,
        app: App::Python,
        how: "Python, long-lived `flwr-clientapp` (process isolation)",
    },
    Case {
        supernode: Impl::Sepal,
        isolation: Isolation::Process,
        app: App::Wasm,
        how: "Wasm, long-lived `sepal clientapp` (process isolation)",
    },
];

/// Runs the scenario.
pub fn run(opts: &Opts) -> Result<Report> {
    let messages = if opts.smoke { SMOKE_MESSAGES } else { FULL_MESSAGES };
    let warmup = usize::from(messages > 2);
    let apps = Apps::build()?;

    let mut results = Vec::new();
    for case in CASES {
        eprintln!("dispatch: {} SuperNode, {} ({messages} messages)", impl_name(case.supernode), case.how);
        let started = Instant::now();
        let result = run_case(case, &apps, messages);
        match &result {
            Ok(d) => {
                let ms: Vec<String> = d.iter().map(|d| format!("{:.0}", d.latency.as_secs_f64() * 1e3)).collect();
                eprintln!(
                    "dispatch: {} dispatches in {:.1} s; ms: {}",
                    d.len(),
                    started.elapsed().as_secs_f64(),
                    ms.join(" ")
                );
            }
            Err(e) => eprintln!("dispatch: the case failed: {e:#}"),
        }
        results.push((case, result));
    }
    // A smoke run checks that every case works; a full run reports a failed case in its
    // table and keeps the others' figures.
    if opts.smoke {
        if let Some((case, Err(e))) = results.iter().find(|(_, r)| r.is_err()) {
            bail!("{} SuperNode, {}: {e:#}", impl_name(case.supernode), case.how);
        }
    }
    Ok(report(&results, messages, warmup))
}

/// The two app directories, ready to submit.
struct Apps {
    python: PathBuf,
    wasm: PathBuf,
}

impl Apps {
    fn build() -> Result<Apps> {
        let python = crate::bench_app("dispatch-py");
        if !python.join("pyproject.toml").is_file() {
            bail!("{} is missing", python.display());
        }
        // Built with the other Wasm guests by sepal-guests (bench/apps/dispatch-wasm's
        // pyproject.toml, bench/guests' dispatch components).
        let wasm = wasm_apps::wasm_app("dispatch");
        Ok(Apps { python, wasm })
    }
}

/// Runs one case to completion; returns every dispatch the proxy saw, in landing order.
fn run_case(case: Case, apps: &Apps, messages: usize) -> Result<Vec<Dispatch>> {
    let superlink_fleet = sepal_tests::free_addr();
    let proxy = FleetProxy::start(superlink_fleet)?;
    // In process isolation the long-lived app processes are Python's for a Python app
    // (`flwr-serverapp`, `flwr-clientapp`) and Sepal's for a Wasm app.
    let apps_impl = match case.app {
        App::Python => Impl::Python,
        App::Wasm => Impl::Sepal,
    };
    let fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(case.supernode)
        .isolation(case.isolation)
        .apps(apps_impl)
        .supernodes(1)
        .fleet_via(proxy.addr(), superlink_fleet)
        .start()?;

    let run_config = format!("num-messages={messages}");
    let run_id = match case.app {
        App::Python => fed.flwr_app(&apps.python)?.run(&["--run-config", &run_config])?,
        App::Wasm => wasm_apps::sepal_run(fed.exec_addr(), &apps.wasm, &run_config)?,
    };
    let timeout = RUN_BASE_TIMEOUT + PER_MESSAGE_TIMEOUT * messages as u32;
    // On failure the federation's guard prints the tail of every process log.
    let status = wait_finished(&fed, run_id, timeout)?;
    if status != "finished:completed" {
        let details = flwr::list_run(fed.exec_addr(), run_id, None)?.status.unwrap_or_default().details;
        bail!("run {run_id} ended as {status}: {details}");
    }
    let dispatches = proxy.dispatches();
    if dispatches.len() != messages {
        bail!("the proxy saw {} dispatches of the {messages} messages sent", dispatches.len());
    }
    Ok(dispatches)
}

/// Polls the run's status (Exec `ListRuns`) until it is finished; fails after `timeout`.
fn wait_finished(fed: &Federation, run_id: u64, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match flwr::exec_status(fed.exec_addr(), run_id) {
            Ok(s) if s.starts_with("finished") => return Ok(s),
            Ok(s) => s,
            Err(e) => format!("error: {e:#}"),
        };
        if Instant::now() > deadline {
            bail!("run {run_id}: still {last} after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Latency figures of one case, the first `warmup` dispatches left out.
#[derive(Clone, Debug)]
struct Summary {
    first: Duration,
    measured: usize,
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn summarize(dispatches: &[Dispatch], warmup: usize) -> Option<Summary> {
    let first = dispatches.first()?.latency;
    let mut lat = Latencies::new();
    for d in dispatches.iter().skip(warmup) {
        lat.push(d.latency);
    }
    if lat.is_empty() {
        return None;
    }
    Some(Summary { first, measured: lat.len(), p50: lat.quantile(0.5), p99: lat.quantile(0.99), mean: lat.mean() })
}

fn impl_name(i: Impl) -> &'static str {
    match i {
        Impl::Python => "Flower",
        Impl::Sepal => "Sepal",
    }
}

fn report(results: &[(Case, Result<Vec<Dispatch>>)], messages: usize, warmup: usize) -> Report {
    let mut report = Report::new("dispatch", "SuperNode dispatch latency", String::new());
    let summaries: Vec<Option<Summary>> =
        results.iter().map(|(_, r)| r.as_ref().ok().and_then(|d| summarize(d, warmup))).collect();
    let baseline = summaries[0].as_ref().map_or(0.0, |s| s.p50.as_secs_f64());

    let mut table =
        Table::new(&["SuperNode", "ClientApp", "messages", "p50", "p99", "mean", "1st message", "vs Flower (p50)"]);
    for ((case, result), summary) in results.iter().zip(&summaries) {
        let mut row = vec![impl_name(case.supernode).to_string(), case.how.to_string()];
        match (result, summary) {
            (Ok(_), Some(s)) => row.extend([
                s.measured.to_string(),
                fmt_duration(s.p50),
                fmt_duration(s.p99),
                fmt_duration(s.mean),
                fmt_duration(s.first),
                fmt_ratio(baseline, s.p50.as_secs_f64()),
            ]),
            _ => row.extend(["failed".to_string(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into()]),
        }
        table.row(row);
    }
    report.tables.push((
        format!(
            "One SuperNode, a Sepal SuperLink, {messages} tiny `query` messages sent one at a time; \
             latency from the instruction landing at the SuperNode to its reply being pushed."
        ),
        table,
    ));
    notes(&mut report, results, &summaries, warmup);
    report
}

fn notes(report: &mut Report, results: &[(Case, Result<Vec<Dispatch>>)], summaries: &[Option<Summary>], warmup: usize) {
    report.notes.push(
        "Measured at the wire, the same way for every SuperNode: an instrumented Fleet proxy between the \
         SuperNode and the SuperLink timestamps the PullMessages response carrying an instruction as it leaves \
         towards the SuperNode (start) and the PushMessages request carrying the reply (its \
         `reply_to_message_id`) as it arrives (stop). The window holds the SuperNode's PullObject and \
         ConfirmMessageReceived calls, starting or reaching the ClientApp, the app, and the push; each Fleet \
         call in it crosses the proxy's extra loopback hop, which costs every case alike."
            .to_string(),
    );
    if warmup > 0 {
        report.notes.push(
            "The first message of each case is left out of p50/p99/mean as warm-up (it also fetches the run \
             and the FAB, and installs or compiles the app); its latency is the `1st message` column. \
             `messages` is the number of measured messages."
                .to_string(),
        );
    } else {
        report.notes.push("With only 2 messages no warm-up is left out; `1st message` is included.".to_string());
    }
    report.notes.push(
        "Flower's SuperNode (1.20.0, subprocess isolation) is the baseline of the ratios: `vs Flower` is how \
         many times shorter the median is than Flower's. The ServerApp polls for each reply every 50 ms (the \
         Wasm one waits in the host), which only shortens the gaps between messages, not the measured window."
            .to_string(),
    );
    report.notes.push(
        "Process isolation runs the SuperLink in process isolation too, with a long-lived app process beside \
         each component: Flower's `flwr-serverapp`/`flwr-clientapp` for the Python app, `sepal serverapp`/\
         `sepal clientapp` for the Wasm app. `flwr-clientapp` polls the SuperNode's ClientAppIo for work \
         every 1 s, so its poll interval is part of the measured latency; `sepal clientapp` asks in a poll \
         that a Sepal SuperNode holds until an instruction is offered."
            .to_string(),
    );
    report.notes.push(
        "With a Python ClientApp in subprocess isolation both SuperNodes start one `flwr-clientapp` process per \
         message (`--run-once`, or Sepal's `--token`), and that start (a Python interpreter importing `flwr`) is \
         most of the window, so the two SuperNodes are close there."
            .to_string(),
    );
    for ((case, result), summary) in results.iter().zip(summaries) {
        if let Err(e) = result {
            report.notes.push(format!(
                "FAILED: {} SuperNode, {}: {}",
                impl_name(case.supernode),
                case.how,
                first_line(&format!("{e:#}"))
            ));
        } else if summary.is_none() {
            report.notes.push(format!(
                "FAILED: {} SuperNode, {}: no dispatch measured",
                impl_name(case.supernode),
                case.how
            ));
        }
    }
    let base = summaries[0].as_ref().map(|s| s.p50);
    for ((case, _), summary) in results.iter().zip(summaries).skip(1) {
        if let (Some(base), Some(s)) = (base, summary) {
            if s.p50 >= base {
                report.notes.push(format!(
                    "Sepal is not ahead here: {} has a median of {} against Flower's {}.",
                    case.how,
                    fmt_duration(s.p50),
                    fmt_duration(base)
                ));
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatches(ms: &[u64]) -> Vec<Dispatch> {
        let t0 = Instant::now();
        ms.iter()
            .enumerate()
            .map(|(i, &ms)| Dispatch {
                message_id: i.to_string(),
                landed: t0 + Duration::from_secs(i as u64),
                latency: Duration::from_millis(ms),
            })
            .collect()
    }

    #[test]
    fn the_warmup_message_is_reported_apart() {
        let s = summarize(&dispatches(&[900, 10, 30, 20]), 1).unwrap();
        assert_eq!(s.first, Duration::from_millis(900));
        assert_eq!(s.measured, 3);
        assert_eq!(s.p50, Duration::from_millis(20));
        assert_eq!(s.p99, Duration::from_millis(30));
        assert_eq!(s.mean, Duration::from_millis(20));
        assert!(summarize(&dispatches(&[5]), 1).is_none());
        assert_eq!(summarize(&dispatches(&[5, 7]), 0).unwrap().measured, 2);
    }
}
