//! Which instruction a node gets next: runs take turns at each node, and a node that runs
//! one message per run at once (a Sepal SuperNode naming its busy runs) is not handed a
//! second one of a run it is busy with.

use super::{lock, Link};
use crate::error::Result;
use crate::state::{Change, Pick, StoredMessage};

impl Link {
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
            if runs.remove(&run_id) {
                self.notify(Change::Instruction(node_id));
            }
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
            self.objects.adopt(run_id, &msg.tree);
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
        self.events.instructions.forget(node_id);
        self.node_changed();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::InputLimits;
    use crate::state::conformance::message;
    use crate::state::memory::MemoryState;
    use crate::state::status;
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
