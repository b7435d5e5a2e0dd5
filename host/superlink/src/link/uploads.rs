//! Back-pressure on reply uploads. A ServerApp takes its replies one at a time; if every
//! node of a round uploaded a large reply at once, the SuperLink would hold all of them
//! until the ServerApp got to the last. So each run's replies queue in the order they
//! arrive, and while the run holds more than its reply buffer (`--reply-buffer-mb`), a
//! pushed object waits unless its reply is one the ServerApp takes next: the oldest one
//! not yet taken, or one the ServerApp asked for (it pulled one of its objects, or waits on
//! it in the grid). A ServerApp taking replies in any order therefore never waits on a
//! reply that is itself waiting, and a run holds about its buffer plus the reply being
//! taken.
//!
//! A reply whose node stops uploading cannot hold the others back for long: once no object
//! of the run has arrived for [`STALLED_AFTER`], the oldest waiting push goes on.
//!
//! A waiting push holds its request (and its object) in memory: each node may have at most
//! [`MAX_WAITING_PER_NODE`] waiting at once, as many as Flower's SuperNode pushes at once.
//! With a state shared by replicas there is no back-pressure: a reply may upload to one
//! replica while another serves the ServerApp, and neither sees the other's takes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{lock, Link};
use crate::error::{Error, Result};

/// Most pushes of one node waiting for their reply's turn at once.
pub const MAX_WAITING_PER_NODE: usize = 8;

/// How long a run's uploads may make no progress before a waiting push goes on anyway.
pub const STALLED_AFTER: Duration = Duration::from_secs(10);

/// How often a waiting push re-checks without a wake-up (a message may expire, the
/// uploads may stall).
const RECHECK: Duration = Duration::from_secs(2);

/// The replies of every run, in the order they arrived, until their ServerApp takes them.
pub struct ReplyQueues {
    runs: Mutex<HashMap<u64, RunReplies>>,
    waiting: Mutex<HashMap<u64, usize>>,
    /// Bumped when a reply is asked for (a waiting push may now go on).
    asked: watch::Sender<u64>,
    stalled_after: Duration,
}

impl Default for ReplyQueues {
    fn default() -> Self {
        Self::with_stall(STALLED_AFTER)
    }
}

struct RunReplies {
    /// When an object of one of the run's queued replies last arrived, or uploads began
    /// after a time without any (the quiet time between rounds is no stall).
    progress: Instant,
    next_seq: u64,
    /// Replies not yet taken, oldest first: arrival number -> reply (message) id.
    order: BTreeMap<u64, String>,
    replies: HashMap<String, Queued>,
    /// Object still to be pushed -> the reply it belongs to.
    owner: HashMap<String, String>,
}

struct Queued {
    seq: u64,
    asked: bool,
    /// Its objects not yet pushed (their `owner` entries).
    missing: Vec<String>,
}

impl RunReplies {
    fn new() -> Self {
        RunReplies {
            progress: Instant::now(),
            next_seq: 0,
            order: BTreeMap::new(),
            replies: HashMap::new(),
            owner: HashMap::new(),
        }
    }

    fn remove(&mut self, reply: &str) {
        if let Some(q) = self.replies.remove(reply) {
            self.order.remove(&q.seq);
            for id in q.missing {
                self.owner.remove(&id);
            }
        }
    }

    /// Drops the oldest replies that are gone (taken, expired), so that the front is the
    /// one the ServerApp takes next.
    fn drop_gone(&mut self, present: &dyn Fn(&str) -> bool) {
        while let Some((_, reply)) = self.order.first_key_value() {
            if present(reply) {
                return;
            }
            let reply = reply.clone();
            self.remove(&reply);
        }
    }

    /// Whether `reply`'s objects may be stored now, whatever the run holds.
    fn has_turn(&self, reply: &str) -> bool {
        let first = self.order.first_key_value().map(|(_, r)| r.as_str());
        first == Some(reply) || self.replies.get(reply).is_some_and(|q| q.asked)
    }
}

impl ReplyQueues {
    /// Queues whose uploads count as stalled after `stalled_after` without progress.
    pub fn with_stall(stalled_after: Duration) -> Self {
        ReplyQueues { runs: Mutex::default(), waiting: Mutex::default(), asked: watch::channel(0).0, stalled_after }
    }

    /// Queues a reply of `run_id` that arrived with `missing` objects still to be pushed.
    /// Replies taken meanwhile are let go of first, so that a long run's queue stays as
    /// long as its replies not yet taken.
    pub fn queue(&self, run_id: u64, reply: &str, missing: &[String], present: &dyn Fn(&str) -> bool) {
        let mut runs = lock(&self.runs);
        let run = runs.entry(run_id).or_insert_with(RunReplies::new);
        run.drop_gone(present);
        if run.replies.contains_key(reply) {
            return;
        }
        if run.owner.is_empty() {
            run.progress = Instant::now();
        }
        let seq = run.next_seq;
        run.next_seq += 1;
        run.order.insert(seq, reply.to_string());
        for id in missing {
            run.owner.entry(id.clone()).or_insert_with(|| reply.to_string());
        }
        run.replies.insert(reply.to_string(), Queued { seq, asked: false, missing: missing.to_vec() });
    }

    /// The object arrived: it no longer waits for anything.
    pub fn stored(&self, run_id: u64, object_id: &str) {
        let mut runs = lock(&self.runs);
        let Some(run) = runs.get_mut(&run_id) else { return };
        if let Some(reply) = run.owner.remove(object_id) {
            run.progress = Instant::now();
            if let Some(q) = run.replies.get_mut(&reply) {
                q.missing.retain(|id| id != object_id);
            }
        }
    }

    /// Whether a pushed object of `run_id` may be stored now, the run holding `held` bytes
    /// against a buffer of `buffer`; `present` says whether a reply is still held.
    pub fn may_store(
        &self,
        run_id: u64,
        object_id: &str,
        held: usize,
        buffer: usize,
        present: &dyn Fn(&str) -> bool,
    ) -> bool {
        if held < buffer {
            return true;
        }
        let mut runs = lock(&self.runs);
        let Some(run) = runs.get_mut(&run_id) else { return true };
        run.drop_gone(present);
        let Some(reply) = run.owner.get(object_id) else { return true };
        if run.has_turn(reply) {
            return true;
        }
        // The replies uploading stalled: this one goes on in their place.
        if run.progress.elapsed() >= self.stalled_after {
            let reply = reply.clone();
            tracing::info!(
                run_id,
                reply,
                "no reply object arrived for {:?}: a waiting reply uploads",
                self.stalled_after
            );
            run.progress = Instant::now();
            if let Some(q) = run.replies.get_mut(&reply) {
                q.asked = true;
            }
            return true;
        }
        false
    }

    /// The ServerApp asks for the reply that `object_id` belongs to (or that is
    /// `object_id`): it may upload now.
    pub fn ask(&self, run_id: u64, object_id: &str) {
        let mut runs = lock(&self.runs);
        let Some(run) = runs.get_mut(&run_id) else { return };
        let reply = run.owner.get(object_id).cloned().unwrap_or_else(|| object_id.to_string());
        if let Some(q) = run.replies.get_mut(&reply).filter(|q| !q.asked) {
            q.asked = true;
            drop(runs);
            self.asked.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether `reply` may upload now (it is next, asked for, or not queued).
    pub fn has_turn(&self, run_id: u64, reply: &str, present: &dyn Fn(&str) -> bool) -> bool {
        let mut runs = lock(&self.runs);
        let Some(run) = runs.get_mut(&run_id) else { return true };
        run.drop_gone(present);
        !run.replies.contains_key(reply) || run.has_turn(reply)
    }

    /// Where `reply` stands in its run's queue (replies not queued come last).
    pub fn position(&self, run_id: u64, reply: &str) -> u64 {
        let runs = lock(&self.runs);
        runs.get(&run_id).and_then(|run| run.replies.get(reply)).map_or(u64::MAX, |q| q.seq)
    }

    /// Forgets a run that ended.
    pub fn forget_run(&self, run_id: u64) {
        lock(&self.runs).remove(&run_id);
    }

    /// Counts a waiting push of `node_id` while the guard lives; `None` when the node has
    /// as many waiting as allowed.
    fn enter_wait(&self, node_id: u64) -> Option<WaitGuard<'_>> {
        let mut waiting = lock(&self.waiting);
        let n = waiting.entry(node_id).or_default();
        if *n >= MAX_WAITING_PER_NODE {
            return None;
        }
        *n += 1;
        Some(WaitGuard { queues: self, node_id })
    }
}

struct WaitGuard<'a> {
    queues: &'a ReplyQueues,
    node_id: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut waiting = lock(&self.queues.waiting);
        if let Some(n) = waiting.get_mut(&self.node_id) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.node_id);
            }
        }
    }
}

impl Link {
    /// Waits until node `node_id` may store `object_id` of `run_id` (see the module
    /// documentation). Fails when the run stops running meanwhile, the SuperLink shuts
    /// down, or the node already has [`MAX_WAITING_PER_NODE`] pushes waiting.
    pub async fn wait_for_upload_turn(&self, node_id: u64, run_id: u64, object_id: &str) -> Result<()> {
        if self.state.shared() {
            return Ok(());
        }
        let mut asked = self.uploads.asked.subscribe();
        let mut freed = self.objects.freed();
        let mut guard = None;
        loop {
            let present = |id: &str| self.objects.contains(id);
            let held = self.objects.run_bytes(run_id);
            if self.uploads.may_store(run_id, object_id, held, self.limits.reply_buffer_bytes, &present) {
                return Ok(());
            }
            if guard.is_none() {
                guard = Some(self.uploads.enter_wait(node_id).ok_or_else(|| {
                    Error::ResourceExhausted(format!(
                        "node {node_id} already has {MAX_WAITING_PER_NODE} object pushes waiting for the \
                         ServerApp of run {run_id} to take earlier replies"
                    ))
                })?);
                tracing::debug!(run_id, node_id, object_id, held, "object push waits for its reply's turn");
            }
            tokio::select! {
                _ = asked.changed() => {}
                _ = freed.changed() => {}
                _ = tokio::time::sleep(RECHECK) => {}
                _ = self.events.closed() => return Err(Error::Unavailable("the SuperLink is shutting down".into())),
            }
            self.require_running(run_id)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn under_the_buffer_every_object_is_stored_at_once() {
        let q = ReplyQueues::default();
        q.queue(1, "a", &ids(&["a1"]), &|_| true);
        q.queue(1, "b", &ids(&["b1"]), &|_| true);
        assert!(q.may_store(1, "b1", 10, 100, &|_| true));
    }

    #[test]
    fn over_the_buffer_only_the_oldest_reply_uploads_until_it_is_taken() {
        let q = ReplyQueues::default();
        q.queue(1, "a", &ids(&["a1", "a2"]), &|_| true);
        q.queue(1, "b", &ids(&["b1"]), &|_| true);
        assert!(q.may_store(1, "a1", 500, 100, &|_| true));
        assert!(!q.may_store(1, "b1", 500, 100, &|_| true));
        // The ServerApp took "a": its objects are gone.
        assert!(q.may_store(1, "b1", 500, 100, &|id| id != "a"));
    }

    #[test]
    fn a_reply_the_server_app_asks_for_uploads_out_of_turn() {
        let q = ReplyQueues::default();
        q.queue(1, "a", &ids(&["a1"]), &|_| true);
        q.queue(1, "b", &ids(&["b1", "b2"]), &|_| true);
        let asked = q.asked.subscribe();
        q.ask(1, "b2");
        assert!(asked.has_changed().unwrap());
        assert!(q.may_store(1, "b1", 500, 100, &|_| true));
        assert!(q.has_turn(1, "b", &|_| true));
    }

    #[test]
    fn other_runs_and_unknown_objects_do_not_wait() {
        let q = ReplyQueues::default();
        q.queue(1, "a", &ids(&["a1"]), &|_| true);
        q.queue(1, "b", &ids(&["b1"]), &|_| true);
        q.queue(2, "c", &ids(&["c1"]), &|_| true);
        assert!(q.may_store(2, "c1", 500, 100, &|_| true));
        assert!(q.may_store(1, "instruction-object", 500, 100, &|_| true));
        q.stored(1, "b1");
        assert!(q.may_store(1, "b1", 500, 100, &|_| true), "an object already stored is not held back");
    }

    #[test]
    fn a_stalled_upload_lets_the_next_reply_through() {
        let q = ReplyQueues::with_stall(Duration::from_millis(50));
        q.queue(1, "a", &ids(&["a1"]), &|_| true);
        q.queue(1, "b", &ids(&["b1", "b2"]), &|_| true);
        assert!(!q.may_store(1, "b1", 500, 100, &|_| true));
        std::thread::sleep(Duration::from_millis(60));
        assert!(q.may_store(1, "b1", 500, 100, &|_| true), "nothing arrived for a while: b goes on");
        q.queue(1, "c", &ids(&["c1"]), &|_| true);
        assert!(q.may_store(1, "b2", 500, 100, &|_| true), "b keeps its turn");
        assert!(!q.may_store(1, "c1", 500, 100, &|_| true), "c waits again");
    }

    #[test]
    fn the_quiet_time_before_a_round_is_no_stall() {
        let q = ReplyQueues::with_stall(Duration::from_millis(50));
        q.queue(1, "last-round", &[], &|_| true);
        std::thread::sleep(Duration::from_millis(60));
        q.queue(1, "a", &ids(&["a1"]), &|_| true);
        q.queue(1, "b", &ids(&["b1"]), &|_| true);
        assert!(!q.may_store(1, "b1", 500, 100, &|id| id != "last-round"), "b waits for a");
    }

    #[test]
    fn replies_taken_are_let_go_of_as_others_arrive() {
        let q = ReplyQueues::default();
        for i in 0..1000 {
            let taken = format!("r{}", i.max(1) - 1);
            q.queue(1, &format!("r{i}"), &ids(&["x"]), &|id| id != taken);
        }
        let runs = lock(&q.runs);
        assert_eq!(runs[&1].replies.len(), 1, "only the reply not yet taken is queued");
        assert_eq!(runs[&1].owner.len(), 1);
    }

    #[test]
    fn replies_are_ordered_by_arrival() {
        let q = ReplyQueues::default();
        q.queue(1, "first", &[], &|_| true);
        q.queue(1, "second", &[], &|_| true);
        assert!(q.position(1, "first") < q.position(1, "second"));
        assert_eq!(q.position(1, "unknown"), u64::MAX);
        q.forget_run(1);
        assert_eq!(q.position(1, "first"), u64::MAX);
    }

    #[test]
    fn a_node_may_have_a_few_pushes_waiting_at_once() {
        let q = ReplyQueues::default();
        let guards: Vec<_> = (0..MAX_WAITING_PER_NODE).map(|_| q.enter_wait(7).unwrap()).collect();
        assert!(q.enter_wait(7).is_none());
        assert!(q.enter_wait(8).is_some(), "another node is not affected");
        drop(guards);
        assert!(q.enter_wait(7).is_some());
    }
}
