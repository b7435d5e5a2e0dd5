//! Changes, told once: [`Link::notify`] wakes what waits on a change in this process and
//! announces it to the other SuperLink processes sharing the state, whose listeners
//! [`Link::apply`] it to their own waiters. Every wake-up goes through here, so a replica
//! that did not make a change still sees it.

use std::sync::{Arc, Weak};

use super::{Events, Link};
use crate::state::Change;

impl Link {
    /// Wakes this process's waiters on `change` and announces it to other processes.
    pub fn notify(&self, change: Change) {
        self.apply(change);
        self.state.announce(change);
    }

    /// Wakes this process's waiters on `change` (made here or announced by another).
    pub fn apply(&self, change: Change) {
        let events = &self.events;
        match change {
            Change::RunSubmitted => Events::bump(&events.runs_submitted),
            Change::RunChanged(_) => Events::bump(&events.run_changed),
            Change::Instruction(node) => events.instructions.wake(node),
            Change::Reply(run) => events.replies.wake(run),
            Change::NodeChanged => Events::bump(&events.node_changed),
            Change::ObjectStored => Events::bump(&events.object_stored),
        }
    }

    /// Applies the changes other processes announce, for as long as the link lives.
    pub(super) fn listen_to_replicas(self: &Arc<Self>) {
        if !self.state.shared() {
            return;
        }
        let link: Weak<Link> = Arc::downgrade(self);
        let sink = Arc::new(move |change| {
            if let Some(link) = link.upgrade() {
                link.apply(change);
            }
        });
        if let Err(e) = self.state.listen(sink) {
            tracing::error!(
                "cannot hear of other SuperLink replicas' changes (held calls wake on their deadlines only): {e}"
            );
        }
    }
}
