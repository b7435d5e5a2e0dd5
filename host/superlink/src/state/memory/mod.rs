//! The in-memory [`LinkState`] (Flower's `:flwr-in-memory-state:`).

mod messages;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use sepal_proto::pb;

use super::status::{self, RunState};
use super::{
    check_reply, random_id, InstructionRejected, LinkState, LiveMessage, NewRun, Pick, ReplyLookup, ReplyRejected,
    StateError, StateResult, StoredMessage, HEARTBEAT_NEVER, HEARTBEAT_PATIENCE,
};
use crate::clock::{now_iso, now_secs};

/// State kept in process memory; lost when the SuperLink stops.
#[derive(Default)]
pub struct MemoryState {
    // One lock: every operation is short and none awaits while holding it.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<u64, RunEntry>,
    nodes: HashMap<u64, NodeEntry>,
    keys: HashMap<Vec<u8>, u64>,
    fabs: HashMap<String, Bytes>,
    /// Instructions by id.
    instructions: HashMap<String, Instruction>,
    /// Instruction ids by run, in arrival order.
    by_run: HashMap<u64, BTreeMap<u64, String>>,
    /// Undelivered instruction ids by destination node, then run, in arrival order: a
    /// node's next instruction is found without looking at anyone else's.
    queues: HashMap<u64, HashMap<u64, BTreeMap<u64, String>>>,
    next_seq: u64,
    replies: HashMap<String, StoredMessage>,
}

struct RunEntry {
    /// Submission order.
    seq: u64,
    run: pb::Run,
    active_until: f64,
    federation_options: pb::ConfigRecord,
    context: pb::Context,
    logs: Vec<(f64, String)>,
    /// Instructions of this run that were answered or dropped, so a late reply is told
    /// apart from a reply to a message that never existed.
    gone: HashSet<String>,
}

struct NodeEntry {
    online_until: f64,
    public_key: Option<Vec<u8>>,
}

struct Instruction {
    msg: StoredMessage,
    seq: u64,
    delivered: bool,
    reply_id: Option<String>,
}

impl MemoryState {
    /// Sets a node's `online_until` to `pick(current, now + HEARTBEAT_PATIENCE * interval)`;
    /// false if the node does not exist.
    fn set_liveness(&self, node_id: u64, interval: f64, pick: impl FnOnce(f64, f64) -> f64) -> bool {
        let mut inner = self.lock();
        let Some(node) = inner.nodes.get_mut(&node_id) else {
            return false;
        };
        node.online_until = pick(node.online_until, now_secs() + HEARTBEAT_PATIENCE * interval);
        true
    }

    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Pending runs, oldest submission first (the launcher and a ServerApp's claim agree).
    fn pending(&self) -> Vec<u64> {
        let mut pending: Vec<(u64, u64)> = self
            .runs
            .iter()
            .filter(|(_, e)| RunState::of(&e.run) == Some(RunState::Pending))
            .map(|(id, e)| (e.seq, *id))
            .collect();
        pending.sort_unstable();
        pending.into_iter().map(|(_, id)| id).collect()
    }

    fn run_mut(&mut self, run_id: u64) -> StateResult<&mut RunEntry> {
        let entry = self.runs.get_mut(&run_id).ok_or(StateError::RunNotFound(run_id))?;
        status::fail_if_silent(&mut entry.run, entry.active_until, now_secs());
        Ok(entry)
    }
}

impl LinkState for MemoryState {
    fn create_run(&self, new: NewRun) -> StateResult<u64> {
        let mut inner = self.lock();
        let run_id = random_id(|id| Ok(inner.runs.contains_key(&id)))?;
        let run = pb::Run {
            run_id,
            fab_id: new.fab_id,
            fab_version: new.fab_version,
            override_config: new.override_config,
            fab_hash: new.fab_hash,
            pending_at: now_iso(),
            status: Some(status::status(status::PENDING, "", "")),
            flwr_aid: new.flwr_aid,
            ..Default::default()
        };
        let context = pb::Context { run_id, state: Some(pb::RecordDict::default()), ..Default::default() };
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.runs.insert(
            run_id,
            RunEntry {
                seq,
                run,
                active_until: 0.0,
                federation_options: new.federation_options,
                context,
                logs: Vec::new(),
                gone: HashSet::new(),
            },
        );
        Ok(run_id)
    }

    fn run(&self, run_id: u64) -> StateResult<Option<pb::Run>> {
        let mut inner = self.lock();
        Ok(inner.run_mut(run_id).ok().map(|e| e.run.clone()))
    }

    fn run_status(&self, run_id: u64) -> StateResult<Option<pb::RunStatus>> {
        let mut inner = self.lock();
        Ok(inner.run_mut(run_id).ok().map(|e| e.run.status.clone().unwrap_or_default()))
    }

    fn run_ids(&self) -> StateResult<Vec<u64>> {
        let mut ids: Vec<u64> = self.lock().runs.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn update_run_status(&self, run_id: u64, new: pb::RunStatus) -> StateResult<bool> {
        let mut inner = self.lock();
        let entry = inner.run_mut(run_id)?;
        Ok(status::apply_transition(&mut entry.run, &mut entry.active_until, new))
    }

    fn claim_pending_run(&self) -> StateResult<Option<u64>> {
        let mut inner = self.lock();
        let Some(run_id) = inner.pending().first().copied() else {
            return Ok(None);
        };
        let entry = inner.run_mut(run_id)?;
        entry.run.status = Some(status::status(status::STARTING, "", ""));
        entry.run.starting_at = now_iso();
        entry.active_until = HEARTBEAT_NEVER;
        Ok(Some(run_id))
    }

    fn pending_run_ids(&self) -> StateResult<Vec<u64>> {
        Ok(self.lock().pending())
    }

    fn active_run_ids(&self) -> StateResult<Vec<u64>> {
        let inner = self.lock();
        let mut active: Vec<(u64, u64)> = inner
            .runs
            .iter()
            .filter(|(_, e)| matches!(RunState::of(&e.run), Some(RunState::Starting | RunState::Running)))
            .map(|(id, e)| (e.seq, *id))
            .collect();
        active.sort_unstable();
        Ok(active.into_iter().map(|(_, id)| id).collect())
    }

    fn ack_app_heartbeat(&self, run_id: u64, interval: f64) -> StateResult<bool> {
        let mut inner = self.lock();
        let Ok(entry) = inner.run_mut(run_id) else {
            return Ok(false);
        };
        if !matches!(RunState::of(&entry.run), Some(RunState::Starting | RunState::Running)) {
            return Ok(false);
        }
        entry.active_until = now_secs() + HEARTBEAT_PATIENCE * interval;
        Ok(true)
    }

    fn serverapp_context(&self, run_id: u64) -> StateResult<Option<pb::Context>> {
        Ok(self.lock().runs.get(&run_id).map(|e| e.context.clone()))
    }

    fn set_serverapp_context(&self, run_id: u64, context: pb::Context) -> StateResult<()> {
        self.lock().run_mut(run_id)?.context = context;
        Ok(())
    }

    fn federation_options(&self, run_id: u64) -> StateResult<Option<pb::ConfigRecord>> {
        Ok(self.lock().runs.get(&run_id).map(|e| e.federation_options.clone()))
    }

    fn add_log(&self, run_id: u64, text: &str) -> StateResult<()> {
        let mut inner = self.lock();
        let entry = inner.runs.get_mut(&run_id).ok_or(StateError::RunNotFound(run_id))?;
        // Stamps strictly increase so "after this stamp" never skips or repeats a line.
        let last = entry.logs.last().map_or(0.0, |(t, _)| *t);
        let stamp = now_secs().max(last + 1e-6);
        entry.logs.push((stamp, text.to_string()));
        Ok(())
    }

    fn logs_after(&self, run_id: u64, after: f64) -> StateResult<(String, f64)> {
        let inner = self.lock();
        let entry = inner.runs.get(&run_id).ok_or(StateError::RunNotFound(run_id))?;
        let start = entry.logs.partition_point(|(t, _)| *t <= after);
        let text: String = entry.logs[start..].iter().map(|(_, s)| s.as_str()).collect();
        let latest = if start < entry.logs.len() { entry.logs[entry.logs.len() - 1].0 } else { 0.0 };
        Ok((text, latest))
    }

    fn store_fab(&self, hash: &str, content: Bytes) -> StateResult<()> {
        self.lock().fabs.entry(hash.to_string()).or_insert(content);
        Ok(())
    }

    fn fab(&self, hash: &str) -> StateResult<Option<Bytes>> {
        Ok(self.lock().fabs.get(hash).cloned())
    }

    fn create_node(&self, heartbeat_interval: f64) -> StateResult<u64> {
        let mut inner = self.lock();
        let node_id = random_id(|id| Ok(inner.nodes.contains_key(&id)))?;
        let entry = NodeEntry { online_until: now_secs() + heartbeat_interval, public_key: None };
        inner.nodes.insert(node_id, entry);
        Ok(node_id)
    }

    fn delete_node(&self, node_id: u64) -> StateResult<()> {
        let mut inner = self.lock();
        let node = inner.nodes.remove(&node_id).ok_or(StateError::NodeNotFound(node_id))?;
        if let Some(key) = node.public_key {
            inner.keys.remove(&key);
        }
        Ok(())
    }

    fn ack_node_heartbeat(&self, node_id: u64, interval: f64) -> StateResult<bool> {
        Ok(self.set_liveness(node_id, interval, |_, fresh| fresh))
    }

    fn keep_node_online(&self, node_id: u64, interval: f64) -> StateResult<bool> {
        Ok(self.set_liveness(node_id, interval, f64::max))
    }

    fn online_nodes(&self) -> StateResult<Vec<u64>> {
        let now = now_secs();
        let inner = self.lock();
        let mut ids: Vec<u64> = inner.nodes.iter().filter(|(_, n)| n.online_until > now).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn bind_public_key(&self, node_id: u64, key: &[u8]) -> StateResult<()> {
        let mut inner = self.lock();
        if inner.keys.contains_key(key) {
            return Err(StateError::PublicKeyInUse);
        }
        let node = inner.nodes.get_mut(&node_id).ok_or(StateError::NodeNotFound(node_id))?;
        node.public_key = Some(key.to_vec());
        inner.keys.insert(key.to_vec(), node_id);
        Ok(())
    }

    fn node_for_key(&self, key: &[u8]) -> StateResult<Option<u64>> {
        Ok(self.lock().keys.get(key).copied())
    }

    fn store_instruction(&self, msg: StoredMessage) -> StateResult<Result<String, InstructionRejected>> {
        let mut inner = self.lock();
        let meta = msg.metadata();
        if !inner.runs.contains_key(&meta.run_id) {
            return Ok(Err(InstructionRejected::UnknownRun(meta.run_id)));
        }
        if !inner.nodes.contains_key(&meta.dst_node_id) {
            return Ok(Err(InstructionRejected::UnknownNode(meta.dst_node_id)));
        }
        let id = msg.id().to_string();
        if inner.instructions.contains_key(&id) {
            // The id is the message's content hash: storing it again changes nothing.
            return Ok(Ok(id));
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let (run_id, node_id) = (meta.run_id, meta.dst_node_id);
        inner.by_run.entry(run_id).or_default().insert(seq, id.clone());
        inner.queues.entry(node_id).or_default().entry(run_id).or_default().insert(seq, id.clone());
        inner.instructions.insert(id.clone(), Instruction { msg, seq, delivered: false, reply_id: None });
        Ok(Ok(id))
    }

    fn next_instruction(&self, node_id: u64, pick: &Pick) -> StateResult<Option<StoredMessage>> {
        let now = now_secs();
        let mut inner = self.lock();
        let Some(queue) = inner.queues.get(&node_id) else {
            return Ok(None);
        };
        let mut runs: Vec<u64> = queue.keys().copied().filter(|r| !pick.skip_runs.contains(r)).collect();
        runs.sort_by_key(|r| pick.turn_key(*r));
        for run_id in runs {
            if inner.is_running(run_id) {
                if let Some(msg) = inner.pop_instruction(node_id, run_id, now) {
                    return Ok(Some(msg));
                }
            }
        }
        Ok(None)
    }

    fn store_reply(&self, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>> {
        let now = now_secs();
        let mut inner = self.lock();
        let meta = msg.metadata().clone();
        let ins_id = meta.reply_to_message_id.clone();
        let Some(ins) = inner.instructions.get(&ins_id) else {
            let gone = inner.runs.get(&meta.run_id).is_some_and(|r| r.gone.contains(&ins_id));
            return Ok(Err(if gone { ReplyRejected::Gone(ins_id) } else { ReplyRejected::UnknownInstruction(ins_id) }));
        };
        if let Err(rejected) = check_reply(ins.msg.metadata(), &meta, now) {
            return Ok(Err(rejected));
        }
        let reply_id = meta.message_id.clone();
        let ins = inner.instructions.get_mut(&ins_id).expect("checked above");
        if let Some(old) = ins.reply_id.replace(reply_id.clone()) {
            inner.replies.remove(&old);
        }
        inner.replies.insert(reply_id.clone(), msg);
        Ok(Ok(reply_id))
    }

    fn take_replies(&self, instruction_ids: &[String]) -> StateResult<Vec<ReplyLookup>> {
        let now = now_secs();
        let mut inner = self.lock();
        let mut out = Vec::with_capacity(instruction_ids.len());
        for id in instruction_ids {
            let lookup = inner.lookup_reply(id, now);
            if !matches!(lookup, ReplyLookup::Waiting) {
                inner.remove_instruction(id);
            }
            out.push(lookup);
        }
        Ok(out)
    }

    fn delete_messages(&self, instruction_ids: &[String]) -> StateResult<()> {
        let mut inner = self.lock();
        for id in instruction_ids {
            inner.remove_instruction(id);
        }
        Ok(())
    }

    fn instruction_ids_of_run(&self, run_id: u64) -> StateResult<Vec<String>> {
        Ok(self.lock().by_run.get(&run_id).map(|ids| ids.values().cloned().collect()).unwrap_or_default())
    }

    fn instruction_count(&self, run_id: u64) -> StateResult<usize> {
        Ok(self.lock().by_run.get(&run_id).map_or(0, BTreeMap::len))
    }

    fn drop_run_messages(&self, run_id: u64) -> StateResult<usize> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner.by_run.get(&run_id).map(|ids| ids.values().cloned().collect()).unwrap_or_default();
        for id in &ids {
            inner.remove_instruction(id);
        }
        if let Some(run) = inner.runs.get_mut(&run_id) {
            run.gone = HashSet::new();
        }
        inner.shrink();
        Ok(ids.len())
    }

    fn live_messages(&self) -> StateResult<Vec<LiveMessage>> {
        let inner = self.lock();
        let instructions =
            inner.instructions.values().map(|i| LiveMessage { message: i.msg.clone(), delivered: i.delivered });
        let replies = inner.replies.values().map(|r| LiveMessage { message: r.clone(), delivered: false });
        Ok(instructions.chain(replies).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_state_passes_the_shared_suite() {
        super::super::conformance::run_all(&|| Box::new(MemoryState::new()));
    }
}
