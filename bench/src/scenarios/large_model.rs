//! Large model: one ArrayRecord of `size-mib` MiB (1 GiB in the full run) sent to 2 nodes
//! and back through the SuperLink, on Python Flower and on Sepal.
//!
//! Each implementation gets a fresh federation (SuperLink + 2 SuperNodes, subprocess
//! isolation) running the same Python app (`bench/apps/large-model`, spawned as
//! `flwr-serverapp` / `flwr-clientapp` by either implementation); Sepal then runs the same
//! job as Wasm apps (`bench/apps/large-model-wasm`, `bench/guests/large-model-*`), run
//! inside its daemons, and once more in `sepal serverapp` / `sepal clientapp` processes
//! beside them (process isolation). The figures are the run's wall time from the SuperLink's own
//! timestamps, the ServerApp's round-trip time, and CPU time and peak RSS of the SuperLink
//! and SuperNode daemons (not of Python app processes, which are the same code in both).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use sepal_tests::wasm_apps;
use sepal_tests::{flwr::list_run, Federation, Impl, Isolation};

use crate::measure::{proc_usage, run_wall_time, ProcUsage};
use crate::report::{fmt_bytes, fmt_duration, fmt_ratio};
use crate::{Opts, Report, Table};

/// Array size of the smoke run and of the full run (MiB).
const SMOKE_MIB: u64 = 8;
const FULL_MIB: u64 = 1024;

/// Bound on the run (submit to finished) in smoke and full mode.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(120);
const FULL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long the ServerApp's `LARGE` line may take to show in `flwr log` after the run ended.
const LOG_TIMEOUT: Duration = Duration::from_secs(30);

/// The Wasm apps' memory limit (`--wasm-memory-mb`): a 1 GiB array needs room for about
/// three copies in the ClientApp (the instruction's bytes, the array, the reply's bytes).
const WASM_MEMORY_MB: &str = "3584";

/// What one implementation's run measured.
#[derive(Clone, Debug)]
struct Measured {
    /// SuperLink timestamps: `pending_at` (StartRun) to `finished_at`.
    wall: Duration,
    /// The ServerApp's own `send_and_receive` time.
    roundtrip: Duration,
    superlink: ProcUsage,
    /// One per SuperNode.
    supernodes: Vec<ProcUsage>,
}

impl Measured {
    fn supernode_peak_rss(&self) -> u64 {
        self.supernodes.iter().map(|u| u.peak_rss).max().unwrap_or(0)
    }
    fn supernode_cpu(&self) -> Duration {
        self.supernodes.iter().map(|u| u.cpu).sum()
    }
}

/// Runs the scenario.
pub fn run(opts: &Opts) -> Result<Report> {
    let (size_mib, timeout) = if opts.smoke { (SMOKE_MIB, SMOKE_TIMEOUT) } else { (FULL_MIB, FULL_TIMEOUT) };
    let wasm = measure(Impl::Sepal, Apps::Wasm, size_mib, timeout).context("Sepal run with the Wasm apps")?;
    let wasm_apart =
        measure(Impl::Sepal, Apps::WasmProcesses, size_mib, timeout).context("Sepal run with Wasm app processes")?;
    let flower = measure(Impl::Python, Apps::Python, size_mib, timeout).context("Python Flower run")?;
    let sepal = measure(Impl::Sepal, Apps::Python, size_mib, timeout).context("Sepal run")?;
    let rows = [
        ("Flower 1.20.0", &flower),
        ("Sepal, Python apps", &sepal),
        ("Sepal, Wasm apps", &wasm),
        ("Sepal, Wasm app processes", &wasm_apart),
    ];

    let mut report = Report::new(
        "large-model",
        &format!("Large model: a {} ArrayRecord to 2 nodes and back", fmt_bytes(size_mib << 20)),
        String::new(),
    );
    report.tables.push((String::new(), table(&rows)));
    report.tables.push((
        "Against the payload (the array's size; four copies cross the SuperLink: two down, two up):".into(),
        payload_table(size_mib << 20, &rows),
    ));
    report.notes = notes(size_mib, &rows);
    Ok(report)
}

fn table(rows: &[(&str, &Measured)]) -> Table {
    let mut t = Table::new(&[
        "",
        "Wall time",
        "App round-trip",
        "SuperLink peak RSS",
        "SuperNode peak RSS (max of 2)",
        "SuperLink CPU",
        "SuperNodes CPU (sum of 2)",
    ]);
    for (name, m) in rows {
        t.row(vec![
            name.to_string(),
            fmt_duration(m.wall),
            fmt_duration(m.roundtrip),
            fmt_bytes(m.superlink.peak_rss),
            fmt_bytes(m.supernode_peak_rss()),
            fmt_duration(m.superlink.cpu),
            fmt_duration(m.supernode_cpu()),
        ]);
    }
    let (flower, sepal_rows) = rows.split_first().expect("Flower's row comes first");
    for (name, sepal) in sepal_rows {
        let secs = |f: fn(&Measured) -> Duration| fmt_ratio(f(flower.1).as_secs_f64(), f(sepal).as_secs_f64());
        let bytes = |f: fn(&Measured) -> u64| fmt_ratio(f(flower.1) as f64, f(sepal) as f64);
        t.row(vec![
            format!("Flower / {name}"),
            secs(|m| m.wall),
            secs(|m| m.roundtrip),
            bytes(|m| m.superlink.peak_rss),
            bytes(Measured::supernode_peak_rss),
            secs(|m| m.superlink.cpu),
            secs(Measured::supernode_cpu),
        ]);
    }
    t
}

/// Throughput through the SuperLink and memory as multiples of the payload.
fn payload_table(payload: u64, rows: &[(&str, &Measured)]) -> Table {
    let mut t = Table::new(&[
        "",
        "Through the SuperLink (4 × payload / round-trip)",
        "SuperLink peak RSS / payload",
        "SuperNode peak RSS / payload",
    ]);
    for (name, m) in rows {
        let mb_per_s = 4.0 * payload as f64 / 1e6 / m.roundtrip.as_secs_f64().max(1e-9);
        t.row(vec![
            name.to_string(),
            format!("{mb_per_s:.0} MB/s"),
            format!("{:.2}×", m.superlink.peak_rss as f64 / payload as f64),
            format!("{:.2}×", m.supernode_peak_rss() as f64 / payload as f64),
        ]);
    }
    t
}

fn notes(size_mib: u64, rows: &[(&str, &Measured)]) -> Vec<String> {
    let mut notes = vec![
        format!(
            "One run per row on a fresh federation (SuperLink + 2 SuperNodes, subprocess isolation). The \
             first two run the same Python app `bench/apps/large-model`: the ServerApp sends one {} float32 \
             array (seeded random data, so no 20 MiB chunk is deduplicated) in one `train` message to each \
             node with a single `send_and_receive`; each ClientApp replies with the array plus \
             `partition-id + 1`; the ServerApp checks every element of both replies.",
            fmt_bytes(size_mib << 20)
        ),
        format!(
            "The Wasm row does the same job with Wasm apps (`bench/apps/large-model-wasm`, run inside the \
             SuperLink and the SuperNodes with `--wasm-memory-mb {WASM_MEMORY_MB}`). A wasm32 app has 4 GiB of \
             address space, so its ServerApp pushes one message at a time, drops the array once both are \
             sent and takes the replies as they come in (checking against the regenerated seeded values); \
             its round-trip runs from the first push to the last reply, without its own checking. The apps' \
             memory is part of the SuperLink's and SuperNodes' RSS in this row."
        ),
        "The last row runs the same Wasm apps in process isolation: the SuperLink and SuperNodes run \
         none, `sepal serverapp` and one `sepal clientapp` per node run them beside the daemons (over \
         ServerAppIo and ClientAppIo), so the daemons' RSS is their own and, as with the Python apps, \
         the app processes' is not counted."
            .to_string(),
        "Wall time: the SuperLink's own run timestamps, `pending_at` (StartRun) to `finished_at`; it \
         includes starting the ServerApp and ClientApps and creating and checking the array. \
         App round-trip (Python rows): the ServerApp's own clock around `send_and_receive` (serialising \
         and pushing the messages, the nodes pulling them, the ClientApps' work, the replies coming back)."
            .to_string(),
        "Peak RSS (`VmHWM`) and CPU time (user + system) are of the SuperLink and SuperNode daemon \
         processes only, read from `/proc` after the run finished and before the federation is stopped; \
         the Python ServerApp and ClientApp processes are the same code for Flower and Sepal and are not \
         counted."
            .to_string(),
    ];
    let (flower, sepal_rows) = rows.split_first().expect("Flower's row comes first");
    for (name, m) in sepal_rows {
        let behind = behind_flower(flower.1, m);
        if !behind.is_empty() {
            notes.push(format!("{name} is not ahead of Flower here on: {}.", behind.join(", ")));
        }
    }
    notes
}

/// The figures on which `sepal` does worse than `flower`.
fn behind_flower(flower: &Measured, sepal: &Measured) -> Vec<&'static str> {
    let slower = [
        ("wall time", flower.wall < sepal.wall),
        ("app round-trip", flower.roundtrip < sepal.roundtrip),
        ("SuperLink peak RSS", flower.superlink.peak_rss < sepal.superlink.peak_rss),
        ("SuperNode peak RSS", flower.supernode_peak_rss() < sepal.supernode_peak_rss()),
        ("SuperLink CPU", flower.superlink.cpu < sepal.superlink.cpu),
        ("SuperNode CPU", flower.supernode_cpu() < sepal.supernode_cpu()),
    ];
    slower.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect()
}

/// Which apps a [`measure`] run runs.
#[derive(Clone, Copy, PartialEq)]
enum Apps {
    /// `bench/apps/large-model`, in `flwr-serverapp` / `flwr-clientapp` processes the
    /// daemons start (subprocess isolation).
    Python,
    /// The Wasm apps, inside the daemons (subprocess isolation).
    Wasm,
    /// The Wasm apps in `sepal serverapp` / `sepal clientapp` processes beside the daemons
    /// (process isolation).
    WasmProcesses,
}

/// One run of `apps` on a fresh federation of `imp` components.
fn measure(imp: Impl, apps: Apps, size_mib: u64, timeout: Duration) -> Result<Measured> {
    let mut builder = Federation::builder().superlink(imp).supernode(imp).supernodes(2);
    builder = match apps {
        Apps::Python => builder.isolation(Isolation::Subprocess),
        Apps::Wasm => builder
            .isolation(Isolation::Subprocess)
            .superlink_arg("--wasm-memory-mb")
            .superlink_arg(WASM_MEMORY_MB)
            .supernode_arg("--wasm-memory-mb")
            .supernode_arg(WASM_MEMORY_MB),
        Apps::WasmProcesses => builder
            .isolation(Isolation::Process)
            .apps(Impl::Sepal)
            .serverapp_arg("--wasm-memory-mb")
            .serverapp_arg(WASM_MEMORY_MB)
            .clientapp_arg("--wasm-memory-mb")
            .clientapp_arg(WASM_MEMORY_MB),
    };
    let mut fed = builder.start().context("starting the federation")?;
    let config = format!("size-mib={size_mib}");
    // `flwr` submits the Python app, and shows either run's log.
    let flwr = fed.flwr_app(&crate::bench_app("large-model"))?;
    let run_id = match apps {
        Apps::Python => flwr.run(&["--run-config", &config])?,
        Apps::Wasm | Apps::WasmProcesses => {
            wasm_apps::sepal_run(fed.exec_addr(), &wasm_apps::wasm_app("large-model"), &config)?
        }
    };
    flwr.wait_for_status(run_id, |s| s == "finished:completed", timeout)?;

    // The daemons' counters, before anything is stopped.
    let superlink = proc_usage(fed.superlink_proc().context("no SuperLink process")?.pid())?;
    let supernodes = fed.supernode_procs().iter().map(|p| proc_usage(p.pid())).collect::<Result<Vec<_>>>()?;

    let run = list_run(fed.exec_addr(), run_id, None)?;
    let wall = run_wall_time(&run)?;
    let roundtrip = sepal_tests::poll("the ServerApp's LARGE line", LOG_TIMEOUT, Duration::from_secs(1), || {
        large_line(&flwr.log_show(run_id)?).transpose()
    })?;
    Ok(Measured { wall, roundtrip, superlink, supernodes })
}

/// `bench/apps/large-model`.
/// The round-trip time from the ServerApp's `LARGE roundtrip_s=… ok=… nodes=…` line in `log`;
/// `None` while there is no such line, an error if the line reports bad replies.
fn large_line(log: &str) -> Option<Result<Duration>> {
    let line = log.lines().rev().find_map(|l| l.find("LARGE roundtrip_s=").map(|i| &l[i..]))?;
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')));
    Some((|| {
        let secs: f64 = field("roundtrip_s").context("no roundtrip_s")?.parse().context("roundtrip_s")?;
        let (ok, nodes) = (field("ok").context("no ok")?, field("nodes").context("no nodes")?);
        if ok != nodes {
            bail!("only {ok} of {nodes} replies were correct: {line}");
        }
        Duration::try_from_secs_f64(secs).with_context(|| format!("bad roundtrip_s in {line}"))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_line_is_parsed_from_a_log() {
        let log = "INFO : Starting\nwarming up\n\u{1b}[0mLARGE roundtrip_s=12.345 ok=2 nodes=2 size_mib=8\nbye\n";
        assert_eq!(large_line(log).unwrap().unwrap(), Duration::from_millis(12_345));
        assert!(large_line("no such line\n").is_none());
        assert!(large_line("LARGE roundtrip_s=1.0 ok=1 nodes=2 size_mib=8").unwrap().is_err());
        assert!(large_line("LARGE roundtrip_s=x ok=2 nodes=2").unwrap().is_err());
    }
}
