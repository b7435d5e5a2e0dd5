//! What the three services share: the state, the object store, wake-ups, and the rules
//! that more than one service applies: run status gates (here), message validation and
//! objects ([`messages`]), per-run quotas and admission ([`quotas`]), which run a node
//! serves next ([`turns`]), and when a reply's objects may upload ([`uploads`]).

mod changes;
mod messages;
mod quotas;
mod turns;
mod uploads;
mod wakeups;

pub use messages::{require_valid, validate_message};
pub use uploads::{ReplyQueues, MAX_WAITING_PER_NODE};
pub use wakeups::Wakeups;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use sepal_executor::log::host_line;
use sepal_proto::pb;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::limits::InputLimits;
use crate::objects::Objects;
use crate::state::status::{self, RunState};
use crate::state::{Change, LinkState};

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
    /// Each run's replies in the order they arrived, for back-pressure on their uploads.
    pub uploads: ReplyQueues,
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
    /// Bumped when a run is submitted (the launcher and held PullAppInputs calls wait on
    /// this).
    pub runs_submitted: watch::Sender<u64>,
    /// A run's log or status changed (StreamLogs waits on this).
    pub run_changed: watch::Sender<u64>,
    /// By node: an instruction for it was stored, or it finished one (its next may be due).
    pub instructions: Wakeups,
    /// By run: a reply of the run was stored.
    pub replies: Wakeups,
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
        let link = Arc::new(Self {
            state,
            objects,
            events: Events::default(),
            limits,
            uploads: ReplyQueues::default(),
            push_locks: Mutex::default(),
            last_served: Mutex::default(),
            released: Mutex::default(),
            told_to_wait: Mutex::default(),
            told_over_quota: Mutex::default(),
            busy: Mutex::default(),
        });
        link.listen_to_replicas();
        link
    }

    /// The run's status, or `RunNotFound`.
    pub fn run_status(&self, run_id: u64) -> Result<pb::RunStatus> {
        self.state.run_status(run_id)?.ok_or(Error::RunNotFound(run_id))
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
            self.notify(Change::RunChanged(run_id));
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
        self.uploads.forget_run(run_id);
        self.events.replies.forget(run_id);
        lock(&self.push_locks).remove(&run_id);
        lock(&self.told_over_quota).remove(&run_id);
    }

    /// Records that a run was submitted (wakes the launcher and held PullAppInputs).
    pub fn run_submitted(&self) {
        self.notify(Change::RunSubmitted);
    }

    /// Hands the oldest pending run to a ServerApp (pending -> starting), unless as many
    /// runs as allowed already have one.
    pub fn claim_pending_run(&self) -> Result<Option<u64>> {
        match self.state.pending_run_ids()?.first() {
            Some(&oldest) if self.may_start_run(oldest)? => {}
            _ => return Ok(None),
        }
        let claimed = self.state.claim_pending_run()?;
        if let Some(run_id) = claimed {
            self.notify(Change::RunChanged(run_id));
        }
        Ok(claimed)
    }

    /// Appends text to a run's log and wakes log streams. App text must have been made
    /// safe first ([`app_text`](sepal_executor::log::app_text), or the sinks of
    /// [`sepal_executor::log`]); the SuperLink's own lines go through [`Link::add_host_line`].
    pub fn add_log(&self, run_id: u64, text: &str) -> Result<()> {
        self.state.add_log(run_id, text)?;
        self.notify(Change::RunChanged(run_id));
        Ok(())
    }

    /// Appends a line of the SuperLink's own to a run's log: `SEPAL   : text`, on one line
    /// whatever `text` holds ([`host_line`]), so that no app can write one like it.
    pub fn add_host_line(&self, run_id: u64, text: &str) -> Result<()> {
        self.add_log(run_id, &host_line(text))
    }

    /// Records that a node registered or left (wakes waiters on nodes).
    pub fn node_changed(&self) {
        self.notify(Change::NodeChanged);
    }
}

/// Shorthand used by several services.
pub fn finished(sub_status: &str, details: &str) -> pb::RunStatus {
    status::status(status::FINISHED, sub_status, details)
}
