//! The in-memory state's message bookkeeping: instructions by run and by node, delivery
//! in turn, removal, and reply lookups.

use std::collections::{BTreeMap, HashMap};

use super::Inner;
use crate::state::status::RunState;
use crate::state::{expired, ReplyLookup, StoredMessage};

impl Inner {
    pub(super) fn remove_instruction(&mut self, id: &str) {
        let Some(ins) = self.instructions.remove(id) else { return };
        let meta = ins.msg.metadata();
        remove_nested(&mut self.by_run, meta.run_id, |ids| ids.remove(&ins.seq).is_some());
        if !ins.delivered {
            remove_nested(&mut self.queues, meta.dst_node_id, |runs| {
                remove_nested(runs, meta.run_id, |ids| ids.remove(&ins.seq).is_some())
            });
        }
        if let Some(reply) = ins.reply_id {
            self.replies.remove(&reply);
        }
        if let Some(run) = self.runs.get_mut(&meta.run_id) {
            run.gone.insert(id.to_string());
        }
    }

    /// Gives back the room of message maps that once held far more than they do now (a
    /// run that flooded the state must not leave its peak behind).
    pub(super) fn shrink(&mut self) {
        if self.instructions.capacity() > 1024 && self.instructions.len() < self.instructions.capacity() / 4 {
            self.instructions.shrink_to_fit();
            self.replies.shrink_to_fit();
        }
    }

    /// Whether the run is running now (a silent ServerApp's run is failed first).
    pub(super) fn is_running(&mut self, run_id: u64) -> bool {
        self.run_mut(run_id).is_ok_and(|e| RunState::of(&e.run) == Some(RunState::Running))
    }

    /// The oldest deliverable instruction of `run_id` for `node_id`, marked delivered;
    /// expired ones met on the way leave the queue (they stay for the ServerApp's pull).
    pub(super) fn pop_instruction(&mut self, node_id: u64, run_id: u64, now: f64) -> Option<StoredMessage> {
        let Inner { queues, instructions, .. } = self;
        let queue = queues.get_mut(&node_id)?.get_mut(&run_id)?;
        let mut found = None;
        while let Some((_, id)) = queue.pop_first() {
            let Some(ins) = instructions.get_mut(&id) else { continue };
            if !ins.delivered && !expired(ins.msg.metadata(), now) {
                ins.delivered = true;
                found = Some(ins.msg.clone());
                break;
            }
        }
        if queue.is_empty() {
            remove_nested(queues, node_id, |runs| runs.remove(&run_id).is_some());
        }
        found
    }

    pub(super) fn lookup_reply(&mut self, id: &str, now: f64) -> ReplyLookup {
        let Some(ins) = self.instructions.get(id) else {
            return ReplyLookup::InstructionUnavailable { instruction_id: id.to_string() };
        };
        let meta = ins.msg.metadata().clone();
        if expired(&meta, now) {
            return ReplyLookup::InstructionUnavailable { instruction_id: id.to_string() };
        }
        if let Some(reply) = ins.reply_id.as_ref().and_then(|r| self.replies.get(r)) {
            if expired(reply.metadata(), now) {
                return ReplyLookup::ReplyUnavailable { instruction: meta };
            }
            return ReplyLookup::Reply(reply.clone());
        }
        let online = self.nodes.get(&meta.dst_node_id).is_some_and(|n| n.online_until >= now);
        if !online {
            return ReplyLookup::NodeUnavailable { instruction: meta };
        }
        ReplyLookup::Waiting
    }
}

/// Applies `remove` to the map under `key` and drops that map once it is empty.
fn remove_nested<K: std::hash::Hash + Eq, M: Emptiable>(
    outer: &mut HashMap<K, M>,
    key: K,
    remove: impl FnOnce(&mut M) -> bool,
) -> bool {
    let Some(inner) = outer.get_mut(&key) else { return false };
    let removed = remove(inner);
    if inner.is_empty() {
        outer.remove(&key);
    }
    removed
}

/// What [`remove_nested`] checks for emptiness.
trait Emptiable {
    fn is_empty(&self) -> bool;
}

impl<K, V> Emptiable for BTreeMap<K, V> {
    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

impl<K, V> Emptiable for HashMap<K, V> {
    fn is_empty(&self) -> bool {
        HashMap::is_empty(self)
    }
}
