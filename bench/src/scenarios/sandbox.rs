//! Sandbox cost: the same Rust code natively and inside Sepal's Wasm sandbox. There is no
//! Python counterpart; this is Sepal's own tax for running apps sandboxed.
//!
//! The code is bench/guests/sandbox-client/src/app.rs (a ClientApp built with the guest SDK plus
//! [`app::handle_timed`], the SDK export's steps, timed). The guest component
//! (`sandbox_client.wasm`, built once per test run by `sepal-guests`) runs it in a [`wasm`]
//! sandbox configured as a SuperNode's; this crate compiles the same file natively.
//!
//! 1. FedAvg aggregation: one `train` message holding 10 float32 ArrayRecords and their
//!    weights ([`workload`]), averaged with the SDK's `aggregate_arrayrecords`; per step
//!    (decode, handler, encode) on both sides, plus the whole Wasm call.
//! 2. Per-message overhead: a trivial `query` handler, many calls, the component cached.
//! 3. One-off costs: creating the sandbox, compiling the component, a cache hit.

// The guest's own code, compiled natively; `Timings::log_line` is only used inside the guest.
#[allow(dead_code)]
#[path = "../../guests/sandbox-client/src/app.rs"]
mod app;
mod wasm;
mod workload;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::measure::Latencies;
use crate::report::{fmt_bytes, fmt_duration, fmt_ratio};
use crate::{Opts, Report, Table};
use app::Timings;
use wasm::{Loads, WasmSide};
use workload::Sizes;

/// Runs the scenario.
pub fn run(opts: &Opts) -> Result<Report> {
    let sizes = Sizes::new(opts.smoke);
    let component = sepal_guests::component("sandbox-client");
    let (wasm, loads) = WasmSide::start(&component)?;
    eprintln!("aggregating {} × {} float32, {} times", sizes.records, sizes.elements, sizes.repeats);
    let aggregation = measure_aggregation(&wasm, &sizes)?;
    eprintln!("{} trivial calls", sizes.calls);
    let mut overhead = measure_overhead(&wasm, &sizes)?;

    let mut report = Report::new("sandbox", "Sandbox cost: Wasm vs native", String::new());
    report.tables.push((aggregation_caption(&sizes, aggregation.message_bytes), aggregation.table()));
    report.tables.push((overhead_caption(&sizes), overhead.table()));
    report.tables.push(("One-off costs, per process and per component:".to_string(), loads_table(&loads, &component)));
    report.notes = notes(&wasm, &aggregation, &overhead);
    Ok(report)
}

/// The aggregation's samples, one per repeat.
struct Aggregation {
    message_bytes: usize,
    native: Vec<Timings>,
    guest: Vec<Timings>,
    wall: Vec<Duration>,
    /// The guest's linear memory at the end of each call.
    memory: Vec<u64>,
}

fn total(t: &Timings) -> Duration {
    t.decode + t.handle + t.encode
}

fn median(samples: impl IntoIterator<Item = Duration>) -> Duration {
    let mut l = Latencies::new();
    samples.into_iter().for_each(|s| l.push(s));
    l.quantile(0.5)
}

/// Alternates native and Wasm runs of the same message, and checks on the first that
/// both sides computed the same average.
fn measure_aggregation(wasm: &WasmSide, sizes: &Sizes) -> Result<Aggregation> {
    let (message, context) = (workload::aggregation_message(sizes), workload::context());
    let mut a = Aggregation {
        message_bytes: message.len(),
        native: Vec::new(),
        guest: Vec::new(),
        wall: Vec::new(),
        memory: Vec::new(),
    };
    for i in 0..sizes.repeats {
        let (native_reply, _, native) = app::handle_timed(&app::client_app(), message.clone(), &context)?;
        let call = wasm.call(&message, &context, true)?;
        let Some((guest, memory)) = call.guest else { bail!("no guest timings") };
        if i == 0 && workload::result_of(&native_reply)? != workload::result_of(&call.reply)? {
            bail!("the Wasm and native averages differ");
        }
        a.native.push(native);
        a.guest.push(guest);
        a.wall.push(call.wall);
        a.memory.push(memory);
    }
    Ok(a)
}

/// A row of the aggregation table: its name and which part of [`Timings`] it shows.
type Step = (&'static str, fn(&Timings) -> Duration);

impl Aggregation {
    fn table(&self) -> Table {
        let mut t = Table::new(&["step", "native", "Wasm", "Wasm / native"]);
        let steps: [Step; 4] = [
            ("decode the message (protobuf → records)", |t| t.decode),
            ("handler: `aggregate_arrayrecords` + reply", |t| t.handle),
            ("encode the reply and context", |t| t.encode),
            ("the three steps", total),
        ];
        for (name, step) in steps {
            let (n, w) = (median(self.native.iter().map(step)), median(self.guest.iter().map(step)));
            t.row(vec![name.into(), fmt_duration(n), fmt_duration(w), fmt_ratio(w.as_secs_f64(), n.as_secs_f64())]);
        }
        let (n, w) = (median(self.native.iter().map(total)), median(self.wall.iter().copied()));
        let whole = "whole call: message bytes in → reply bytes out";
        t.row(vec![whole.into(), fmt_duration(n), fmt_duration(w), fmt_ratio(w.as_secs_f64(), n.as_secs_f64())]);
        let outside = median(self.wall.iter().zip(&self.guest).map(|(w, g)| w.saturating_sub(total(g))));
        let name = "of which outside the guest's code (instantiate, copy in and out)";
        t.row(vec![name.into(), "-".into(), fmt_duration(outside), "-".into()]);
        t
    }
}

fn aggregation_caption(sizes: &Sizes, message_bytes: usize) -> String {
    format!(
        "FedAvg aggregation of {} float32 arrays of {} values ({}) each, in one `train` message of {}; \
         median of {} runs:",
        sizes.records,
        sizes.elements,
        fmt_bytes(sizes.array_bytes()),
        fmt_bytes(message_bytes as u64),
        sizes.repeats
    )
}

/// Latencies of the trivial handler, on both sides.
struct Overhead {
    native: Latencies,
    wasm: Latencies,
}

fn native_ping(ping: &[u8], context: &[u8]) -> Result<Duration> {
    let message = ping.to_vec();
    let started = Instant::now();
    app::handle_timed(&app::client_app(), message, context)?;
    Ok(started.elapsed())
}

fn measure_overhead(wasm: &WasmSide, sizes: &Sizes) -> Result<Overhead> {
    let (ping, context) = (workload::ping_message(), workload::context());
    for _ in 0..sizes.warmup {
        wasm.call(&ping, &context, false)?;
        native_ping(&ping, &context)?;
    }
    let mut o = Overhead { native: Latencies::new(), wasm: Latencies::new() };
    for _ in 0..sizes.calls {
        o.wasm.push(wasm.call(&ping, &context, false)?.wall);
        o.native.push(native_ping(&ping, &context)?);
    }
    Ok(o)
}

impl Overhead {
    fn table(&mut self) -> Table {
        let mut t = Table::new(&["", "p50", "p99", "mean"]);
        let stats = |l: &mut Latencies| [l.quantile(0.5), l.quantile(0.99), l.mean()];
        let (n, w) = (stats(&mut self.native), stats(&mut self.wasm));
        let mut row = |name: &str, cells: Vec<String>| t.row([vec![name.to_string()], cells].concat());
        row("native: decode, dispatch, encode (no sandbox)", n.iter().map(|d| fmt_duration(*d)).collect());
        row("Wasm: `ClientRunner::handle` (fresh instance per message)", w.iter().map(|d| fmt_duration(*d)).collect());
        row("Wasm / native", w.iter().zip(&n).map(|(w, n)| fmt_ratio(w.as_secs_f64(), n.as_secs_f64())).collect());
        t
    }
}

fn overhead_caption(sizes: &Sizes) -> String {
    format!(
        "Per-message overhead: a trivial `query` handler (empty message in, empty reply out), {} calls \
         after {} unmeasured ones, the compiled component cached:",
        sizes.calls, sizes.warmup
    )
}

fn loads_table(loads: &Loads, component: &[u8]) -> Table {
    let mut t = Table::new(&["", "time"]);
    t.row(vec!["`Sandbox::new` (engine, linkers, epoch ticker thread)".into(), fmt_duration(loads.new_sandbox)]);
    let cold = format!(
        "`load_client`, cold: compile the {} component (Cranelift) and link it",
        fmt_bytes(component.len() as u64)
    );
    t.row(vec![cold, fmt_duration(loads.cold)]);
    t.row(vec!["`load_client` again, cached (sha256 of the bytes, lookup)".into(), fmt_duration(loads.cached)]);
    t
}

fn notes(wasm: &WasmSide, aggregation: &Aggregation, overhead: &Overhead) -> Vec<String> {
    let memory = aggregation.memory.iter().copied().max().unwrap_or(0);
    let (n, w) = (median(aggregation.native.iter().map(total)), median(aggregation.wall.iter().copied()));
    let mut notes = vec![
        "The same code on both sides: bench/guests/sandbox-client/src/app.rs, compiled natively into sepal-bench and \
         into the guest component (release, opt-level 3, LTO, simd128). Each step (decode, handler, encode) is \
         timed with the target's monotonic clock: `std::time::Instant` natively, WASI clocks inside the \
         sandbox (the guest logs its timings back through the `log` import). The whole Wasm call is timed \
         on the host from just before `ClientRunner::handle` to its return: a fresh instance, the message \
         copied into linear memory, the three steps, the reply and context copied out."
            .to_string(),
        format!(
            "Sandbox as a SuperNode runs it: `SandboxConfig::default()` (pooling allocator, epoch \
             interruption), `Limits::default()` (1 GiB of linear memory per instance) with the deadline \
             lowered to {} s. The guest's linear memory reached {} during the aggregation (it never \
             shrinks, so that is the peak: the message's bytes and their decoded copy coexist until decoding \
             ends), so the default limit sufficed.",
            wasm.limits().deadline.as_secs(),
            fmt_bytes(memory)
        ),
        format!(
            "Sepal is not ahead here, by construction: this is the price of the sandbox. The aggregation call \
             takes {} in Wasm against {} natively ({} the native time); a trivial message costs {} more on \
             average (a fresh instance per message, the copies across the boundary, the async call). The \
             part of the aggregation call outside the guest's code is, beyond that per-message cost, the \
             canonical-ABI copies of the message into linear memory and of the reply out of it.",
            fmt_duration(w),
            fmt_duration(n),
            fmt_ratio(w.as_secs_f64(), n.as_secs_f64()),
            fmt_duration(overhead.wasm.mean().saturating_sub(overhead.native.mean()))
        ),
        "Both sides' averages are compared after the first run and are identical (the SDK's kernels do a \
         multiply then an add per element, never fused, on every target)."
            .to_string(),
    ];
    if cfg!(debug_assertions) {
        notes.push(
            "This was a debug build of sepal-bench: the native side and wasmtime (whose copies across the \
             boundary are then not vectorized) are unoptimized, the guest is built in release either way, so \
             the ratios mean nothing; use `scripts/bench.sh sandbox`."
                .to_string(),
        );
    }
    notes
}
