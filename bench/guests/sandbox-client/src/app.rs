//! The sandbox benchmark's ClientApp and its timed message path. Target-independent: the
//! Wasm component (`lib.rs`) runs it inside the sandbox, and `sepal-bench` compiles this
//! same file natively (`#[path]` in bench/src/scenarios/sandbox.rs), so both sides run
//! exactly the same code.
//!
//! - `train`: the content holds N ArrayRecords and a MetricRecord [`WEIGHTS`] giving each
//!   ArrayRecord's weight under its name; the reply holds their weighted average (the
//!   SDK's `aggregate_arrayrecords`, what FedAvg uses) under `arrays`.
//! - `query`: an empty reply (the per-message overhead).

use std::time::{Duration, Instant};

use sepal_sdk::prelude::*;
use sepal_sdk::strategy::aggregate::{aggregate_arrayrecords, metric_weight};

/// The MetricRecord holding each ArrayRecord's weight, by the ArrayRecord's name.
pub const WEIGHTS: &str = "weights";

/// The reply's ArrayRecord in a `train` reply.
pub const RESULT: &str = "arrays";

/// The prefix of the guest's log line carrying its [`Timings`].
pub const TIMING_PREFIX: &str = "bench-timing";

/// Granted by the host to ask the component for the timing log line (left out for the
/// per-message overhead, where a log call would be a noticeable part of the cost).
pub const TIMING_ENV: &str = "SEPAL_BENCH_TIMING";

/// The app: `train` aggregates, `query` replies at once.
pub fn client_app() -> ClientApp {
    ClientApp::new().train(aggregate).query(|msg, _| Ok(msg.reply(RecordDict::new())))
}

fn aggregate(msg: Message, _ctx: &mut Context) -> Result<Message, AppError> {
    let content = msg.content();
    let weights = content.metric_record(WEIGHTS).ok_or("no weights record")?;
    let mut records = Vec::new();
    for (name, record) in content.iter() {
        if let Record::Array(arrays) = record {
            let w = metric_weight(weights, name).ok_or_else(|| format!("no weight for {name:?}"))?;
            records.push((arrays, w));
        }
    }
    let average = aggregate_arrayrecords(&records)?;
    Ok(msg.reply(RecordDict::new().with(RESULT, average.into())))
}

/// Where the time of one message went, measured with the target's monotonic clock (WASI
/// clocks inside the sandbox).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Protobuf bytes to a [`Message`] and a [`Context`].
    pub decode: Duration,
    /// The handler (for `train`: `aggregate_arrayrecords` plus building the reply).
    pub handle: Duration,
    /// The reply and the context back to protobuf bytes.
    pub encode: Duration,
}

/// Handles one message as the SDK's export does (decode, dispatch, encode), timing each
/// step. Returns the reply and context bytes.
pub fn handle_timed(
    app: &ClientApp,
    message: Vec<u8>,
    context: &[u8],
) -> Result<(Vec<u8>, Vec<u8>, Timings), AppError> {
    let started = Instant::now();
    let msg = Message::from_proto_bytes(&message)?;
    let mut ctx = Context::from_proto_bytes(context)?;
    let decoded = Instant::now();
    // The bytes are not needed any more; freeing them now lowers the peak (outside the timings).
    drop(message);
    let handle_start = Instant::now();
    let reply = app.handle(msg, &mut ctx)?;
    let handled = Instant::now();
    let (reply, ctx) = (reply.into_proto_bytes(), ctx.into_proto_bytes());
    let encoded = Instant::now();
    let timings = Timings { decode: decoded - started, handle: handled - handle_start, encode: encoded - handled };
    Ok((reply, ctx, timings))
}

impl Timings {
    /// The log line the guest sends back: `bench-timing decode_ns=.. handle_ns=..
    /// encode_ns=.. memory_bytes=..` (`memory_bytes`: the guest's linear memory size).
    pub fn log_line(&self, memory_bytes: u64) -> String {
        format!(
            "{TIMING_PREFIX} decode_ns={} handle_ns={} encode_ns={} memory_bytes={memory_bytes}",
            self.decode.as_nanos(),
            self.handle.as_nanos(),
            self.encode.as_nanos()
        )
    }

    /// Parses [`Timings::log_line`]'s output: the timings and the memory size.
    pub fn parse(line: &str) -> Option<(Timings, u64)> {
        let mut fields = line.strip_prefix(TIMING_PREFIX)?.split_whitespace();
        let mut next = |key: &str| -> Option<u64> { fields.next()?.strip_prefix(key)?.strip_prefix('=')?.parse().ok() };
        let ns = |v: u64| Duration::from_nanos(v);
        let decode = ns(next("decode_ns")?);
        let handle = ns(next("handle_ns")?);
        let encode = ns(next("encode_ns")?);
        let memory = next("memory_bytes")?;
        Some((Timings { decode, handle, encode }, memory))
    }
}
