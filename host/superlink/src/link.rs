//! What the three services share: the state, the object store, wake-ups, and the rules
//! that more than one service applies (run status gates, message validation, objects).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sepal_core::error::ObjectError;
use sepal_core::records::{Error as MsgError, Message, Metadata};
use sepal_proto::pb;
use tokio::sync::{watch, Notify};

use crate::clock::now_secs;
use crate::error::{Error, Result};
use crate::limits::{too_large, InputLimits};
use crate::objects::Objects;
use crate::state::status::{self, RunState};
use crate::state::{LinkState, Pick, ReplyLookup, StoredMessage, SUPERLINK_NODE_ID};

/// The shared core of a SuperLink.
pub struct Link {
    /// Runs, nodes, messages, logs, FABs.
    pub state: Arc<dyn LinkState>,
    /// Message payload objects (in memory, and kept in the state when it keeps them).
    pub objects: Objects,
    /// Wake-ups for whoever waits on the state.
    pub events: Events,
    /// How much input is accepted.
    pub limits: InputLimits,
    /// Per run: held while a push is checked against the run's quotas and stored.
    push_locks: Mutex<HashMap<u64, Arc<Mutex<()>>>>,
    /// Per node: the run it was last handed an instruction from (runs take turns).
    last_served: Mutex<HashMap<u64, u64>>,
    /// Finished runs whose messages and objects were let go of.
    released: Mutex<HashSet<u64>>,
    /// The pending run last told why it waits to start.
    told_to_wait: Mutex<Option<u64>>,
    /// Runs whose log already says that a push passed one of their quotas.
    told_over_quota: Mutex<HashSet<u64>>,
    /// Per node that runs one message per run at once (a Sepal SuperNode that names its
    /// busy runs): the runs it has a message of in hand, kept up to date between its
    /// pulls as messages are handed out and replies come back.
    busy: Mutex<HashMap<u64, HashSet<u64>>>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wake-ups, so that waiters react to changes instead of polling on a timer.
#[derive(Default)]
pub struct Events {
    /// A run was submitted (the launcher waits on this).
    pub run_submitted: Notify,
    /// A run's log or status changed (StreamLogs waits on this).
    pub run_changed: watch::Sender<u64>,
    /// An instruction or reply was stored.
    pub message_stored: watch::Sender<u64>,
    /// A node registered or left.
    pub node_changed: watch::Sender<u64>,
    /// A pushed object was stored (a reply's upload progressed).
    pub object_stored: watch::Sender<u64>,
    /// The SuperLink is shutting down: held calls and log streams end now.
    pub closing: watch::Sender<bool>,
}

impl Events {
    /// Completes once the SuperLink starts shutting down.
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    fn bump(tx: &watch::Sender<u64>) {
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Link {
    /// A link over the given state, its objects restored from the state when it keeps them.
    pub fn new(state: Arc<dyn LinkState>, limits: InputLimits) -> Arc<Self> {
        let objects = Objects::new(state.clone(), limits.max_kept_object_bytes, limits.max_run_bytes);
        match objects.restore() {
            Ok(0) => {}
            Ok(n) => tracing::info!(objects = n, "payload objects of messages in flight restored from the state"),
            Err(e) => tracing::error!("cannot restore payload objects from the state: {e}"),
        }
        Arc::new(Self {
            state,
            objects,
            events: Events::default(),
            limits,
            push_locks: Mutex::default(),
            last_served: Mutex::default(),
            released: Mutex::default(),
            told_to_wait: Mutex::default(),
            told_over_quota: Mutex::default(),
            busy: Mutex::default(),
        })
    }

    /// The run's status, or `RunNotFound`.
    pub fn run_status(&self, run_id: u64) -> Result<pb::RunStatus> {
        let run = self.state.run(run_id)?.ok_or(Error::RunNotFound(run_id))?;
        Ok(run.status.unwrap_or_default())
    }

    /// Fails with PERMISSION_DENIED (Flower's wording) unless the run is running.
    pub fn require_running(&self, run_id: u64) -> Result<()> {
        let status = self.run_status(run_id)?;
        match RunState::parse(&status.status) {
            Some(RunState::Running) => Ok(()),
            Some(RunState::Finished) => {
                self.release_run(run_id);
                Err(Error::RunRefused(RunState::refusal(&status)))
            }
            _ => Err(Error::RunRefused(RunState::refusal(&status))),
        }
    }

    /// Applies a status change; a finished run drops its objects. Returns whether the
    /// transition was allowed.
    pub fn update_run_status(&self, run_id: u64, new: pb::RunStatus) -> Result<bool> {
        let finished = new.status == status::FINISHED;
        let changed = self.state.update_run_status(run_id, new)?;
        if changed {
            if finished {
                self.release_run(run_id);
            }
            Events::bump(&self.events.run_changed);
        }
        Ok(changed)
    }

    /// Lets go of everything a finished run holds (once): its instructions, delivered or
    /// not, and replies, their objects, and its quota bookkeeping. Nodes are never offered
    /// its work again.
    fn release_run(&self, run_id: u64) {
        if !lock(&self.released).insert(run_id) {
            return;
        }
        match self.state.drop_run_messages(run_id) {
            Ok(0) => {}
            Ok(n) => tracing::info!(run_id, instructions = n, "the run is over: its messages still stored are dropped"),
            Err(e) => tracing::warn!(run_id, "cannot drop the finished run's messages: {e}"),
        }
        self.objects.delete_run(run_id);
        lock(&self.push_locks).remove(&run_id);
        lock(&self.told_over_quota).remove(&run_id);
    }

    /// A push of `run_id` refused for `e`: a refusal over a quota is also said in the run's
    /// log (once per run), since a Python ServerApp's grid shows RESOURCE_EXHAUSTED as
    /// Flower's "2GB gRPC limit" and carries on.
    fn refused(&self, run_id: u64, e: Error) -> Error {
        let over_quota = matches!(e, Error::ResourceExhausted(_) | Error::Object(ObjectError::RunQuota { .. }));
        if over_quota && lock(&self.told_over_quota).insert(run_id) {
            let why = e.text();
            let _ = self.add_log(run_id, &format!("SEPAL   : push refused: {why}\n"));
            return Error::ResourceExhausted(why);
        }
        e
    }

    /// Stores a ServerApp's instructions for `run_id` within the run's quotas: all are
    /// admitted or none is (RESOURCE_EXHAUSTED naming the limit and its flag). `made` are
    /// objects the host already holds (a Wasm app's whole messages); the others are to be
    /// pushed. An instruction the state refuses (its node is unknown) gets an empty id, as
    /// in Flower, and leaves nothing behind. Returns the ids and the objects to push.
    pub fn push_instructions(
        &self,
        run_id: u64,
        msgs: Vec<StoredMessage>,
        made: Vec<(String, Bytes)>,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let run_lock = lock(&self.push_locks).entry(run_id).or_default().clone();
        let _one_push_at_a_time = lock(&run_lock);
        let held = self.state.instruction_count(run_id)?;
        let limit = self.limits.max_run_messages;
        if held + msgs.len() > limit {
            return Err(self.refused(
                run_id,
                Error::ResourceExhausted(format!(
                    "run {run_id} has {held} messages in flight; {} more would pass its limit of {limit} \
                     (--max-run-messages)",
                    msgs.len()
                )),
            ));
        }
        let trees: Vec<&pb::ObjectTree> = msgs.iter().map(|m| &m.tree).collect();
        let mut to_push =
            self.objects.register_messages(run_id, &trees, made).map_err(|e| self.refused(run_id, e.into()))?;
        let mut ids = Vec::with_capacity(msgs.len());
        for msg in msgs {
            let root = msg.tree.object_id.clone();
            match self.state.store_instruction(msg)? {
                Ok(id) => ids.push(id),
                Err(e) => {
                    tracing::warn!(run_id, message_id = root, "instruction not stored: {e}");
                    self.objects.delete(&root);
                    ids.push(String::new());
                }
            }
        }
        to_push.retain(|id| self.objects.contains(id));
        self.message_stored();
        Ok((ids, to_push))
    }

    /// Records what a node that runs one message per run at once said in its pull: the
    /// runs it has a message of in hand. Only runs it was handed a message of and has not
    /// replied to count, and of those only the ones it still names: its list was made
    /// before the pull left, so a reply that arrived meanwhile must not make a run busy
    /// again, and a message it gave up on must not keep its run busy forever.
    pub fn node_busy_with(&self, node_id: u64, reported: Vec<u64>) {
        lock(&self.busy).entry(node_id).or_default().retain(|run| reported.contains(run));
    }

    /// Records that a node is done with its message of `run_id` (it replied).
    pub fn node_done_with(&self, node_id: u64, run_id: u64) {
        if let Some(runs) = lock(&self.busy).get_mut(&node_id) {
            runs.remove(&run_id);
        }
    }

    /// The node's next instruction: runs take turns (see [`Pick`]); a node that runs one
    /// message per run at once is not handed a second one of a run it is busy with.
    pub fn next_instruction(&self, node_id: u64) -> Result<Option<StoredMessage>> {
        let after_run = lock(&self.last_served).get(&node_id).copied();
        let skip_runs = lock(&self.busy).get(&node_id).map(|r| r.iter().copied().collect()).unwrap_or_default();
        let msg = self.state.next_instruction(node_id, &Pick { after_run, skip_runs })?;
        if let Some(msg) = &msg {
            let run_id = msg.metadata().run_id;
            lock(&self.last_served).insert(node_id, run_id);
            if let Some(runs) = lock(&self.busy).get_mut(&node_id) {
                runs.insert(run_id);
            }
        }
        Ok(msg)
    }

    /// Records that a node left (wakes waiters on nodes).
    pub fn node_left(&self, node_id: u64) {
        lock(&self.last_served).remove(&node_id);
        lock(&self.busy).remove(&node_id);
        self.node_changed();
    }

    /// Fails with RESOURCE_EXHAUSTED if an object is larger than the limit.
    pub fn check_object_size(&self, object_id: &str, len: usize) -> Result<()> {
        if len > self.limits.max_object_bytes {
            return Err(too_large(&format!("object {object_id}, in bytes,"), len, self.limits.max_object_bytes));
        }
        Ok(())
    }

    /// How many runs have a ServerApp now (starting or running). A run found over (its
    /// ServerApp went silent) is let go of.
    pub fn active_runs(&self) -> Result<usize> {
        let mut active = 0;
        for run_id in self.state.active_run_ids()? {
            match self.state.run(run_id)?.as_ref().and_then(RunState::of) {
                Some(RunState::Starting | RunState::Running) => active += 1,
                Some(RunState::Finished) => self.release_run(run_id),
                _ => {}
            }
        }
        Ok(active)
    }

    /// Whether the pending run `run_id` may start now: fewer than `max_concurrent_runs`
    /// runs have a ServerApp. If not, the run's log and the SuperLink's say why, once.
    pub fn may_start_run(&self, run_id: u64) -> Result<bool> {
        if self.active_runs()? < self.limits.max_concurrent_runs {
            return Ok(true);
        }
        if lock(&self.told_to_wait).replace(run_id) != Some(run_id) {
            let max = self.limits.max_concurrent_runs;
            tracing::info!(run_id, "run waits: {max} runs are running, the most at once (--max-concurrent-runs)");
            let line = format!(
                "SEPAL   : waiting to start: {max} runs are running, the most this SuperLink runs at once \
                 (--max-concurrent-runs); this run starts when one of them ends\n"
            );
            self.add_log(run_id, &line)?;
        }
        Ok(false)
    }

    /// Hands the oldest pending run to a ServerApp (pending -> starting), unless as many
    /// runs as allowed already have one.
    pub fn claim_pending_run(&self) -> Result<Option<u64>> {
        match self.state.pending_run_ids()?.first() {
            Some(&oldest) if self.may_start_run(oldest)? => {}
            _ => return Ok(None),
        }
        let claimed = self.state.claim_pending_run()?;
        if claimed.is_some() {
            Events::bump(&self.events.run_changed);
        }
        Ok(claimed)
    }

    /// Appends text to a run's log and wakes log streams.
    pub fn add_log(&self, run_id: u64, text: &str) -> Result<()> {
        self.state.add_log(run_id, text)?;
        Events::bump(&self.events.run_changed);
        Ok(())
    }

    /// Records that a node registered or left (wakes waiters on nodes).
    pub fn node_changed(&self) {
        Events::bump(&self.events.node_changed);
    }

    /// Records that a message was stored (wakes waiters on messages).
    pub fn message_stored(&self) {
        Events::bump(&self.events.message_stored);
    }

    /// Pairs each wire message with its tree and checks their shape.
    pub fn stored_messages(
        &self,
        messages: Vec<pb::Message>,
        trees: Vec<pb::ObjectTree>,
    ) -> Result<Vec<StoredMessage>> {
        if messages.is_empty() {
            return Err(Error::InvalidArgument("messages_list must not be empty".into()));
        }
        if messages.len() > self.limits.max_messages_per_push {
            return Err(too_large("the push's message count", messages.len(), self.limits.max_messages_per_push));
        }
        if let Some(big) = trees.iter().map(tree_size).max().filter(|n| *n > self.limits.max_objects_per_message) {
            return Err(too_large("a message's object count", big, self.limits.max_objects_per_message));
        }
        if messages.len() != trees.len() {
            return Err(Error::InvalidArgument(format!(
                "{} messages but {} object trees; each message needs its tree",
                messages.len(),
                trees.len()
            )));
        }
        messages
            .into_iter()
            .zip(trees)
            .map(|(message, tree)| {
                let meta = message
                    .metadata
                    .as_ref()
                    .ok_or_else(|| Error::InvalidArgument("message without metadata".into()))?;
                if tree.object_id != meta.message_id {
                    return Err(Error::InvalidArgument(format!(
                        "object tree root {:?} is not the message id {:?}",
                        tree.object_id, meta.message_id
                    )));
                }
                Ok(StoredMessage { message, tree })
            })
            .collect()
    }

    /// Stores a pushed object of `run_id`; `false` when it was not expected or its hash is
    /// wrong.
    pub fn push_object(&self, run_id: u64, object_id: &str, content: Bytes) -> Result<bool> {
        self.check_object_size(object_id, content.len())?;
        match self.objects.put(object_id, content).map_err(|e| self.refused(run_id, e.into())) {
            Ok(true) => {
                Events::bump(&self.events.object_stored);
                Ok(true)
            }
            Ok(false) => {
                tracing::warn!(object_id, "pushed object not stored: not preregistered or hash mismatch");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The objects of `tree` that are here, to carry inline with their message (at most
    /// [`sepal_wire::INLINE_OBJECTS_MAX_BYTES`]), and whether that is all of them.
    pub fn inline_objects(&self, tree: &pb::ObjectTree) -> (Vec<pb::InlineObject>, bool) {
        let (objects, complete) = self.objects.collect(tree, sepal_wire::INLINE_OBJECTS_MAX_BYTES);
        let objects = objects
            .into_iter()
            .map(|(object_id, content)| pb::InlineObject { object_id, object_content: content.to_vec() })
            .collect();
        (objects, complete)
    }

    /// Looks up an object for a pull.
    pub fn pull_object(&self, object_id: &str) -> pb::PullObjectResponse {
        self.objects.get(object_id).into_pull_response()
    }

    /// Turns the state's answer to a reply pull into a wire message and its tree;
    /// synthetic error replies are built and stored so they can be pulled.
    pub fn reply_to_wire(&self, run_id: u64, lookup: ReplyLookup) -> Option<(pb::Message, pb::ObjectTree)> {
        let (meta, code, reason) = match lookup {
            ReplyLookup::Waiting => return None,
            ReplyLookup::Reply(m) => return Some((m.message, m.tree)),
            ReplyLookup::InstructionUnavailable { instruction_id } => (
                Metadata { reply_to_message_id: instruction_id, message_type: "system".into(), ..Default::default() },
                MsgError::MESSAGE_UNAVAILABLE,
                "Error: Message Unavailable - The requested message could not be found in the database. It may have expired due to its TTL or never existed.",
            ),
            ReplyLookup::ReplyUnavailable { instruction } => (
                reply_metadata(&instruction),
                MsgError::REPLY_MESSAGE_UNAVAILABLE,
                "Error: Reply Message Unavailable - The reply message has expired.",
            ),
            ReplyLookup::NodeUnavailable { instruction } => (
                reply_metadata(&instruction),
                MsgError::NODE_UNAVAILABLE,
                "Error: Node Unavailable \u{2014} The destination node failed to report a heartbeat within 2 \u{d7} its expected interval.",
            ),
        };
        let meta =
            Metadata { src_node_id: SUPERLINK_NODE_ID, dst_node_id: SUPERLINK_NODE_ID, created_at: now_secs(), ..meta };
        let message = Message::with_error(meta, MsgError::new(code, reason));
        let (tree, id) = self.objects.insert_message(run_id, &message);
        let mut wire_meta = pb::Metadata::from(&message.metadata);
        wire_meta.message_id = id;
        let error = message.error.as_ref().map(pb::Error::from);
        Some((pb::Message { metadata: Some(wire_meta), content: None, error }, tree))
    }
}

/// The number of objects in a tree.
fn tree_size(tree: &pb::ObjectTree) -> usize {
    1 + tree.children.iter().map(tree_size).sum::<usize>()
}

/// Metadata of a synthetic reply to `ins`: same run, group and type, TTL = time left.
fn reply_metadata(ins: &pb::Metadata) -> Metadata {
    let now = now_secs();
    Metadata {
        run_id: ins.run_id,
        reply_to_message_id: ins.message_id.clone(),
        group_id: ins.group_id.clone(),
        message_type: ins.message_type.clone(),
        ttl: (ins.ttl - (now - ins.created_at)).max(0.0),
        ..Default::default()
    }
}

/// Flower's checks of a message's metadata; returns every problem found.
pub fn validate_message(msg: &pb::Message, is_reply: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(m) = msg.metadata.as_ref() else {
        return vec!["message has no metadata".into()];
    };
    if m.message_id.is_empty() {
        errors.push("empty `metadata.message_id`".into());
    }
    // Unix time of 28 February 2025: Flower refuses anything older as not a timestamp.
    if m.created_at < 1_740_700_800.0 {
        errors.push("`metadata.created_at` must be the Unix time (seconds) the message was created".into());
    }
    if m.ttl <= 0.0 {
        errors.push("`metadata.ttl` must be higher than zero".into());
    }
    if m.created_at + m.ttl <= now_secs() {
        errors.push("Message TTL has expired".into());
    }
    if m.src_node_id == 0 {
        errors.push("`metadata.src_node_id` is not set".into());
    }
    if m.dst_node_id == 0 {
        errors.push("`metadata.dst_node_id` is not set".into());
    }
    if m.message_type.is_empty() {
        errors.push("`metadata.message_type` must be set".into());
    }
    if msg.content.is_some() == msg.error.is_some() {
        errors.push("either message `content` or `error` must be set (but not both)".into());
    }
    if is_reply {
        if m.reply_to_message_id.is_empty() {
            errors.push("`metadata.reply_to_message_id` must be set".into());
        }
        if m.src_node_id == SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.src_node_id` is {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
        if m.dst_node_id != SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.dst_node_id` is not {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
    } else {
        if !m.reply_to_message_id.is_empty() {
            errors.push("`metadata.reply_to_message_id` must not be set".into());
        }
        if m.src_node_id != SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.src_node_id` is not {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
        if m.dst_node_id == SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.dst_node_id` is {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
    }
    errors
}

/// Fails with INVALID_ARGUMENT listing every problem, if there are any.
pub fn require_valid(msgs: &[StoredMessage], is_reply: bool) -> Result<()> {
    for msg in msgs {
        let errors = validate_message(&msg.message, is_reply);
        if !errors.is_empty() {
            return Err(Error::InvalidArgument(format!("malformed message: {}", errors.join(", "))));
        }
    }
    Ok(())
}

/// Shorthand used by several services.
pub fn finished(sub_status: &str, details: &str) -> pb::RunStatus {
    status::status(status::FINISHED, sub_status, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::conformance::message;
    use crate::state::memory::MemoryState;
    use crate::state::NewRun;

    /// A link with two running runs and one node; `(link, node, run a, run b)`.
    fn link_with_two_runs() -> (Arc<Link>, u64, u64, u64) {
        let link = Link::new(Arc::new(MemoryState::new()), InputLimits::default());
        let runs: Vec<u64> = (0..2).map(|_| link.state.create_run(NewRun::default()).unwrap()).collect();
        for &run_id in &runs {
            for s in [status::STARTING, status::RUNNING] {
                assert!(link.update_run_status(run_id, status::status(s, "", "")).unwrap());
            }
        }
        let node = link.state.create_node(30.0).unwrap();
        (link, node, runs[0], runs[1])
    }

    #[test]
    fn a_node_that_names_its_busy_runs_gets_one_message_per_run_until_it_replies() {
        let (link, node, a, b) = link_with_two_runs();
        for (run_id, id) in [(a, "a1"), (a, "a2"), (b, "b1")] {
            link.state.store_instruction(message(run_id, 1, node, "", id, 60.0)).unwrap().unwrap();
        }
        link.node_busy_with(node, vec![]);
        let first = link.next_instruction(node).unwrap().unwrap();
        let second = link.next_instruction(node).unwrap().unwrap();
        assert_ne!(first.metadata().run_id, second.metadata().run_id, "one message per run");
        assert!(link.next_instruction(node).unwrap().is_none(), "both runs are busy");

        // The node replies for run a before its next pull arrives, still naming a as busy
        // (its list was made before): a is free all the same.
        link.node_done_with(node, a);
        link.node_busy_with(node, vec![a, b]);
        assert_eq!(link.next_instruction(node).unwrap().unwrap().id(), "a2");

        // A node that stops naming a run (it gave up on the message) frees it too.
        link.node_busy_with(node, vec![]);
        link.state.store_instruction(message(b, 1, node, "", "b2", 60.0)).unwrap().unwrap();
        assert_eq!(link.next_instruction(node).unwrap().unwrap().id(), "b2");
    }
}
