//! ServerApp attacks on what a SuperLink and its nodes share with other runs: stored bytes,
//! messages in flight, and the nodes' time. Each returns the line the ServerApp logs.

use std::time::Duration;

use sepal_sdk::prelude::*;

use crate::ATTACK;

/// A node id no SuperNode gets (ids are random 64-bit numbers).
const NOBODY: u64 = 0x5e9a_1000_0000_0001;

/// A message to `dst` carrying `mib` MiB of array data that differs with `seed`, so that
/// no two messages share their payload.
fn heavy(dst: u64, mib: usize, seed: usize) -> Message {
    let mut values = vec![0f32; mib * (1 << 20) / 4];
    if let Some(first) = values.first_mut() {
        *first = seed as f32;
    }
    let array = Array::from_f32(&values, &[values.len()]).expect("a 1-D array");
    let config = ConfigRecord::new().with(ATTACK, "ok".into());
    let content =
        RecordDict::new().with("config", config.into()).with("payload", ArrayRecord::new().with("w", array).into());
    Message::new(content, dst, "query")
}

/// `push-nowhere:N:MIB`: N pushes of one MIB-MiB message each to a node that does not
/// exist. Each should be refused and leave nothing behind.
pub fn push_nowhere(grid: &mut dyn Grid, pushes: usize, mib: usize) -> String {
    let mut stored = 0;
    for i in 0..pushes {
        match grid.push_messages(vec![heavy(NOBODY, mib, i)]) {
            Ok(ids) => stored += ids.iter().filter(|id| !id.is_empty()).count(),
            Err(e) => return format!("push {i} refused: {e}"),
        }
    }
    format!("{pushes} pushes, {stored} stored")
}

/// `push-hoard:N:MIB`: one push of N messages of MIB MiB each to the first node, then one
/// of a single small message: the first should pass the run's byte quota and be refused
/// as a whole; the second should pass.
pub fn push_hoard(grid: &mut dyn Grid, node: u64, messages: usize, mib: usize) -> String {
    let hoard = (0..messages).map(|i| heavy(node, mib, i)).collect();
    let first = match grid.push_messages(hoard) {
        Ok(ids) => format!("stored {} of {messages}", ids.iter().filter(|id| !id.is_empty()).count()),
        Err(e) => format!("refused: {e}"),
    };
    let second = match grid.push_messages(vec![heavy(node, 0, messages)]) {
        Ok(ids) => format!("small push stored {}", ids.iter().filter(|id| !id.is_empty()).count()),
        Err(e) => format!("small push refused: {e}"),
    };
    format!("{first}; {second}")
}

/// `push-flood:N:BATCH`: N tiny `ok` instructions to the first node, BATCH per push, as
/// fast as the grid takes them; stops at the first refusal. The run then ends at once,
/// leaving whatever the node has not done behind.
pub fn push_flood(grid: &mut dyn Grid, node: u64, total: usize, batch: usize) -> String {
    let batch = batch.max(1);
    let mut pushed = 0;
    while pushed < total {
        let n = batch.min(total - pushed);
        let config = || ConfigRecord::new().with(ATTACK, "ok".into());
        let msgs = (0..n).map(|_| Message::new(RecordDict::new().with("config", config().into()), node, "query"));
        if let Err(e) = grid.push_messages(msgs.collect()) {
            return format!("refused after {pushed}: {e}");
        }
        pushed += n;
    }
    format!("pushed {pushed}")
}

/// `spin-nodes:K`: K spinning (`loop`) instructions to every node at once, then waits (up
/// to `timeout`) for their replies, which the nodes' deadlines turn into errors.
pub fn spin_nodes(grid: &mut dyn Grid, nodes: &[u64], per_node: usize, timeout: Duration) -> Result<String, AppError> {
    let config = || ConfigRecord::new().with(ATTACK, "loop".into());
    let msgs: Vec<Message> = nodes
        .iter()
        .flat_map(|node| {
            (0..per_node).map(|_| Message::new(RecordDict::new().with("config", config().into()), *node, "query"))
        })
        .collect();
    let sent = msgs.len();
    let replies = grid.send_and_receive(msgs, Some(timeout))?;
    let errors = replies.iter().filter(|r| r.error().is_some()).count();
    Ok(format!("{sent} sent, {} replies, {errors} errors", replies.len()))
}
