//! `fleet-replicas`: the `fleet-load` generator against Sepal SuperLinks on PostgreSQL
//! behind HAProxy, one replica and then two: requests/s, latency, and the CPU of the
//! replicas, PostgreSQL and HAProxy.

use std::time::Duration;

use anyhow::{Context, Result};
use sepal_tests::replicas::Replicas;
use sepal_tests::Isolation;

use super::fleet_load::generator::{self, Mode};
use super::fleet_load::{window, Window};
use crate::measure::{group_cpu, proc_usage};
use crate::report::fmt_duration;
use crate::{Opts, Report, Table};

/// Upper bound for one CreateNode or DeleteNode call.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// One replica count's figures.
struct Row {
    replicas: usize,
    saturated: Window,
    idle: Window,
    /// CPU of PostgreSQL and of HAProxy over both windows.
    postgres_cpu: Duration,
    haproxy_cpu: Duration,
}

/// Runs the scenario.
pub fn run(opts: &Opts) -> Result<Report> {
    let (nodes, length) = if opts.smoke { (5, Duration::from_secs(2)) } else { (1000, Duration::from_secs(15)) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fleet-replicas")
        .enable_all()
        .build()
        .context("building the generator's runtime")?;
    let mut rows = Vec::new();
    for replicas in [1, 2] {
        eprintln!("fleet-replicas: {nodes} nodes against {replicas} replica(s)");
        rows.push(measure(&rt, replicas, nodes, length).with_context(|| format!("{replicas} replica(s)"))?);
    }
    Ok(report(&rows, nodes, length))
}

fn measure(rt: &tokio::runtime::Runtime, n: usize, k: usize, length: Duration) -> Result<Row> {
    let dir = tempfile::tempdir()?;
    let replicas = Replicas::start(n, Isolation::Process, &[], dir.path())?;
    let fleet = replicas.balancer().fleet;
    let pids = replicas.replica_pids();
    let cpu = || pids.iter().try_fold(Duration::ZERO, |sum, &pid| Ok(sum + proc_usage(pid)?.cpu));
    let others = || -> Result<(Duration, Duration)> {
        Ok((group_cpu(replicas.postgres().pid())?, proc_usage(replicas.haproxy_pid())?.cpu))
    };
    let nodes = rt.block_on(generator::register(fleet, k, SETUP_TIMEOUT)).context("registering the nodes")?;
    let (pg_before, haproxy_before) = others()?;
    let timeout = Duration::from_secs(5);
    let (nodes, saturated) = window(rt, &cpu, nodes, Mode::Saturate, length, timeout)?;
    let (nodes, idle) = window(rt, &cpu, nodes, Mode::Idle, length, timeout)?;
    let (pg_after, haproxy_after) = others()?;
    rt.block_on(generator::unregister(nodes, SETUP_TIMEOUT));
    Ok(Row {
        replicas: n,
        saturated,
        idle,
        postgres_cpu: pg_after.saturating_sub(pg_before),
        haproxy_cpu: haproxy_after.saturating_sub(haproxy_before),
    })
}

fn report(rows: &[Row], nodes: usize, length: Duration) -> Report {
    let mut report = Report::new(
        "fleet-replicas",
        "Fleet API load on SuperLink replicas: PostgreSQL state, HAProxy in front",
        String::new(),
    );
    let mut table =
        Table::new(&["Replicas", "Window", "Requests/s", "p50", "p99", "Errors", "Replicas' CPU", "CPU / request"]);
    for r in rows {
        for (label, w) in [("saturated", &r.saturated), ("idle", &r.idle)] {
            table.row(vec![
                r.replicas.to_string(),
                label.to_string(),
                format!("{:.0}", w.requests_per_sec()),
                fmt_duration(w.quantile(0.5)),
                fmt_duration(w.quantile(0.99)),
                w.stats.error_count().to_string(),
                format!("{:.2} s", w.cpu.as_secs_f64()),
                fmt_duration(w.cpu_per_request()),
            ]);
        }
    }
    report.tables.push((format!("{nodes} simulated nodes, {} s per window:", length.as_secs()), table));
    let mut notes = vec![format!(
        "Same generator and windows as fleet-load (saturated: closed loop; idle: Flower 1.20's idle pacing), \
         through HAProxy 2.6 in TCP mode (round robin over connections) to `sepal superlink --database \
         postgresql://…` replicas on one PostgreSQL 15 (fsync off: the figures are the SuperLink's and the \
         database's CPU, not the disk's). Everything, the generator included, shares the machine's cores, so a \
         second replica adds capacity only where the cores are not already busy: on a 2-core machine this \
         shows the cost of the shared state, not the gain of a second machine."
    )];
    for r in rows {
        notes.push(format!(
            "{} replica(s): PostgreSQL used {:.2} s of CPU and HAProxy {:.2} s over both windows.",
            r.replicas,
            r.postgres_cpu.as_secs_f64(),
            r.haproxy_cpu.as_secs_f64()
        ));
        for (label, w) in [("saturated", &r.saturated), ("idle", &r.idle)] {
            for (kind, (n, first)) in &w.stats.errors {
                notes.push(format!("{} replica(s), {label}: {n} × {kind} (first: {first})", r.replicas));
            }
        }
    }
    report.notes = notes;
    report
}
