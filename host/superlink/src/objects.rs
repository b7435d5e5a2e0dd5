//! The payload objects a SuperLink holds: in memory, in the content-addressed
//! [`ObjectStore`] that serves pulls, and, when the state keeps objects (`--database`),
//! kept there too, so that a message in flight at a restart keeps its payload. At start
//! ([`Objects::restore`]) the objects of the stored messages are put back in memory.
//!
//! When other SuperLink processes share the state (replicas), a message one of them stored
//! may be served by another: its objects are then read from the state the first time they
//! are asked for here ([`Objects::adopt`], and the lookups below).
//!
//! What is kept is bounded ([`Objects::new`]'s `max_kept_bytes`): past the bound an object
//! is held in memory only, as with Flower, and a warning says so.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sepal_core::error::ObjectError;
use sepal_core::records::{Message, Metadata};
use sepal_core::store::{ObjectLookup, ObjectStore};
use sepal_proto::pb;
use tokio::sync::watch;

use crate::state::{LinkState, StateResult};

/// Message payload objects, in memory and (when the state keeps them) in the state.
pub struct Objects {
    store: ObjectStore,
    state: Arc<dyn LinkState>,
    max_kept_bytes: u64,
    /// Bytes kept in the state now (an estimate: counted as kept and forgotten here).
    kept_bytes: AtomicU64,
    /// Bumped whenever objects are deleted (memory was freed).
    freed: watch::Sender<u64>,
}

impl Objects {
    /// Objects for `state`, keeping at most `max_kept_bytes` in it; no run may hold more
    /// than `max_run_bytes` (see [`ObjectStore::with_run_limit`]).
    pub fn new(state: Arc<dyn LinkState>, max_kept_bytes: u64, max_run_bytes: usize) -> Self {
        let store = ObjectStore::with_run_limit(max_run_bytes);
        Objects { store, state, max_kept_bytes, kept_bytes: AtomicU64::new(0), freed: watch::channel(0).0 }
    }

    /// Puts the kept objects of the messages stored in the state back in memory, and
    /// forgets kept objects that no stored message needs. An undelivered instruction whose
    /// objects are not all back (kept in memory only, or still uploading when the SuperLink
    /// stopped) is deleted, as Flower drops an instruction whose objects are gone: its
    /// ServerApp gets an error reply instead. A delivered one whose message object is gone
    /// was confirmed: its node has it all. A reply's missing objects may still be pushed by
    /// its node. Returns how many objects were restored.
    ///
    /// With a shared state nothing is done: the other replicas' uploads are in progress,
    /// and objects are read from the state when asked for.
    pub fn restore(&self) -> StateResult<usize> {
        if !self.state.keeps_objects() || self.state.shared() {
            return Ok(0);
        }
        let live = self.state.live_messages()?;
        let confirmed: HashSet<String> = {
            let delivered: Vec<String> =
                live.iter().filter(|m| m.delivered).map(|m| m.message.id().to_string()).collect();
            let kept: HashSet<String> = self.state.kept_objects(&delivered)?.into_iter().map(|(id, _)| id).collect();
            delivered.into_iter().filter(|id| !kept.contains(id)).collect()
        };
        let mut needed = HashSet::new();
        for msg in live.iter().map(|m| &m.message).filter(|m| !confirmed.contains(m.id())) {
            let run_id = msg.metadata().run_id;
            let Ok(ids) = self.store.preregister(run_id, &msg.tree) else { continue };
            needed.extend(ids);
        }
        let needed: Vec<String> = needed.into_iter().collect();
        let mut restored = 0;
        for (id, content) in self.state.kept_objects(&needed)? {
            if self.store.put(&id, content).unwrap_or(false) {
                restored += 1;
            }
        }
        let (mut unneeded, mut kept) = (Vec::new(), 0);
        for (id, size) in self.state.kept_object_sizes()? {
            match self.store.contains(&id) {
                true => kept += size,
                false => unneeded.push(id),
            }
        }
        self.state.forget_objects(&unneeded)?;
        self.kept_bytes.store(kept, Ordering::Relaxed);
        let incomplete: Vec<String> = live
            .iter()
            .filter(|m| !m.delivered && m.message.metadata().reply_to_message_id.is_empty())
            .filter(|m| !self.store.missing(&m.message.tree).is_empty())
            .map(|m| m.message.id().to_string())
            .collect();
        if !incomplete.is_empty() {
            tracing::warn!(count = incomplete.len(), "instructions whose payload was not kept are dropped");
            for id in &incomplete {
                self.delete(id);
            }
            self.state.delete_messages(&incomplete)?;
        }
        Ok(restored)
    }

    /// Registers a message's tree under its run; the ids still to be pushed.
    pub fn preregister(&self, run_id: u64, tree: &pb::ObjectTree) -> Result<Vec<String>, ObjectError> {
        self.store.preregister(run_id, tree)
    }

    /// See [`ObjectStore::register_messages`]; the objects `made` are kept too.
    pub fn register_messages(
        &self,
        run_id: u64,
        trees: &[&pb::ObjectTree],
        made: Vec<(String, Bytes)>,
    ) -> Result<Vec<String>, ObjectError> {
        let kept = if self.state.keeps_objects() { made.clone() } else { Vec::new() };
        let missing = self.store.register_messages(run_id, trees, made)?;
        self.keep(kept);
        Ok(missing)
    }

    /// Whether the object is registered (pending or available).
    pub fn contains(&self, object_id: &str) -> bool {
        self.store.contains(object_id)
    }

    /// What `run_id` holds, in bytes (see [`ObjectStore::run_bytes`]).
    pub fn run_bytes(&self, run_id: u64) -> usize {
        self.store.run_bytes(run_id)
    }

    /// Stores a pushed object (see [`ObjectStore::put`]), and keeps it.
    pub fn put(&self, object_id: &str, content: Bytes) -> Result<bool, ObjectError> {
        let stored = self.store.put(object_id, content.clone())?;
        if stored {
            self.keep(vec![(object_id.to_string(), content)]);
        }
        Ok(stored)
    }

    /// Stores all objects of a message the SuperLink made or was handed in-process, and
    /// keeps them; the tree and the message id.
    pub fn insert_message(&self, run_id: u64, message: &Message) -> (pb::ObjectTree, String) {
        let (tree, id) = self.store.insert_message(run_id, message);
        if self.state.keeps_objects() {
            let (objects, _) = self.store.collect(&tree, usize::MAX);
            self.keep(objects);
        }
        (tree, id)
    }

    /// An object, for a pull (from the state if another replica stored it).
    pub fn get(&self, object_id: &str) -> ObjectLookup {
        match self.store.get(object_id) {
            ObjectLookup::Available(bytes) => ObjectLookup::Available(bytes),
            local if !self.state.shared() => local,
            local => match self.state.kept_objects(&[object_id.to_string()]) {
                Ok(mut found) if !found.is_empty() => ObjectLookup::Available(found.swap_remove(0).1),
                Ok(_) => local,
                Err(e) => {
                    tracing::warn!(object_id, "cannot read a payload object from the shared state: {e}");
                    local
                }
            },
        }
    }

    /// Takes in a message another replica may have stored: registers its tree under its
    /// run and reads the objects this process lacks from the state. Nothing to do unless
    /// the state is shared.
    pub fn adopt(&self, run_id: u64, tree: &pb::ObjectTree) {
        if !self.state.shared() {
            return;
        }
        match self.store.preregister(run_id, tree) {
            Ok(_) => self.load_missing(tree),
            Err(e) => tracing::warn!(run_id, message = tree.object_id, "cannot take in a message's objects: {e}"),
        }
    }

    /// See [`ObjectStore::missing`] (with a shared state, after reading what the state has).
    pub fn missing(&self, tree: &pb::ObjectTree) -> Vec<String> {
        self.load_missing(tree);
        self.store.missing(tree)
    }

    /// See [`ObjectStore::collect`] (with a shared state, after reading what the state has).
    pub fn collect(&self, tree: &pb::ObjectTree, max_bytes: usize) -> (Vec<(String, Bytes)>, bool) {
        self.load_missing(tree);
        self.store.collect(tree, max_bytes)
    }

    /// Reads the objects of `tree` that are registered here but not in memory from a
    /// shared state (another replica took their upload).
    fn load_missing(&self, tree: &pb::ObjectTree) {
        if !self.state.shared() {
            return;
        }
        let ids = self.store.missing(tree);
        if ids.is_empty() {
            return;
        }
        match self.state.kept_objects(&ids) {
            Ok(found) => {
                for (id, content) in found {
                    if let Err(e) = self.store.put(&id, content) {
                        tracing::warn!(object_id = id, "a payload object read from the shared state is malformed: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read payload objects from the shared state: {e}"),
        }
    }

    /// See [`ObjectStore::message`].
    pub fn message(&self, wire: &pb::Message, tree: &pb::ObjectTree) -> Result<Message, ObjectError> {
        self.store.message(wire, tree)
    }

    /// See [`ObjectStore::take_encoded_message`]: the deletion is a confirmation (in memory
    /// and in the state), made before the encoding is built.
    pub fn take_encoded_message(
        &self,
        wire: &pb::Message,
        tree: &pb::ObjectTree,
    ) -> Result<(Metadata, Vec<u8>), ObjectError> {
        self.store.take_encoded_message(wire, tree, |deleted| self.forget(deleted))
    }

    /// Deletes a message's objects that nothing else references (a confirmation), in
    /// memory and in the state.
    pub fn delete(&self, object_id: &str) {
        let deleted = self.store.delete(object_id);
        self.forget(deleted);
    }

    /// Drops a finished run's objects, in memory and in the state.
    pub fn delete_run(&self, run_id: u64) {
        let deleted = self.store.delete_run(run_id);
        self.forget(deleted);
    }

    /// A receiver that sees every deletion of objects from now on.
    pub fn freed(&self) -> watch::Receiver<u64> {
        self.freed.subscribe()
    }

    /// How many objects are held in memory.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    fn keep(&self, objects: Vec<(String, Bytes)>) {
        if !self.state.keeps_objects() || objects.is_empty() {
            return;
        }
        let bytes: u64 = objects.iter().map(|(_, c)| c.len() as u64).sum();
        if self.kept_bytes.load(Ordering::Relaxed) + bytes > self.max_kept_bytes {
            tracing::warn!(
                bytes,
                limit = self.max_kept_bytes,
                "payload objects kept in memory only: the state's object space is full (they do not survive a restart)"
            );
            return;
        }
        match self.state.keep_objects(&objects) {
            Ok(()) => {
                self.kept_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("cannot keep payload objects in the state (they do not survive a restart): {e}"),
        }
    }

    fn forget(&self, deleted: Vec<(String, usize)>) {
        if deleted.is_empty() {
            return;
        }
        self.freed.send_modify(|n| *n = n.wrapping_add(1));
        if !self.state.keeps_objects() {
            return;
        }
        let bytes: u64 = deleted.iter().map(|(_, len)| *len as u64).sum();
        let ids: Vec<String> = deleted.into_iter().map(|(id, _)| id).collect();
        match self.state.forget_objects(&ids) {
            // An object that was held in memory only is subtracted too: the count may run
            // low until the next start recounts it.
            Ok(()) => {
                let _ = self
                    .kept_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(bytes)));
            }
            Err(e) => tracing::warn!("cannot forget kept payload objects (they are cleaned up at the next start): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use sepal_core::records::{ConfigRecord, ConfigValue, Metadata, RecordDict};

    use super::*;
    use crate::link::Link;
    use crate::state::sqlite::SqliteState;
    use crate::state::{status, NewRun, Pick, StoredMessage};
    use crate::InputLimits;

    fn open(path: &std::path::Path) -> Arc<Link> {
        Link::new(Arc::new(SqliteState::open(path).unwrap()), InputLimits::default())
    }

    /// A running run with an instruction to a node, its objects stored as a ServerApp's
    /// push would store them; the instruction's id.
    fn instruction(link: &Link, size: usize) -> (u64, String) {
        let run_id = link.state.create_run(NewRun::default()).unwrap();
        for s in [status::STARTING, status::RUNNING] {
            assert!(link.update_run_status(run_id, status::status(s, "", "")).unwrap());
        }
        let node = link.state.create_node(30.0).unwrap();
        let meta = Metadata {
            run_id,
            src_node_id: 1,
            dst_node_id: node,
            message_type: "train".into(),
            created_at: sepal_core::routing::now_secs(),
            ttl: 600.0,
            ..Default::default()
        };
        let blob = ConfigValue::Bytes(vec![7; size]);
        let content = RecordDict::new().with("config", ConfigRecord::new().with("blob", blob).into());
        let message = Message::with_content(meta, content);
        let (tree, id) = link.objects.insert_message(run_id, &message);
        let mut wire = message.to_wire_pb();
        wire.metadata.as_mut().unwrap().message_id = id.clone();
        link.state.store_instruction(StoredMessage { message: wire, tree }).unwrap().unwrap();
        (run_id, id)
    }

    #[test]
    fn objects_of_messages_in_flight_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (run_id, id) = instruction(&open(&path), 1000);

        let link = open(&path);
        let delivered =
            link.state.next_instruction(link.state.online_nodes().unwrap()[0], &Pick::default()).unwrap().unwrap();
        assert_eq!(delivered.id(), id);
        let message = link.objects.message(&delivered.message, &delivered.tree).expect("the payload is back");
        assert_eq!(message.metadata.run_id, run_id);

        // Once confirmed, the objects are gone from memory and from the database...
        link.objects.delete(&id);
        assert!(link.objects.is_empty());
        assert!(link.state.kept_object_sizes().unwrap().is_empty());
        // ...and the delivered instruction, still waiting for its reply, is not dropped at
        // the next start for lack of them.
        let link = open(&path);
        assert!(link.state.live_messages().unwrap().iter().any(|m| m.message.id() == id));
        assert!(link.objects.is_empty());
    }

    #[test]
    fn an_instruction_whose_payload_was_not_kept_is_dropped_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = Arc::new(SqliteState::open(&path).unwrap());
        // Room for nothing: the payload is held in memory only.
        let limits = InputLimits { max_kept_object_bytes: 10, ..InputLimits::default() };
        let (run_id, id) = instruction(&Link::new(state, limits), 1000);

        let link = open(&path);
        let node = link.state.online_nodes().unwrap()[0];
        assert!(
            link.state.next_instruction(node, &Pick::default()).unwrap().is_none(),
            "dropped, not handed out without its payload"
        );
        let lookup = link.state.take_replies(std::slice::from_ref(&id)).unwrap();
        let (reply, _) = link.reply_to_wire(run_id, lookup.into_iter().next().unwrap()).expect("an error reply");
        assert!(reply.error.is_some(), "the ServerApp learns the message is gone: {reply:?}");
    }
}
