//! Messages: instructions (ServerApp -> node), their replies, and the tombstones that
//! tell a late reply from one to a message that never existed.

use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension};

use super::codec::{decode_message, id_of, sql_id, sql_time, time_of};
use super::nodes::node_exists;
use super::runs::run_exists;
use super::{Commit, SqliteState};
use crate::clock::now_secs;
use crate::state::{
    check_reply, expired, status, InstructionRejected, LiveMessage, Pick, ReplyLookup, ReplyRejected, StateResult,
    StoredMessage,
};

/// The instruction with this id.
fn load_instruction(conn: &Connection, id: &str) -> StateResult<Option<StoredMessage>> {
    load_message(conn, "SELECT message, tree FROM instruction WHERE message_id = ?1", id)
}

/// The reply to the instruction with this id.
fn load_reply(conn: &Connection, instruction_id: &str) -> StateResult<Option<StoredMessage>> {
    load_message(conn, "SELECT message, tree FROM reply WHERE instruction_id = ?1", instruction_id)
}

/// The message (message and tree BLOBs) that `sql` selects for an instruction id.
fn load_message(conn: &Connection, sql: &str, id: &str) -> StateResult<Option<StoredMessage>> {
    let row = conn
        .prepare_cached(sql)?
        .query_row([id], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    row.map(|(m, t)| decode_message(&m, &t)).transpose()
}

/// Deletes an instruction and its reply, leaving a tombstone in its run.
fn remove_instruction(conn: &Connection, id: &str) -> StateResult<()> {
    let run: Option<i64> = conn
        .prepare_cached("SELECT run_id FROM instruction WHERE message_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(run) = run {
        conn.prepare_cached("DELETE FROM instruction WHERE message_id = ?1")?.execute([id])?;
        conn.prepare_cached("INSERT OR IGNORE INTO gone (run_id, message_id) VALUES (?1, ?2)")?
            .execute(params![run, id])?;
    }
    Ok(())
}

fn lookup_reply(conn: &Connection, id: &str, now: f64) -> StateResult<ReplyLookup> {
    let Some(ins) = load_instruction(conn, id)? else {
        return Ok(ReplyLookup::InstructionUnavailable { instruction_id: id.to_string() });
    };
    let meta = ins.metadata().clone();
    if expired(&meta, now) {
        return Ok(ReplyLookup::InstructionUnavailable { instruction_id: id.to_string() });
    }
    if let Some(reply) = load_reply(conn, id)? {
        if expired(reply.metadata(), now) {
            return Ok(ReplyLookup::ReplyUnavailable { instruction: meta });
        }
        return Ok(ReplyLookup::Reply(reply));
    }
    let online_until: Option<Option<f64>> = conn
        .prepare_cached("SELECT online_until FROM node WHERE node_id = ?1")?
        .query_row([sql_id(meta.dst_node_id)], |r| r.get(0))
        .optional()?;
    let online = online_until.is_some_and(|t| time_of(t) >= now);
    if !online {
        return Ok(ReplyLookup::NodeUnavailable { instruction: meta });
    }
    Ok(ReplyLookup::Waiting)
}

pub(super) fn store_instruction(
    state: &SqliteState,
    msg: StoredMessage,
) -> StateResult<Result<String, InstructionRejected>> {
    let meta = msg.metadata().clone();
    let (message, tree) = (msg.message.encode_to_vec(), msg.tree.encode_to_vec());
    state.write(Commit::Durable, |conn| {
        if !run_exists(conn, meta.run_id)? {
            return Ok(Err(InstructionRejected::UnknownRun(meta.run_id)));
        }
        if !node_exists(conn, meta.dst_node_id)? {
            return Ok(Err(InstructionRejected::UnknownNode(meta.dst_node_id)));
        }
        // The id is the message's content hash: storing it again changes nothing.
        conn.prepare_cached(
            "INSERT INTO instruction (message_id, run_id, dst_node_id, expires_at, message, tree) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (message_id) DO NOTHING",
        )?
        .execute(params![
            meta.message_id,
            sql_id(meta.run_id),
            sql_id(meta.dst_node_id),
            sql_time(meta.created_at + meta.ttl),
            message,
            tree,
        ])?;
        Ok(Ok(meta.message_id.clone()))
    })
}

pub(super) fn next_instruction(state: &SqliteState, node_id: u64, pick: &Pick) -> StateResult<Option<StoredMessage>> {
    let now = now_secs();
    state.write(Commit::Durable, |conn| {
        // The candidate runs with the first instruction of each, in the order of
        // `Pick::turn_key` (run ids compared as the u64 they are); a NULL expiry is a NaN
        // one, which never counts as expired.
        let mut candidates: Vec<(u64, i64)> = conn
            .prepare_cached(
                "SELECT i.run_id, MIN(i.seq) FROM instruction i JOIN run r ON r.run_id = i.run_id \
                 WHERE i.dst_node_id = ?1 AND i.delivered = 0 AND (i.expires_at IS NULL OR i.expires_at >= ?2) \
                 AND r.status = ?3 AND (r.active_until IS NULL OR r.active_until >= ?2) GROUP BY i.run_id",
            )?
            .query_map(params![sql_id(node_id), now, status::RUNNING], |r| Ok((id_of(r.get(0)?), r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        candidates.retain(|(run_id, _)| !pick.skip_runs.contains(run_id));
        candidates.sort_by_key(|(run_id, _)| pick.turn_key(*run_id));
        let Some(&(_, seq)) = candidates.first() else {
            return Ok(None);
        };
        let (message, tree) = conn
            .prepare_cached("SELECT message, tree FROM instruction WHERE seq = ?1")?
            .query_row([seq], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        conn.prepare_cached("UPDATE instruction SET delivered = 1 WHERE seq = ?1")?.execute([seq])?;
        decode_message(&message, &tree).map(Some)
    })
}

pub(super) fn store_reply(state: &SqliteState, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>> {
    let now = now_secs();
    let meta = msg.metadata().clone();
    let (message, tree) = (msg.message.encode_to_vec(), msg.tree.encode_to_vec());
    state.write(Commit::Durable, |conn| {
        let ins_id = meta.reply_to_message_id.clone();
        let Some(ins) = load_instruction(conn, &ins_id)? else {
            let gone: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM gone WHERE run_id = ?1 AND message_id = ?2)")?
                .query_row(params![sql_id(meta.run_id), ins_id], |r| r.get(0))?;
            return Ok(Err(if gone { ReplyRejected::Gone(ins_id) } else { ReplyRejected::UnknownInstruction(ins_id) }));
        };
        if let Err(rejected) = check_reply(ins.metadata(), &meta, now) {
            return Ok(Err(rejected));
        }
        // A newer reply to the same instruction replaces the older one.
        conn.prepare_cached(
            "INSERT INTO reply (instruction_id, message, tree) VALUES (?1, ?2, ?3) \
             ON CONFLICT (instruction_id) DO UPDATE SET message = excluded.message, tree = excluded.tree",
        )?
        .execute(params![ins_id, message, tree])?;
        Ok(Ok(meta.message_id.clone()))
    })
}

pub(super) fn take_replies(state: &SqliteState, instruction_ids: &[String]) -> StateResult<Vec<ReplyLookup>> {
    let now = now_secs();
    state.write(Commit::Durable, |conn| {
        let mut out = Vec::with_capacity(instruction_ids.len());
        for id in instruction_ids {
            let lookup = lookup_reply(conn, id, now)?;
            if !matches!(lookup, ReplyLookup::Waiting) {
                remove_instruction(conn, id)?;
            }
            out.push(lookup);
        }
        Ok(out)
    })
}

pub(super) fn delete(state: &SqliteState, instruction_ids: &[String]) -> StateResult<()> {
    state.write(Commit::Durable, |conn| {
        for id in instruction_ids {
            remove_instruction(conn, id)?;
        }
        Ok(())
    })
}

pub(super) fn instruction_ids_of_run(state: &SqliteState, run_id: u64) -> StateResult<Vec<String>> {
    state.read(|conn| {
        let mut stmt = conn.prepare_cached("SELECT message_id FROM instruction WHERE run_id = ?1 ORDER BY seq")?;
        let ids = stmt.query_map([sql_id(run_id)], |r| r.get(0))?;
        Ok(ids.collect::<Result<Vec<String>, _>>()?)
    })
}

pub(super) fn instruction_count(state: &SqliteState, run_id: u64) -> StateResult<usize> {
    state.read(|conn| {
        let n: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM instruction WHERE run_id = ?1")?
            .query_row([sql_id(run_id)], |r| r.get(0))?;
        Ok(n as usize)
    })
}

pub(super) fn drop_run(state: &SqliteState, run_id: u64) -> StateResult<usize> {
    state.write(Commit::Durable, |conn| {
        let n = conn.prepare_cached("DELETE FROM instruction WHERE run_id = ?1")?.execute([sql_id(run_id)])?;
        conn.prepare_cached("DELETE FROM gone WHERE run_id = ?1")?.execute([sql_id(run_id)])?;
        Ok(n)
    })
}

/// Every instruction and reply stored now.
pub(super) fn live(state: &SqliteState) -> StateResult<Vec<LiveMessage>> {
    state.read(|conn| {
        let mut out = Vec::new();
        let queries =
            ["SELECT message, tree, delivered FROM instruction ORDER BY seq", "SELECT message, tree, 0 FROM reply"];
        for sql in queries {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)? != 0)))?;
            for row in rows {
                let (message, tree, delivered) = row?;
                out.push(LiveMessage { message: decode_message(&message, &tree)?, delivered });
            }
        }
        Ok(out)
    })
}
