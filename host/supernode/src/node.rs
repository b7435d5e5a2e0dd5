//! What a SuperNode remembers: its runs (with their FAB and the ClientApp context that
//! persists across rounds) and the instructions being served to ClientApps over ClientAppIo
//! (one per run at a time: the main loop hands out no second one of a run).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use sepal_proto::pb;
use tokio::sync::{oneshot, watch};

/// A run as the node knows it.
#[derive(Debug, Clone)]
pub struct RunEntry {
    /// The run's identity and override config (from the SuperLink).
    pub run: pb::Run,
    /// The run's FAB (hash verified).
    pub fab: Bytes,
    /// The ClientApp the FAB carries.
    pub app: sepal_executor::AppCode,
    /// The ClientApp context: node config, fused run config and the persistent state.
    pub context: pb::Context,
}

/// What a ClientApp handed back for an instruction.
#[derive(Debug)]
pub struct Completion {
    /// The reply (content-less wire form) and its object tree; objects are in the store.
    pub reply: pb::Message,
    /// The reply's object tree.
    pub tree: pb::ObjectTree,
    /// The context after the ClientApp ran.
    pub context: pb::Context,
}

/// An instruction being served to a ClientApp over ClientAppIo.
struct Job {
    /// Tells it from the others (a run's later instruction is another job).
    id: u64,
    run_id: u64,
    instruction: pb::Message,
    tree: pb::ObjectTree,
    token: Option<String>,
    reply: Option<(pb::Message, pb::ObjectTree)>,
    done: Option<oneshot::Sender<Completion>>,
}

/// Why a ClientAppIo call about the current job was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    /// The token is no job's.
    #[error("Invalid token.")]
    InvalidToken,
    /// There is no instruction waiting.
    #[error("no message is waiting for a ClientApp")]
    NoMessage,
    /// The reply does not answer the token's instruction.
    #[error("{0}")]
    BadReply(String),
    /// The ClientApp finished before pushing its reply.
    #[error("no reply was pushed before PushClientAppOutputs")]
    NoReply,
    /// A spare ClientApp waited long enough: it may ask again.
    #[error("no instruction for this ClientApp yet; ask again")]
    NotYet,
}

#[derive(Default)]
struct Inner {
    node_id: u64,
    runs: HashMap<u64, RunEntry>,
    /// FABs by hash (verified), so a FAB used by several runs is fetched once.
    fabs: HashMap<String, Bytes>,
    /// In the order they were offered.
    jobs: Vec<Job>,
    next_job: u64,
    /// Tokens given to ClientApp processes started ahead of need (spares), not yet bound
    /// to an instruction.
    spares: HashSet<String>,
    /// The node is stopping: held calls end now.
    closed: bool,
}

/// The node's state, shared by the Fleet loop and the ClientAppIo service.
#[derive(Default)]
pub struct NodeState {
    inner: Mutex<Inner>,
    /// Bumped whenever an instruction is offered (or the node stops), to wake held
    /// ClientAppIo calls.
    offered: watch::Sender<u64>,
}

/// An instruction offered to ClientApps ([`NodeState::offer`]); dropping it withdraws the
/// instruction, whether or not it was answered.
pub struct Offer {
    state: Arc<NodeState>,
    id: u64,
    /// Completes when a ClientApp has pushed the reply and its context.
    pub done: oneshot::Receiver<Completion>,
}

impl Drop for Offer {
    fn drop(&mut self) {
        self.state.withdraw(self.id);
    }
}

/// A fresh ClientAppIo token (256 hex characters, as Flower's).
pub fn new_token() -> String {
    let mut bytes = [0u8; 128];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl NodeState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node id given by the SuperLink (0 before registration).
    pub fn node_id(&self) -> u64 {
        self.lock().node_id
    }

    /// Records the node id after (re-)registration.
    pub fn set_node_id(&self, node_id: u64) {
        self.lock().node_id = node_id;
    }

    /// The run, if known.
    pub fn run(&self, run_id: u64) -> Option<RunEntry> {
        self.lock().runs.get(&run_id).cloned()
    }

    /// A FAB fetched earlier, by its hash.
    pub fn fab(&self, hash: &str) -> Option<Bytes> {
        self.lock().fabs.get(hash).cloned()
    }

    /// Remembers a FAB whose hash was verified.
    pub fn add_fab(&self, hash: &str, fab: Bytes) {
        self.lock().fabs.insert(hash.to_string(), fab);
    }

    /// Remembers a run.
    pub fn add_run(&self, entry: RunEntry) {
        self.lock().runs.insert(entry.run.run_id, entry);
    }

    /// Replaces a run's context (the ClientApp's state persists this way).
    pub fn set_context(&self, run_id: u64, context: pb::Context) {
        if let Some(entry) = self.lock().runs.get_mut(&run_id) {
            entry.context = context;
        }
    }

    /// Offers an instruction to ClientApps, beside any others offered. With `token`, only
    /// that token may take it (a ClientApp started for it); without, the first to request a
    /// token for its run does. It is withdrawn when the [`Offer`] is dropped.
    pub fn offer(
        self: &Arc<Self>,
        run_id: u64,
        instruction: pb::Message,
        tree: pb::ObjectTree,
        token: Option<String>,
    ) -> Offer {
        let (tx, done) = oneshot::channel();
        let mut inner = self.lock();
        if let Some(token) = &token {
            inner.spares.remove(token);
        }
        let id = inner.next_job;
        inner.next_job += 1;
        inner.jobs.push(Job { id, run_id, instruction, tree, token, reply: None, done: Some(tx) });
        drop(inner);
        self.offered.send_modify(|n| *n = n.wrapping_add(1));
        Offer { state: self.clone(), id, done }
    }

    /// Ends held ClientAppIo calls, now and from now on: the node is stopping.
    pub fn close(&self) {
        self.lock().closed = true;
        self.offered.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn closed(&self) -> bool {
        self.lock().closed
    }

    /// Withdraws an instruction (answered, failed or timed out): its token is void.
    fn withdraw(&self, id: u64) {
        self.lock().jobs.retain(|j| j.id != id);
    }

    /// Runs with an instruction no ClientApp has taken yet, oldest offer first.
    pub fn runs_with_pending_messages(&self) -> Vec<u64> {
        let inner = self.lock();
        let mut runs = Vec::new();
        for job in inner.jobs.iter().filter(|j| j.token.is_none()) {
            if !runs.contains(&job.run_id) {
                runs.push(job.run_id);
            }
        }
        runs
    }

    /// [`NodeState::runs_with_pending_messages`], but waits up to `wait` for an instruction
    /// to be offered when there is none (a held poll: a ClientApp process learns of a new
    /// instruction at once instead of at its next poll).
    pub async fn runs_with_pending_messages_within(&self, wait: Duration) -> Vec<u64> {
        let mut offered = self.offered.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let runs = self.runs_with_pending_messages();
            if !runs.is_empty() || self.closed() {
                return runs;
            }
            if !matches!(tokio::time::timeout_at(deadline, offered.changed()).await, Ok(Ok(()))) {
                return runs;
            }
        }
    }

    /// Hands out a token for the run's pending instruction; `None` if there is none or
    /// it is taken.
    pub fn request_token(&self, run_id: u64) -> Option<String> {
        let mut inner = self.lock();
        let job = inner.jobs.iter_mut().find(|j| j.run_id == run_id && j.token.is_none())?;
        let token = new_token();
        job.token = Some(token.clone());
        Some(token)
    }

    fn job_for<'a>(inner: &'a mut Inner, token: &str) -> Result<&'a mut Job, JobError> {
        if token.is_empty() {
            return Err(JobError::InvalidToken);
        }
        inner.jobs.iter_mut().find(|j| j.token.as_deref() == Some(token)).ok_or(JobError::InvalidToken)
    }

    /// A token for a ClientApp process started before there is an instruction for it: its
    /// PullClientAppInputs waits ([`NodeState::inputs_when_bound`]) until [`NodeState::offer`]
    /// binds an instruction to the token.
    pub fn reserve_spare(&self) -> String {
        let token = new_token();
        self.lock().spares.insert(token.clone());
        token
    }

    /// Forgets a spare's token (its process is gone).
    pub fn release_spare(&self, token: &str) {
        self.lock().spares.remove(token);
    }

    /// [`NodeState::inputs`], but for a spare's token, waits (up to `wait`) until an
    /// instruction is bound to it.
    pub async fn inputs_when_bound(&self, token: &str, wait: Duration) -> Result<RunEntry, JobError> {
        let mut offered = self.offered.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.inputs(token) {
                Err(JobError::InvalidToken) if self.lock().spares.contains(token) => {}
                answer => return answer,
            }
            if self.closed() || !matches!(tokio::time::timeout_at(deadline, offered.changed()).await, Ok(Ok(()))) {
                return Err(JobError::NotYet);
            }
        }
    }

    /// The run entry of the token's job.
    pub fn inputs(&self, token: &str) -> Result<RunEntry, JobError> {
        let mut inner = self.lock();
        let run_id = Self::job_for(&mut inner, token)?.run_id;
        inner.runs.get(&run_id).cloned().ok_or(JobError::NoMessage)
    }

    /// The token's instruction (content-less) and its tree.
    pub fn instruction(&self, token: &str) -> Result<(pb::Message, pb::ObjectTree), JobError> {
        let mut inner = self.lock();
        let job = Self::job_for(&mut inner, token)?;
        Ok((job.instruction.clone(), job.tree.clone()))
    }

    /// Stores the ClientApp's reply after checking it answers the instruction.
    pub fn put_reply(&self, token: &str, reply: pb::Message, tree: pb::ObjectTree) -> Result<u64, JobError> {
        let mut inner = self.lock();
        let node_id = inner.node_id;
        let job = Self::job_for(&mut inner, token)?;
        let ins = job.instruction.metadata.clone().unwrap_or_default();
        let meta = reply.metadata.as_ref().ok_or_else(|| JobError::BadReply("reply without metadata".into()))?;
        if meta.reply_to_message_id != ins.message_id {
            return Err(JobError::BadReply(format!(
                "reply answers message {:?}, but the ClientApp was given {:?}",
                meta.reply_to_message_id, ins.message_id
            )));
        }
        if tree.object_id != meta.message_id {
            return Err(JobError::BadReply("the reply's object tree does not belong to it".into()));
        }
        if meta.src_node_id != node_id || meta.run_id != ins.run_id {
            return Err(JobError::BadReply("the reply names another node or run".into()));
        }
        job.reply = Some((reply, tree));
        Ok(job.run_id)
    }

    /// The tree of the reply pushed for the token's job, if any.
    pub fn reply_tree(&self, token: &str) -> Result<Option<pb::ObjectTree>, JobError> {
        let mut inner = self.lock();
        Ok(Self::job_for(&mut inner, token)?.reply.as_ref().map(|(_, t)| t.clone()))
    }

    /// Completes the token's job with the ClientApp's final context.
    pub fn complete(&self, token: &str, context: pb::Context) -> Result<(), JobError> {
        let mut inner = self.lock();
        let job = Self::job_for(&mut inner, token)?;
        let (reply, tree) = job.reply.take().ok_or(JobError::NoReply)?;
        let done = job.done.take();
        let (id, run_id) = (job.id, job.run_id);
        inner.jobs.retain(|j| j.id != id);
        if let Some(entry) = inner.runs.get_mut(&run_id) {
            entry.context = context.clone();
        }
        if let Some(done) = done {
            let _ = done.send(Completion { reply, tree, context });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_held_poll_wakes_when_an_instruction_is_offered() {
        let state = Arc::new(NodeState::default());
        assert!(state.runs_with_pending_messages_within(Duration::from_millis(20)).await.is_empty());

        let waiter = {
            let state = state.clone();
            tokio::spawn(async move { state.runs_with_pending_messages_within(Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _done = state.offer(7, pb::Message::default(), pb::ObjectTree::default(), None);
        let runs = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken, not timed out").unwrap();
        assert_eq!(runs, vec![7]);
    }

    #[tokio::test]
    async fn a_spare_gets_its_inputs_once_an_instruction_is_bound_to_it() {
        let state = Arc::new(NodeState::default());
        state.add_run(RunEntry {
            run: pb::Run { run_id: 7, ..Default::default() },
            fab: Bytes::new(),
            app: sepal_executor::AppCode::Python("a:b".into()),
            context: pb::Context::default(),
        });
        let token = state.reserve_spare();
        let waiter = {
            let (state, token) = (state.clone(), token.clone());
            tokio::spawn(async move { state.inputs_when_bound(&token, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "held until there is work");
        let _done = state.offer(7, pb::Message::default(), pb::ObjectTree::default(), Some(token));
        let entry = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").unwrap().unwrap();
        assert_eq!(entry.run.run_id, 7);

        // A token that is no spare is refused at once; a spare with no work ends its wait.
        assert_eq!(
            state.inputs_when_bound("forged", Duration::from_secs(30)).await.err(),
            Some(JobError::InvalidToken)
        );
        let idle = state.reserve_spare();
        assert_eq!(state.inputs_when_bound(&idle, Duration::from_millis(20)).await.err(), Some(JobError::NotYet));
    }

    fn reply_to(ins_id: &str, node_id: u64, run_id: u64) -> (pb::Message, pb::ObjectTree) {
        let metadata = pb::Metadata {
            message_id: "r".into(),
            reply_to_message_id: ins_id.into(),
            src_node_id: node_id,
            run_id,
            ..Default::default()
        };
        (
            pb::Message { metadata: Some(metadata), ..Default::default() },
            pb::ObjectTree { object_id: "r".into(), ..Default::default() },
        )
    }

    fn instruction(id: &str, run_id: u64) -> pb::Message {
        pb::Message {
            metadata: Some(pb::Metadata { message_id: id.into(), run_id, ..Default::default() }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn instructions_of_several_runs_are_served_at_once_each_to_its_own_token() {
        let state = Arc::new(NodeState::default());
        let mut one = state.offer(1, instruction("i1", 1), pb::ObjectTree::default(), None);
        let two = state.offer(2, instruction("i2", 2), pb::ObjectTree::default(), None);
        assert_eq!(state.runs_with_pending_messages(), vec![1, 2], "oldest offer first");

        let t2 = state.request_token(2).expect("run 2's token");
        assert_eq!(state.request_token(2), None, "taken");
        assert_eq!(state.runs_with_pending_messages(), vec![1]);
        let t1 = state.request_token(1).expect("run 1's token");
        assert_eq!(state.instruction(&t1).unwrap().0, instruction("i1", 1));
        assert_eq!(state.instruction(&t2).unwrap().0, instruction("i2", 2));
        let (reply, tree) = reply_to("i2", 0, 2);
        assert!(matches!(state.put_reply(&t1, reply.clone(), tree.clone()), Err(JobError::BadReply(_))), "not t1's");

        // Run 2's offer is dropped (timed out): its token is void, run 1's is not.
        drop(two);
        assert_eq!(state.put_reply(&t2, reply, tree), Err(JobError::InvalidToken));
        let (reply, tree) = reply_to("i1", 0, 1);
        state.put_reply(&t1, reply, tree).unwrap();
        state.complete(&t1, pb::Context::default()).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(10), &mut one.done).await.expect("completed").unwrap();
        assert_eq!(done.tree.object_id, "r");
        assert_eq!(state.instruction(&t1), Err(JobError::InvalidToken), "done, so void");
    }
}
