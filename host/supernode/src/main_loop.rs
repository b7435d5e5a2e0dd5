//! The SuperNode's main loop: register, heartbeat, pull instructions, and for each fetch
//! what it needs, run the ClientApp and push the reply; reconnect whenever the SuperLink
//! goes away.
//!
//! Several messages run at once, up to `max_concurrent_messages`, but at most one per run:
//! a run's next message waits for its previous one, so one run's slow messages take one
//! worker and never another run's turn. The node tells a Sepal SuperLink which runs it is
//! busy with ([`sepal_wire::BUSY_RUNS_HEADER`]), so that it is offered other runs' work;
//! a message of a busy run that comes anyway (a Flower SuperLink) waits here.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sepal_core::routing::error_reply;
use sepal_core::store::{ObjectLookup, ObjectStore};
use sepal_executor::{time_to_reply, AppFailure, RunApp, Side};
use sepal_proto::pb;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::clientapps::{Job, Runner};
use crate::config::Config;
use crate::fleet::{Fleet, Pulled, HEARTBEAT_INTERVAL};
use crate::metrics::{NodeMetrics, Outcome};
use crate::node::{NodeState, RunEntry};

/// How long a pull may be held by a Sepal SuperLink waiting for an instruction.
const PULL_WAIT: Duration = Duration::from_secs(20);

/// Pause between pulls when the SuperLink answers at once (a Flower SuperLink).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How many object pushes a node has in flight at once, over all its replies: fewer than a
/// Sepal SuperLink lets wait per node (8, as many as Flower's SuperNode pushes at once).
const CONCURRENT_PUSHES: usize = 4;

/// A running SuperNode.
pub struct SuperNode {
    shared: Arc<Shared>,
    max_concurrent: usize,
}

/// What every message's handling shares.
struct Shared {
    fleet: Fleet,
    state: Arc<NodeState>,
    objects: Arc<ObjectStore>,
    runner: Arc<dyn Runner>,
    metrics: NodeMetrics,
    node_config: HashMap<String, pb::Scalar>,
    clientapp_timeout: Option<Duration>,
    /// [`CONCURRENT_PUSHES`] permits.
    push_slots: Semaphore,
}

/// What went wrong with one instruction before the ClientApp could run.
enum Prepare {
    /// The run is not running any more (the SuperLink said PERMISSION_DENIED).
    RunNotRunning(String),
    /// The run's FAB or config is unusable: reply with this error.
    Unusable(AppFailure),
    /// The SuperLink could not be reached or refused for another reason.
    Link(Status),
}

impl From<Status> for Prepare {
    fn from(s: Status) -> Self {
        if s.code() == Code::PermissionDenied {
            Prepare::RunNotRunning(s.message().to_string())
        } else {
            Prepare::Link(s)
        }
    }
}

fn is_unknown_node(status: &Status) -> bool {
    status.code() == Code::Unauthenticated && status.message().contains("Invalid node ID")
}

impl SuperNode {
    /// A SuperNode over the given parts.
    pub fn new(
        config: &Config,
        fleet: Fleet,
        state: Arc<NodeState>,
        objects: Arc<ObjectStore>,
        runner: Arc<dyn Runner>,
        metrics: NodeMetrics,
    ) -> Self {
        let shared = Shared {
            fleet,
            state,
            objects,
            runner,
            metrics,
            node_config: config.node_config.clone(),
            clientapp_timeout: config.clientapp_timeout,
            push_slots: Semaphore::new(CONCURRENT_PUSHES),
        };
        Self { shared: Arc::new(shared), max_concurrent: config.max_concurrent_messages.max(1) }
    }

    /// Registers and serves instructions until `shutdown`, then unregisters.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Status> {
        let shared = &self.shared;
        shared.register().await?;
        let heartbeat = tokio::spawn(heartbeat(shared.fleet.clone(), shared.state.clone()));
        let result = self.serve(shutdown).await;
        heartbeat.abort();
        let node_id = shared.state.node_id();
        match shared.fleet.delete_node(node_id).await {
            Ok(()) => tracing::info!(node_id, "node unregistered"),
            Err(e) => tracing::warn!(node_id, "could not unregister the node: {}", e.message()),
        }
        result
    }

    /// Pulls while a worker is free and hands each instruction to a worker of its own, one
    /// per run at a time. A pull in flight is never dropped (its instruction would be lost):
    /// it is awaited across workers finishing.
    async fn serve(&self, shutdown: impl Future<Output = ()>) -> Result<(), Status> {
        type PullFuture = Pin<Box<dyn Future<Output = Result<Option<Pulled>, Status>> + Send>>;
        let mut workers = tokio::task::JoinSet::new();
        let mut worker_runs = HashMap::new();
        let mut in_hand = InHand::default();
        let mut pull: Option<PullFuture> = None;
        tokio::pin!(shutdown);
        loop {
            if pull.is_none() && workers.len() < self.max_concurrent && in_hand.waiting() < self.max_concurrent {
                pull = Some(Box::pin(self.shared.clone().pull_next(in_hand.busy_runs())));
            }
            let next = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                Some(done) = workers.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            tracing::error!("a message's handling failed: {e}");
                            e.id()
                        }
                    };
                    worker_runs.remove(&id).and_then(|run_id| in_hand.finish(run_id))
                }
                pulled = async { pull.as_mut().expect("polled only when set").await }, if pull.is_some() => {
                    pull = None;
                    pulled?.and_then(|p| in_hand.take(p))
                }
            };
            if let Some(pulled) = next {
                let run_id = run_of(&pulled);
                let handle = workers.spawn(self.shared.clone().handle(pulled));
                worker_runs.insert(handle.id(), run_id);
            }
        }
    }
}

/// The run an instruction belongs to (0 if it has no metadata; its handling says so).
fn run_of(pulled: &Pulled) -> u64 {
    pulled.message.metadata.as_ref().map_or(0, |m| m.run_id)
}

/// The runs the node has a message of in hand, and messages of those runs that came while
/// one was running.
#[derive(Default)]
struct InHand {
    runs: HashMap<u64, VecDeque<Pulled>>,
}

impl InHand {
    fn busy_runs(&self) -> Vec<u64> {
        self.runs.keys().copied().collect()
    }

    /// How many messages wait for their run's previous one.
    fn waiting(&self) -> usize {
        self.runs.values().map(VecDeque::len).sum()
    }

    /// A pulled message: to start now, or `None` when it waits behind its run's.
    fn take(&mut self, pulled: Pulled) -> Option<Pulled> {
        match self.runs.get_mut(&run_of(&pulled)) {
            Some(queue) => {
                queue.push_back(pulled);
                None
            }
            None => {
                self.runs.insert(run_of(&pulled), VecDeque::new());
                Some(pulled)
            }
        }
    }

    /// A message of `run_id` is done: the run's next one, if one waits.
    fn finish(&mut self, run_id: u64) -> Option<Pulled> {
        let queue = self.runs.get_mut(&run_id)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.runs.remove(&run_id);
        }
        next
    }
}

impl Shared {
    async fn register(&self) -> Result<(), Status> {
        let node_id = self.fleet.create_node().await?;
        self.state.set_node_id(node_id);
        tracing::info!(node_id, "registered with the SuperLink");
        Ok(())
    }

    /// One pull (naming the runs the node is `busy` with); `None` when it brought nothing.
    /// A SuperLink that answers at once (Flower's) is asked again after a pause.
    async fn pull_next(self: Arc<Self>, busy: Vec<u64>) -> Result<Option<Pulled>, Status> {
        let started = Instant::now();
        let pulled = match self.fleet.pull(self.state.node_id(), PULL_WAIT, &busy).await {
            Ok(p) => p,
            Err(s) if is_unknown_node(&s) => {
                tracing::warn!("the SuperLink no longer knows this node (it restarted?); registering again");
                self.register().await?;
                return Ok(None);
            }
            Err(s) if s.code() == Code::DeadlineExceeded => None,
            Err(s) => return Err(s),
        };
        self.metrics.record_pull(pulled.is_some(), started.elapsed());
        if pulled.is_none() && started.elapsed() < PULL_WAIT / 2 {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(pulled)
    }

    async fn handle(self: Arc<Self>, pulled: Pulled) {
        let arrived = Instant::now();
        let Pulled { message, tree, objects } = pulled;
        let Some(meta) = message.metadata.clone() else {
            tracing::error!("the SuperLink sent a message without metadata; ignored");
            return;
        };
        let group = if meta.group_id.is_empty() { String::new() } else { format!(", round {}", meta.group_id) };
        tracing::info!(run_id = meta.run_id, "received {} message {}{group}", meta.message_type, meta.message_id);
        let result = match self.prepare(&meta, &tree, objects).await {
            Ok(entry) => {
                let deadline = Instant::now() + time_to_reply(&meta, self.clientapp_timeout);
                let job = Job { run: entry.run, app: entry.app, instruction: message, tree, deadline };
                self.runner.run(job).await
            }
            Err(Prepare::RunNotRunning(why)) => {
                tracing::info!(run_id = meta.run_id, "run is not running ({why}); message ignored");
                self.metrics.record(Outcome::Ignored, arrived.elapsed());
                return;
            }
            Err(Prepare::Link(s)) => {
                tracing::error!(run_id = meta.run_id, "could not fetch what the message needs: {}", s.message());
                Err(AppFailure::Load(format!("the SuperNode could not fetch the run's inputs: {}", s.message())))
            }
            Err(Prepare::Unusable(e)) => Err(e),
        };
        let (outcome, (reply, reply_tree)) = match result {
            Ok(done) => {
                self.state.set_context(meta.run_id, done.context);
                (Outcome::Replied, (done.reply, done.tree))
            }
            Err(e) => {
                tracing::warn!(run_id = meta.run_id, "ClientApp failed: {e}");
                (Outcome::Failed, self.error_reply(&meta, &e))
            }
        };
        self.push(meta.run_id, reply, reply_tree).await;
        self.objects.delete(&meta.message_id);
        self.metrics.record(outcome, arrived.elapsed());
    }

    /// Makes sure the run, its FAB and the instruction's objects are here: those that came
    /// inline, then the rest by PullObject, then the confirmation. When every object came
    /// inline, the SuperLink counted the delivery as confirmed.
    async fn prepare(
        &self,
        meta: &pb::Metadata,
        tree: &pb::ObjectTree,
        inline: Vec<(String, Bytes)>,
    ) -> Result<RunEntry, Prepare> {
        let node_id = self.state.node_id();
        let entry = match self.state.run(meta.run_id) {
            Some(entry) => entry,
            None => {
                let entry = self.fetch_run(node_id, meta.run_id).await?;
                self.state.add_run(entry.clone());
                entry
            }
        };
        let unusable = |e: sepal_core::ObjectError| Prepare::Unusable(AppFailure::Load(e.to_string()));
        let mut to_pull = self.objects.preregister(meta.run_id, tree).map_err(unusable)?;
        let all_inline = sepal_core::store::covers(tree, inline.iter().map(|(id, _)| id.as_str()));
        for (id, content) in inline {
            if self.objects.put(&id, content).map_err(unusable)? {
                to_pull.retain(|wanted| *wanted != id);
            }
        }
        for id in &to_pull {
            let content = self.pull_object(node_id, meta.run_id, id).await?;
            self.objects.put(id, content).map_err(unusable)?;
        }
        if !all_inline {
            self.fleet.confirm(node_id, meta.run_id, &meta.message_id).await?;
        }
        Ok(entry)
    }

    async fn fetch_run(&self, node_id: u64, run_id: u64) -> Result<RunEntry, Prepare> {
        let run = self.fleet.get_run(node_id, run_id).await?;
        let fab = match self.state.fab(&run.fab_hash) {
            Some(fab) => fab,
            None => self.fleet.get_fab(node_id, &run.fab_hash, run_id).await?,
        };
        let unusable = Prepare::Unusable;
        let parsed = RunApp::read(&fab, &run.fab_hash).map_err(unusable)?;
        // Kept only once its hash is verified, for the runs that share it.
        self.state.add_fab(&run.fab_hash, fab.clone());
        let run_config = parsed.run_config(&run.override_config).map_err(unusable)?;
        let app = parsed.code(Side::Client).map_err(unusable)?;
        let context = pb::Context {
            run_id,
            node_id,
            node_config: self.node_config.clone(),
            state: Some(pb::RecordDict::default()),
            run_config,
        };
        tracing::info!(run_id, fab_id = %run.fab_id, "new run");
        Ok(RunEntry { run, fab, app, context })
    }

    /// Pulls one object, waiting while the sender is still uploading it.
    async fn pull_object(&self, node_id: u64, run_id: u64, id: &str) -> Result<Bytes, Prepare> {
        let mut delay = Duration::from_millis(50);
        let give_up = Instant::now() + Duration::from_secs(600);
        loop {
            let res = self.fleet.pull_object(node_id, run_id, id).await?;
            if res.object_available {
                return Ok(res.object_content);
            }
            if !res.object_found || Instant::now() > give_up {
                let why = format!("object {id} is not available on the SuperLink");
                return Err(Prepare::Link(Status::not_found(why)));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// A Flower error reply to `ins`, stored with its objects.
    fn error_reply(&self, ins: &pb::Metadata, failure: &AppFailure) -> (pb::Message, pb::ObjectTree) {
        let message = error_reply(ins, self.state.node_id(), failure.to_error());
        let (tree, id) = self.objects.insert_message(ins.run_id, &message);
        let mut wire = message.to_wire_pb();
        if let Some(m) = wire.metadata.as_mut() {
            m.message_id = id;
        }
        (wire, tree)
    }

    async fn push(&self, run_id: u64, reply: pb::Message, tree: pb::ObjectTree) {
        let node_id = self.state.node_id();
        let reply_id = tree.object_id.clone();
        let result = async {
            let inline = match self.fleet.takes_inline_objects() {
                true => self.objects.collect(&tree, sepal_wire::INLINE_OBJECTS_MAX_BYTES).0,
                false => Vec::new(),
            };
            let inline = inline
                .into_iter()
                .map(|(object_id, content)| pb::InlineObject { object_id, object_content: content })
                .collect();
            let wanted = self.fleet.push_reply(node_id, reply, tree, inline).await?;
            let pushes = wanted.into_iter().map(|id| async move {
                let ObjectLookup::Available(content) = self.objects.get(&id) else {
                    return Err(Status::internal(format!("reply object {id} is missing on this node")));
                };
                let _slot = self.push_slots.acquire().await.map_err(|_| Status::cancelled("shutting down"))?;
                self.fleet.push_object(node_id, run_id, &id, content).await
            });
            // Several at once, so the SuperLink checks one object while the next arrives.
            stream::iter(pushes).buffer_unordered(CONCURRENT_PUSHES).try_for_each(|_| async { Ok(()) }).await
        }
        .await;
        match result {
            Ok(()) => tracing::info!(run_id, "reply {reply_id} sent"),
            Err(s) if s.code() == Code::PermissionDenied => {
                tracing::info!(run_id, "run is not running ({}); reply dropped", s.message())
            }
            Err(s) => tracing::error!(run_id, "could not send reply {reply_id}: {}", s.message()),
        }
        self.objects.delete(&reply_id);
    }
}

/// Sends a heartbeat every ~18-22 s (Flower's schedule), so the SuperLink sees the node
/// as online; after a failure, retries as Flower does: after 1 s, doubling up to 20 s.
/// Skipped while the node's held pulls count as heartbeats (a Sepal SuperLink says so).
async fn heartbeat(fleet: Fleet, state: Arc<NodeState>) {
    let mut retry = HEARTBEAT_RETRY_FIRST;
    loop {
        let jitter: f64 = rand::Rng::gen_range(&mut rand::thread_rng(), -0.1..0.1);
        let every = Duration::from_secs_f64((HEARTBEAT_INTERVAL - 5.0) * (0.8 + jitter));
        if fleet.pulled_as_heartbeat_lately() {
            tokio::time::sleep(every).await;
            continue;
        }
        let failure = match fleet.heartbeat(state.node_id()).await {
            Ok(true) => None,
            Ok(false) => Some("not accepted".to_string()),
            Err(s) => Some(s.message().to_string()),
        };
        match failure {
            None => {
                retry = HEARTBEAT_RETRY_FIRST;
                tokio::time::sleep(every).await;
            }
            Some(why) => {
                tracing::warn!("heartbeat failed ({why}); retrying in {retry:?}");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(HEARTBEAT_RETRY_MAX);
            }
        }
    }
}

/// The first pause after a failed heartbeat.
const HEARTBEAT_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between heartbeat retries (Flower's `MAX_RETRY_DELAY`).
const HEARTBEAT_RETRY_MAX: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(run_id: u64, id: &str) -> Pulled {
        let metadata = pb::Metadata { run_id, message_id: id.into(), ..Default::default() };
        Pulled {
            message: pb::Message { metadata: Some(metadata), ..Default::default() },
            tree: Default::default(),
            objects: vec![],
        }
    }

    fn id(p: Option<Pulled>) -> Option<String> {
        p.and_then(|p| p.message.metadata).map(|m| m.message_id)
    }

    #[test]
    fn a_runs_next_message_waits_for_its_previous_one_and_other_runs_do_not() {
        let mut in_hand = InHand::default();
        assert_eq!(id(in_hand.take(pulled(1, "a1"))).as_deref(), Some("a1"));
        assert_eq!(id(in_hand.take(pulled(1, "a2"))), None, "run 1 is busy");
        assert_eq!(id(in_hand.take(pulled(2, "b1"))).as_deref(), Some("b1"), "run 2 is not");
        let mut busy = in_hand.busy_runs();
        busy.sort_unstable();
        assert_eq!((busy, in_hand.waiting()), (vec![1, 2], 1));
        assert_eq!(id(in_hand.finish(1)).as_deref(), Some("a2"));
        assert_eq!(id(in_hand.finish(1)), None);
        assert_eq!(id(in_hand.finish(2)), None);
        assert!(in_hand.busy_runs().is_empty());
    }
}
