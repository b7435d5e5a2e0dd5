//! Messages: instructions (ServerApp -> node), their replies, and the tombstones that
//! tell a late reply from one to a message that never existed.
//!
//! An instruction row is locked by whoever changes or deletes it: a node taking it
//! (`FOR UPDATE SKIP LOCKED`, so two replicas never hand it out twice), a reply being
//! stored to it, a pull answering it. Pulls and deletions lock their instructions in id
//! order, so that two of them never wait on each other in a cycle. A pull locks only the
//! instructions it answers: one still waiting stays free for its node to take.

use deadpool_postgres::Pool;
use prost::Message as _;
use tokio_postgres::Row;

use super::connect;
use super::nodes::node_exists;
use super::runs::run_exists;
use super::sql::{exec, one, row, rows, Tx};
use crate::clock::now_secs;
use crate::state::sqlite::codec::{decode_message, id_of, sql_id, sql_time, time_of};
use crate::state::{
    check_reply, expired, status, InstructionRejected, LiveMessage, Pick, ReplyLookup, ReplyRejected, StateResult,
    StoredMessage,
};

/// The message in columns `at` (message) and `at + 1` (tree) of a row.
fn message_of(r: &Row, at: usize) -> StateResult<StoredMessage> {
    decode_message(r.try_get(at)?, r.try_get(at + 1)?)
}

/// The instruction with this id; with `lock`, locked until the transaction ends.
async fn load_instruction(tx: &Tx<'_>, id: &str, lock: bool) -> StateResult<Option<StoredMessage>> {
    let sql = if lock {
        "SELECT message, tree FROM instruction WHERE message_id = $1 FOR UPDATE"
    } else {
        "SELECT message, tree FROM instruction WHERE message_id = $1"
    };
    row(tx, sql, &[&id]).await?.map(|r| message_of(&r, 0)).transpose()
}

/// Locks the instructions among `ids` that exist, in id order.
async fn lock_instructions(tx: &Tx<'_>, ids: &[String]) -> StateResult<()> {
    let sql = "SELECT 1 FROM instruction WHERE message_id = ANY($1) ORDER BY message_id FOR UPDATE";
    rows(tx, sql, &[&ids]).await?;
    Ok(())
}

/// Deletes an instruction and its reply, leaving a tombstone in its run.
async fn remove_instruction(tx: &Tx<'_>, id: &str) -> StateResult<()> {
    let deleted = row(tx, "DELETE FROM instruction WHERE message_id = $1 RETURNING run_id", &[&id]).await?;
    if let Some(r) = deleted {
        let run: i64 = r.try_get(0)?;
        let sql = "INSERT INTO gone (run_id, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        exec(tx, sql, &[&run, &id]).await?;
    }
    Ok(())
}

async fn lookup_reply(tx: &Tx<'_>, id: &str, now: f64, lock: bool) -> StateResult<ReplyLookup> {
    let unavailable = || ReplyLookup::InstructionUnavailable { instruction_id: id.to_string() };
    let Some(ins) = load_instruction(tx, id, lock).await? else {
        return Ok(unavailable());
    };
    let meta = ins.metadata().clone();
    if expired(&meta, now) {
        return Ok(unavailable());
    }
    let sql = "SELECT message, tree FROM reply WHERE instruction_id = $1";
    if let Some(r) = row(tx, sql, &[&id]).await? {
        let reply = message_of(&r, 0)?;
        if expired(reply.metadata(), now) {
            return Ok(ReplyLookup::ReplyUnavailable { instruction: meta });
        }
        return Ok(ReplyLookup::Reply(reply));
    }
    let sql = "SELECT online_until FROM node WHERE node_id = $1";
    let online_until = row(tx, sql, &[&sql_id(meta.dst_node_id)]).await?;
    let online = match online_until {
        Some(r) => time_of(r.try_get(0)?) >= now,
        None => false,
    };
    if !online {
        return Ok(ReplyLookup::NodeUnavailable { instruction: meta });
    }
    Ok(ReplyLookup::Waiting)
}

pub(super) async fn store_instruction(
    pool: Pool,
    msg: StoredMessage,
) -> StateResult<Result<String, InstructionRejected>> {
    let meta = msg.metadata().clone();
    let (message, tree) = (msg.message.encode_to_vec(), msg.tree.encode_to_vec());
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    if !run_exists(&tx, meta.run_id).await? {
        return Ok(Err(InstructionRejected::UnknownRun(meta.run_id)));
    }
    if !node_exists(&tx, meta.dst_node_id).await? {
        return Ok(Err(InstructionRejected::UnknownNode(meta.dst_node_id)));
    }
    // The id is the message's content hash: storing it again changes nothing.
    let sql = "INSERT INTO instruction (message_id, run_id, dst_node_id, expires_at, message, tree) \
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING";
    let expires_at = sql_time(meta.created_at + meta.ttl);
    let (run, dst) = (sql_id(meta.run_id), sql_id(meta.dst_node_id));
    exec(&tx, sql, &[&meta.message_id, &run, &dst, &expires_at, &message, &tree]).await?;
    tx.commit().await?;
    Ok(Ok(meta.message_id))
}

/// The runs with an instruction waiting for `node_id`, in the order [`Pick`] serves them.
async fn candidate_runs(tx: &Tx<'_>, node_id: u64, pick: &Pick, now: f64) -> StateResult<Vec<u64>> {
    // A NULL expiry or deadline is a NaN one, which never counts as passed.
    let sql = "SELECT DISTINCT i.run_id FROM instruction i JOIN run r ON r.run_id = i.run_id \
               WHERE i.dst_node_id = $1 AND NOT i.delivered AND (i.expires_at IS NULL OR i.expires_at >= $2) \
               AND r.status = $3 AND (r.active_until IS NULL OR r.active_until >= $2)";
    let found = rows(tx, sql, &[&sql_id(node_id), &now, &status::RUNNING]).await?;
    let mut runs = found.iter().map(|r| Ok(id_of(r.try_get(0)?))).collect::<StateResult<Vec<u64>>>()?;
    runs.retain(|run_id| !pick.skip_runs.contains(run_id));
    runs.sort_by_key(|run_id| pick.turn_key(*run_id));
    Ok(runs)
}

pub(super) async fn next_instruction(pool: Pool, node_id: u64, pick: Pick) -> StateResult<Option<StoredMessage>> {
    let now = now_secs();
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    // The oldest instruction of the first run in turn that nobody else is taking now; a
    // row another replica has locked is skipped (it will be delivered when it commits).
    let sql = "SELECT seq, message, tree FROM instruction WHERE run_id = $1 AND dst_node_id = $2 \
               AND NOT delivered AND (expires_at IS NULL OR expires_at >= $3) \
               ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED";
    for run_id in candidate_runs(&tx, node_id, &pick, now).await? {
        let Some(r) = row(&tx, sql, &[&sql_id(run_id), &sql_id(node_id), &now]).await? else {
            continue;
        };
        let seq: i64 = r.try_get(0)?;
        let msg = message_of(&r, 1)?;
        exec(&tx, "UPDATE instruction SET delivered = true WHERE seq = $1", &[&seq]).await?;
        tx.commit().await?;
        return Ok(Some(msg));
    }
    Ok(None)
}

pub(super) async fn store_reply(pool: Pool, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>> {
    let now = now_secs();
    let meta = msg.metadata().clone();
    let (message, tree) = (msg.message.encode_to_vec(), msg.tree.encode_to_vec());
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let ins_id = meta.reply_to_message_id.clone();
    let Some(ins) = load_instruction(&tx, &ins_id, true).await? else {
        let sql = "SELECT EXISTS (SELECT 1 FROM gone WHERE run_id = $1 AND message_id = $2)";
        let gone: bool = one(&tx, sql, &[&sql_id(meta.run_id), &ins_id]).await?.try_get(0)?;
        return Ok(Err(if gone { ReplyRejected::Gone(ins_id) } else { ReplyRejected::UnknownInstruction(ins_id) }));
    };
    if let Err(rejected) = check_reply(ins.metadata(), &meta, now) {
        return Ok(Err(rejected));
    }
    // A newer reply to the same instruction replaces the older one.
    let sql = "INSERT INTO reply (instruction_id, message, tree) VALUES ($1, $2, $3) \
               ON CONFLICT (instruction_id) DO UPDATE SET message = excluded.message, tree = excluded.tree";
    exec(&tx, sql, &[&ins_id, &message, &tree]).await?;
    tx.commit().await?;
    Ok(Ok(meta.message_id))
}

pub(super) async fn take_replies(pool: Pool, instruction_ids: Vec<String>) -> StateResult<Vec<ReplyLookup>> {
    let now = now_secs();
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    // A first look without locks: an instruction still waiting for its reply is left
    // unlocked, so that a node taking it meanwhile is not made to skip it. Those to answer
    // are then locked (in id order) and looked at again, under the lock, before they go.
    let mut first = Vec::with_capacity(instruction_ids.len());
    for id in &instruction_ids {
        first.push(lookup_reply(&tx, id, now, false).await?);
    }
    let settled = instruction_ids.iter().zip(&first).filter(|(_, l)| !matches!(l, ReplyLookup::Waiting));
    lock_instructions(&tx, &settled.map(|(id, _)| id.clone()).collect::<Vec<_>>()).await?;
    let mut out = Vec::with_capacity(instruction_ids.len());
    for (id, lookup) in instruction_ids.iter().zip(first) {
        if matches!(lookup, ReplyLookup::Waiting) {
            out.push(lookup);
            continue;
        }
        let lookup = lookup_reply(&tx, id, now, true).await?;
        if !matches!(lookup, ReplyLookup::Waiting) {
            remove_instruction(&tx, id).await?;
        }
        out.push(lookup);
    }
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn delete(pool: Pool, instruction_ids: Vec<String>) -> StateResult<()> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    lock_instructions(&tx, &instruction_ids).await?;
    for id in &instruction_ids {
        remove_instruction(&tx, id).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn instruction_ids_of_run(pool: Pool, run_id: u64) -> StateResult<Vec<String>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let sql = "SELECT message_id FROM instruction WHERE run_id = $1 ORDER BY seq";
    let found = rows(&tx, sql, &[&sql_id(run_id)]).await?;
    tx.commit().await?;
    found.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

pub(super) async fn instruction_count(pool: Pool, run_id: u64) -> StateResult<usize> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let sql = "SELECT COUNT(*) FROM instruction WHERE run_id = $1";
    let n: i64 = one(&tx, sql, &[&sql_id(run_id)]).await?.try_get(0)?;
    tx.commit().await?;
    Ok(n as usize)
}

pub(super) async fn drop_run(pool: Pool, run_id: u64) -> StateResult<usize> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    // Replies go with their instructions (ON DELETE CASCADE).
    let n = exec(&tx, "DELETE FROM instruction WHERE run_id = $1", &[&sql_id(run_id)]).await?;
    exec(&tx, "DELETE FROM gone WHERE run_id = $1", &[&sql_id(run_id)]).await?;
    tx.commit().await?;
    Ok(n as usize)
}

/// Every instruction and reply stored now.
pub(super) async fn live(pool: Pool) -> StateResult<Vec<LiveMessage>> {
    let mut conn = connect(&pool).await?;
    let tx = conn.transaction().await?;
    let queries =
        ["SELECT message, tree, delivered FROM instruction ORDER BY seq", "SELECT message, tree, false FROM reply"];
    let mut out = Vec::new();
    for sql in queries {
        for r in rows(&tx, sql, &[]).await? {
            out.push(LiveMessage { message: message_of(&r, 0)?, delivered: r.try_get(2)? });
        }
    }
    tx.commit().await?;
    Ok(out)
}
