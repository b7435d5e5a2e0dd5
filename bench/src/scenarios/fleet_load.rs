//! `fleet-load`: K simulated SuperNodes heartbeating and pulling against Python Flower's
//! SuperLink and Sepal's, one after the other with the same load: requests/s, latency
//! percentiles, the SuperLink's CPU time and peak RSS.
//!
//! The generator ([`generator`]) runs in this process on its own tokio runtime; each
//! SuperLink runs alone (no SuperNodes, no runs), started as `flower-superlink --insecure`
//! or `sepal superlink --insecure`.

pub(crate) mod generator;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use generator::Mode;
use sepal_tests::{Federation, Impl};

use crate::measure::proc_usage;
use crate::report::{fmt_bytes, fmt_duration, fmt_ratio};
use crate::{Opts, Report, Table};

/// Load sizes: node counts, the load window, the per-request timeout.
struct Plan {
    nodes: &'static [usize],
    /// The largest node count Flower's SuperLink is measured at: past it, a Python
    /// SuperLink cannot keep up with even an idle fleet (it serves ~450 requests/s; 10,000
    /// idle nodes send ~3,800/s), so its rows would only time out.
    python_max: usize,
    window: Duration,
    request_timeout: Duration,
}

impl Plan {
    fn for_opts(opts: &Opts) -> Plan {
        if opts.smoke {
            Plan { nodes: &[5], python_max: 5, window: Duration::from_secs(2), request_timeout: Duration::from_secs(5) }
        } else {
            Plan {
                nodes: &[100, 1000, 10_000],
                python_max: 1000,
                window: Duration::from_secs(15),
                request_timeout: Duration::from_secs(5),
            }
        }
    }
}

/// Upper bound for one CreateNode or DeleteNode call.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors this process needs besides one socket per node (and the SuperLink,
/// which inherits the limit, as many).
const FD_MARGIN: u64 = 256;

/// One load window's figures.
pub(crate) struct Window {
    /// The window as it actually ran (from its start to the last node's stop).
    elapsed: Duration,
    pub(crate) stats: generator::Stats,
    /// The SuperLink's CPU time during the window.
    pub(crate) cpu: Duration,
    /// This process's (the generator's) CPU time during the window.
    generator_cpu: Duration,
}

impl Window {
    pub(crate) fn requests_per_sec(&self) -> f64 {
        self.stats.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// SuperLink CPU time per successful request.
    pub(crate) fn cpu_per_request(&self) -> Duration {
        if self.stats.ok == 0 {
            return Duration::ZERO;
        }
        self.cpu / self.stats.ok as u32
    }

    /// SuperLink CPU time as a share of one core over the window, in percent.
    fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn quantile(&self, q: f64) -> Duration {
        self.stats.latencies.clone().quantile(q)
    }
}

/// One (K, implementation) measurement.
struct Row {
    nodes: usize,
    imp: Impl,
    saturated: Window,
    idle: Window,
    /// The SuperLink's peak RSS, read after both windows.
    peak_rss: u64,
    /// DeleteNode calls that failed after the windows.
    unregister_failed: usize,
}

/// Runs the scenario.
pub fn run(opts: &Opts) -> Result<Report> {
    let plan = Plan::for_opts(opts);
    let max_nodes = plan.nodes.iter().copied().max().unwrap_or(0) as u64;
    let fds = open_files_limit()?;
    if fds < max_nodes + FD_MARGIN {
        bail!(
            "the open-files limit ({fds}) is too low for {max_nodes} nodes: raise it (ulimit -n) to at least {}",
            max_nodes + FD_MARGIN
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fleet-load")
        .enable_all()
        .build()
        .context("building the generator's runtime")?;
    let mut rows = Vec::new();
    for &k in plan.nodes {
        for imp in [Impl::Python, Impl::Sepal].into_iter().filter(|imp| *imp == Impl::Sepal || k <= plan.python_max) {
            eprintln!("fleet-load: {k} nodes against the {} SuperLink", impl_name(imp));
            let row =
                measure(&rt, imp, k, &plan).with_context(|| format!("{k} nodes, {} SuperLink", impl_name(imp)))?;
            rows.push(row);
        }
    }
    Ok(report(&rows, &plan))
}

/// Starts the SuperLink alone, registers `k` nodes, runs the saturating window then the
/// idle one, unregisters.
fn measure(rt: &tokio::runtime::Runtime, imp: Impl, k: usize, plan: &Plan) -> Result<Row> {
    let mut fed = Federation::builder().superlink(imp).supernodes(0).start()?;
    let addr = fed.fleet_addr();
    let pid = fed.superlink_proc().context("the SuperLink is not running")?.pid();
    let nodes = rt.block_on(generator::register(addr, k, SETUP_TIMEOUT)).context("registering the nodes")?;
    let cpu = || Ok(proc_usage(pid)?.cpu);
    let (nodes, saturated) = window(rt, &cpu, nodes, Mode::Saturate, plan.window, plan.request_timeout)?;
    let (nodes, idle) = window(rt, &cpu, nodes, Mode::Idle, plan.window, plan.request_timeout)?;
    let peak_rss = proc_usage(pid)?.peak_rss;
    let unregister_failed = rt.block_on(generator::unregister(nodes, SETUP_TIMEOUT));
    if let Some(p) = fed.superlink_proc() {
        p.ensure_running()?;
    }
    Ok(Row { nodes: k, imp, saturated, idle, peak_rss, unregister_failed })
}

/// One load window in `mode` of `length`, with the SuperLink's CPU time (as `cpu` reads
/// it) and the generator's.
pub(crate) fn window(
    rt: &tokio::runtime::Runtime,
    cpu: &dyn Fn() -> Result<Duration>,
    nodes: Vec<generator::Node>,
    mode: Mode,
    length: Duration,
    request_timeout: Duration,
) -> Result<(Vec<generator::Node>, Window)> {
    let (before, gen_before) = (cpu()?, proc_usage(std::process::id())?);
    let started = Instant::now();
    let (nodes, stats) = rt.block_on(generator::load(nodes, mode, length, request_timeout));
    let elapsed = started.elapsed();
    let (after, gen_after) = (cpu()?, proc_usage(std::process::id())?);
    let w = Window {
        elapsed,
        stats,
        cpu: after.saturating_sub(before),
        generator_cpu: gen_after.cpu.saturating_sub(gen_before.cpu),
    };
    Ok((nodes, w))
}

fn impl_name(imp: Impl) -> &'static str {
    match imp {
        Impl::Python => "Flower",
        Impl::Sepal => "Sepal",
    }
}

/// The soft `RLIMIT_NOFILE` of this process (from `/proc/self/limits`).
fn open_files_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    parse_open_files(&limits).context("no 'Max open files' line in /proc/self/limits")
}

/// The soft limit in a `/proc/<pid>/limits` text (`unlimited` as `u64::MAX`).
fn parse_open_files(limits: &str) -> Option<u64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    let soft = rest.split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

fn report(rows: &[Row], plan: &Plan) -> Report {
    let mut report = Report::new("fleet-load", "Fleet API load: simulated nodes against a SuperLink", String::new());
    let secs = plan.window.as_secs();
    report.tables.push((
        format!(
            "Saturated (closed loop, {secs} s): each node alternates SendNodeHeartbeat and an empty PullMessages \
             as fast as it is answered."
        ),
        window_table(rows, |r| &r.saturated, true),
    ));
    report.tables.push((
        format!(
            "Idle fleet ({secs} s): each node paces itself like an idle Flower 1.20 SuperNode (an empty pull, then \
             {} s; a heartbeat every {} s).",
            generator::IDLE_PULL_PAUSE.as_secs(),
            generator::IDLE_HEARTBEAT_EVERY.as_secs()
        ),
        window_table(rows, |r| &r.idle, false),
    ));
    report.tables.push(("Sepal vs Flower (how many times better Sepal is):".to_string(), ratios(rows)));
    report.notes = notes(rows, plan);
    report
}

fn window_table(rows: &[Row], pick: impl Fn(&Row) -> &Window, with_rss: bool) -> Table {
    let mut header = vec!["Nodes", "SuperLink", "Requests/s", "p50", "p99", "Errors", "SuperLink CPU", "CPU / request"];
    if with_rss {
        header.push("Peak RSS");
    }
    header.push("Generator CPU");
    let mut table = Table::new(&header);
    for r in rows {
        let w = pick(r);
        let mut cells = vec![
            r.nodes.to_string(),
            impl_name(r.imp).to_string(),
            format!("{:.0}", w.requests_per_sec()),
            fmt_duration(w.quantile(0.5)),
            fmt_duration(w.quantile(0.99)),
            w.stats.error_count().to_string(),
            format!("{:.2} s ({:.0}% of a core)", w.cpu.as_secs_f64(), w.cpu_percent()),
            fmt_duration(w.cpu_per_request()),
        ];
        if with_rss {
            cells.push(fmt_bytes(r.peak_rss));
        }
        cells.push(format!("{:.2} s", w.generator_cpu.as_secs_f64()));
        table.row(cells);
    }
    table
}

fn ratios(rows: &[Row]) -> Table {
    let mut t = Table::new(&[
        "Nodes",
        "Saturated requests/s",
        "Saturated p99",
        "Saturated CPU / request",
        "Idle p99",
        "Idle CPU",
        "Peak RSS",
    ]);
    let find = |k, imp| rows.iter().find(|r| r.nodes == k && r.imp == imp);
    let mut ks: Vec<usize> = rows.iter().map(|r| r.nodes).collect();
    ks.dedup();
    for k in ks {
        let (Some(f), Some(s)) = (find(k, Impl::Python), find(k, Impl::Sepal)) else { continue };
        let p99 = |w: &Window| w.quantile(0.99).as_secs_f64();
        t.row(vec![
            k.to_string(),
            // Higher is better for throughput, so Sepal's is the numerator.
            fmt_ratio(s.saturated.requests_per_sec(), f.saturated.requests_per_sec()),
            fmt_ratio(p99(&f.saturated), p99(&s.saturated)),
            fmt_ratio(f.saturated.cpu_per_request().as_secs_f64(), s.saturated.cpu_per_request().as_secs_f64()),
            fmt_ratio(p99(&f.idle), p99(&s.idle)),
            fmt_ratio(f.idle.cpu.as_secs_f64(), s.idle.cpu.as_secs_f64()),
            fmt_ratio(f.peak_rss as f64, s.peak_rss as f64),
        ]);
    }
    t
}

fn notes(rows: &[Row], plan: &Plan) -> Vec<String> {
    let mut notes = vec![
        "Each SuperLink runs alone (`flower-superlink --insecure` / `sepal superlink --insecure`, in-memory \
         state, no SuperNodes, no runs). K simulated nodes in the benchmark process (Rust, tonic, its own \
         2-thread tokio runtime) each open their own HTTP/2 connection, make their own P-384 key and register \
         with CreateNode (heartbeat interval 30 s, as Flower 1.20's SuperNode). Then come two windows with the \
         same registered nodes, saturated first, then idle; afterwards each node sends DeleteNode. Nothing is \
         ever queued, so every pull takes the empty path idle nodes take all day."
            .to_string(),
        format!(
            "Saturated: each node sends its next request as soon as the previous one is answered, so the figures \
             are the SuperLink's maximum throughput on what the cores leave it, and its latency under saturation \
             (latency grows with K because K requests queue at once). Idle: each node waits 3 s after each pull \
             and sends a heartbeat every 20 s, as an idle Flower 1.20 SuperNode does (nodes start evenly spread \
             over those periods), about K × 0.38 requests/s: latency without queueing and the CPU an idle fleet \
             costs. Each window lasts {} s; requests still in flight at its end are dropped and not counted. A \
             request unanswered after {} s counts as an error (timeout).",
            plan.window.as_secs(),
            plan.request_timeout.as_secs()
        ),
        "Every request carries the node's public key, a timestamp and its ECDSA P-384 signature. The generator \
         signs as a Sepal SuperNode does: one signed timestamp re-sent for 30 s (`sepal_wire::auth::RESIGN_AFTER`; the \
         first for a random part of that, so the nodes, registered together, do not re-sign together), so \
         Sepal's SuperLink verifies a node's signature about once per 30 s (the P-384 check costs about 0.7 ms \
         of CPU; 10,000 nodes make about 330 a second) and answers the other requests from its cache, while Flower's SuperLink verifies every request. A Python \
         SuperNode signs every request afresh, so against Sepal each of its requests costs a full verification \
         (about 0.7 ms of CPU): on 2 cores that bounds a fleet of idle Python SuperNodes to a few thousand."
            .to_string(),
        "SuperLink CPU is user + system time of the SuperLink process during the window (from /proc); CPU / \
         request divides it by the successful requests. Peak RSS is the process's VmHWM after both windows \
         (K registered nodes and connections included). The generator runs on the same 2 cores as the \
         SuperLink (Generator CPU: this process's CPU time during the window), so the SuperLink gets at most \
         what the generator leaves; Flower's SuperLink, a Python process, uses at most about one core."
            .to_string(),
        "Sepal answers a Flower-style pull at once; its SuperNode's held (long-poll) pull is not used here."
            .to_string(),
        format!(
            "Flower's SuperLink is measured up to {} nodes, the largest count here that it sustains: it answers \
             at most about 900 requests/s even saturated, and 10,000 idle nodes send about 3,800/s, so its rows \
             there would only time out.",
            plan.python_max
        ),
    ];
    for r in rows {
        for (label, w) in [("saturated", &r.saturated), ("idle", &r.idle)] {
            for (kind, (n, first)) in &w.stats.errors {
                notes.push(format!("{} nodes, {}, {label}: {n} × {kind} (first: {first})", r.nodes, impl_name(r.imp)));
            }
        }
        if r.unregister_failed > 0 {
            notes.push(format!(
                "{} nodes, {}: {} DeleteNode calls failed after the windows",
                r.nodes,
                impl_name(r.imp),
                r.unregister_failed
            ));
        }
    }
    notes.extend(not_ahead(rows));
    notes
}

/// Plain statements of where Sepal is not ahead.
fn not_ahead(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for s in rows.iter().filter(|r| r.imp == Impl::Sepal) {
        let Some(f) = rows.iter().find(|r| r.nodes == s.nodes && r.imp == Impl::Python) else { continue };
        let (fs, ss) = (&f.saturated, &s.saturated);
        let checks = [
            ("saturated requests/s", ss.requests_per_sec() <= fs.requests_per_sec()),
            ("saturated p99 latency", ss.quantile(0.99) >= fs.quantile(0.99)),
            ("saturated CPU per request", ss.cpu_per_request() >= fs.cpu_per_request()),
            ("idle p99 latency", s.idle.quantile(0.99) >= f.idle.quantile(0.99)),
            ("idle CPU", s.idle.cpu >= f.idle.cpu),
            ("peak RSS", s.peak_rss >= f.peak_rss),
            (
                "errors",
                ss.stats.error_count() + s.idle.stats.error_count()
                    > fs.stats.error_count() + f.idle.stats.error_count(),
            ),
        ];
        let behind: Vec<&str> = checks.iter().filter(|(_, b)| *b).map(|(what, _)| *what).collect();
        if !behind.is_empty() {
            out.push(format!("With {} nodes Sepal is not ahead of Flower on: {}.", s.nodes, behind.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_soft_limit_is_parsed() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(parse_open_files("Max open files  unlimited unlimited files"), Some(u64::MAX));
        assert_eq!(parse_open_files("Max processes 10 10"), None);
        assert!(open_files_limit().unwrap() > 0);
    }
}
