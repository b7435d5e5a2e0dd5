//! The large-model benchmark's ServerApp: sends one `size-mib` MiB float32 array to every
//! node in a `train` message, checks that each reply holds the array plus
//! `partition-id + 1`, and logs one line for the benchmark harness:
//!
//! `LARGE roundtrip_s=<seconds> ok=<good replies> nodes=<n> size_mib=<m>`
//!
//! The same job as the Python app in `bench/apps/large-model`, shaped for a wasm32 address
//! space (4 GiB): messages are pushed one at a time, the array is dropped once they are
//! sent (the check regenerates the seeded values), and replies are taken as they come in,
//! which at a Sepal SuperLink is one at a time (it uploads large replies in turn), so the
//! app holds at most about two copies of the array. The round trip is the time from
//! the first push to the last reply, without the app's own checking.

use std::time::{Duration, Instant};

use sepal_sdk::info;
use sepal_sdk::prelude::*;

/// Pause between two polls for a reply.
const POLL: Duration = Duration::from_millis(5);

fn server_main(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
    let size_mib = ctx.run_config.get_u64_or("size-mib", 8);
    let min_nodes = ctx.run_config.get_u64_or("min-nodes", 2) as usize;
    let node_wait = seconds(ctx, "node-wait-timeout", 120.0)?;
    let reply_timeout = seconds(ctx, "reply-timeout", 900.0)?;
    let nodes = grid.wait_for_nodes(min_nodes, Some(node_wait))?;
    let len = (size_mib as usize) * 1024 * 1024 / 4;

    let array = Array::from_f32(&seeded(len).collect::<Vec<_>>(), &[len]).map_err(|e| AppError::new(e.to_string()))?;
    let header = array.data[..array.data.len() - len * 4].to_vec();
    let started = Instant::now();
    let mut ids = Vec::new();
    for &node in &nodes {
        let content = RecordDict::new().with("arrays", ArrayRecord::new().with("w", array.clone()).into());
        let id = grid.push_messages(vec![Message::new(content, node, "train")])?.pop().unwrap_or_default();
        if id.is_empty() {
            return Err(AppError::new(format!("the instruction to node {node} was not accepted")));
        }
        ids.push(id);
    }
    drop(array);

    let (mut ok, mut checking) = (0, Duration::ZERO);
    let mut waiting = ids;
    while !waiting.is_empty() {
        for reply in wait_for_replies(grid, &waiting, started + reply_timeout)? {
            waiting.retain(|id| id != reply.reply_to_message_id());
            let checked = Instant::now();
            ok += usize::from(reply_ok(&reply, &header, len));
            checking += checked.elapsed();
        }
    }
    let roundtrip = started.elapsed().saturating_sub(checking).as_secs_f64();
    info!("LARGE roundtrip_s={roundtrip:.3} ok={ok} nodes={} size_mib={size_mib}", nodes.len());
    if ok != nodes.len() {
        return Err(AppError::new(format!("{ok} of {} replies were correct", nodes.len())));
    }
    Ok(())
}

fn seconds(ctx: &Context, key: &str, default: f64) -> Result<Duration, AppError> {
    Duration::try_from_secs_f64(ctx.run_config.get_f64_or(key, default))
        .map_err(|e| AppError::new(format!("{key}: {e}")))
}

/// Polls for replies to the instructions `ids` until some are in (whichever come first:
/// a Sepal SuperLink uploads large replies one at a time) or `deadline` passes.
fn wait_for_replies(grid: &mut dyn Grid, ids: &[String], deadline: Instant) -> Result<Vec<Message>, AppError> {
    loop {
        let replies = grid.pull_messages(ids)?;
        if !replies.is_empty() {
            return Ok(replies);
        }
        if Instant::now() >= deadline {
            return Err(AppError::new(format!("{} replies missing at the reply timeout", ids.len())));
        }
        grid.sleep(POLL);
    }
}

/// `len` pseudo-random floats in [0, 1) from a fixed seed (xorshift64*): the same values
/// every time, and no 20 MiB chunk equal to another.
fn seeded(len: usize) -> impl Iterator<Item = f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..len).map(move |_| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    })
}

/// Whether `reply` holds the seeded array plus its node's `partition-id + 1`.
fn reply_ok(reply: &Message, header: &[u8], len: usize) -> bool {
    if let Some(error) = reply.error() {
        info!("ERROR REPLY {error:?}");
        return false;
    }
    let content = reply.content();
    let pid = content.metric_record("metrics").and_then(|m| m.get_i64("partition-id"));
    let array = content.array_record("arrays").and_then(|r| r.get("w"));
    let (Some(pid), Some(array)) = (pid, array) else {
        info!("BAD REPLY: no `metrics.partition-id` or `arrays.w`");
        return false;
    };
    if array.data.len() != header.len() + len * 4 || !array.data.starts_with(header) {
        info!("BAD REPLY: not a float32 array of {len} elements");
        return false;
    }
    let offset = (pid + 1) as f32;
    let got = array.data[header.len()..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")));
    let good = got.zip(seeded(len)).all(|(got, base)| got == base + offset);
    if !good {
        info!("BAD REPLY: values differ from the array plus {offset}");
    }
    good
}

sepal_sdk::export_server_app!(ServerApp::new(server_main));
