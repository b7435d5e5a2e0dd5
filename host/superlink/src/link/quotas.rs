//! What one run may hold and when a run may start: the per-run quotas on pushes (messages
//! in flight, bytes) and the limit on runs running at once.

use bytes::Bytes;
use sepal_core::error::ObjectError;
use sepal_proto::pb;

use super::{lock, Link};
use crate::error::{Error, Result};
use crate::state::{Change, RunState, StoredMessage};

impl Link {
    /// A push of `run_id` refused for `e`: a refusal over a quota is also said in the run's
    /// log (once per run), since a Python ServerApp's grid shows RESOURCE_EXHAUSTED as
    /// Flower's "2GB gRPC limit" and carries on.
    pub(super) fn refused(&self, run_id: u64, e: Error) -> Error {
        let over_quota = matches!(e, Error::ResourceExhausted(_) | Error::Object(ObjectError::RunQuota { .. }));
        if over_quota && lock(&self.told_over_quota).insert(run_id) {
            let why = e.text();
            let _ = self.add_host_line(run_id, &format!("push refused: {why}"));
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
        let mut nodes: Vec<u64> = msgs.iter().map(|m| m.metadata().dst_node_id).collect();
        nodes.sort_unstable();
        nodes.dedup();
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
        for node in nodes {
            self.notify(Change::Instruction(node));
        }
        Ok((ids, to_push))
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
                "waiting to start: {max} runs are running, the most this SuperLink runs at once \
                 (--max-concurrent-runs); this run starts when one of them ends"
            );
            self.add_host_line(run_id, &line)?;
        }
        Ok(false)
    }
}
