//! The in-memory, content-addressed object store (Flower 1.20's `InMemoryObjectStore`).
//!
//! Objects are *preregistered* from a message's object tree, then *put* one by one; a
//! preregistered object that has not been put yet is *pending*. Each object counts its
//! distinct registered parents; [`ObjectStore::delete`] removes an object only when no
//! parent references it, then does the same for its children, so content shared with
//! another message survives. Each object also remembers the runs that registered it, and
//! [`ObjectStore::delete_run`] drops a run's objects.
//!
//! Each run is charged for what it holds: every object it registered costs
//! [`OBJECT_OVERHEAD`] plus its bytes once they are in (an object shared by two runs is
//! charged to both). A store made [`ObjectStore::with_run_limit`] refuses, storing nothing,
//! whatever would take a run past its limit.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use sepal_proto::pb;

use crate::error::ObjectError;
use crate::objects::{self, is_valid_object_id, ObjectHead};
use crate::records::{Message, Metadata};

/// The result of [`ObjectStore::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectLookup {
    /// Never registered, or deleted (`PullObject`: `object_found=false`).
    NotFound,
    /// Preregistered but not uploaded yet (`object_available=false`).
    Pending,
    /// The object's bytes.
    Available(Bytes),
}

impl ObjectLookup {
    /// The answer to a `PullObject` request for this object.
    pub fn into_pull_response(self) -> pb::PullObjectResponse {
        match self {
            ObjectLookup::NotFound => pb::PullObjectResponse::default(),
            ObjectLookup::Pending => pb::PullObjectResponse { object_found: true, ..Default::default() },
            ObjectLookup::Available(content) => {
                pb::PullObjectResponse { object_found: true, object_available: true, object_content: content }
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// `None` while pending.
    content: Option<Bytes>,
    /// Children as registered by the tree (may repeat if the tree repeats them).
    children: Vec<String>,
    /// Number of registered parents referencing this object.
    ref_count: usize,
    runs: HashSet<u64>,
}

/// What holding one registered object costs a run beyond its bytes: the entry and its id
/// here, and the object's node in its message's tree where the message is kept.
pub const OBJECT_OVERHEAD: usize = 256;

#[derive(Debug)]
struct Inner {
    entries: HashMap<String, Entry>,
    runs: HashMap<u64, HashSet<String>>,
    /// What each run is charged for (see the module docs).
    charged: HashMap<u64, usize>,
    run_limit: usize,
    total_bytes: usize,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            entries: HashMap::new(),
            runs: HashMap::new(),
            charged: HashMap::new(),
            run_limit: usize::MAX,
            total_bytes: 0,
        }
    }
}

/// A thread-safe in-memory object store. No lock is held across an `await` (there is none).
#[derive(Debug, Default)]
pub struct ObjectStore {
    inner: Mutex<Inner>,
}

/// Post-order traversal of a tree (children before parents).
/// Whether the objects with `ids` are every object of `tree`.
pub fn covers<'a>(tree: &pb::ObjectTree, ids: impl IntoIterator<Item = &'a str>) -> bool {
    let ids: HashSet<&str> = ids.into_iter().collect();
    post_order(tree).iter().all(|t| ids.contains(t.object_id.as_str()))
}

fn post_order(tree: &pb::ObjectTree) -> Vec<&pb::ObjectTree> {
    fn walk<'a>(tree: &'a pb::ObjectTree, out: &mut Vec<&'a pb::ObjectTree>) {
        tree.children.iter().for_each(|c| walk(c, out));
        out.push(tree);
    }
    let mut out = Vec::new();
    walk(tree, &mut out);
    out
}

impl ObjectStore {
    /// The whole message whose wire form (metadata) and tree are given, decoded from the
    /// objects in the store; fails if an object is missing or does not decode.
    pub fn message(&self, wire: &pb::Message, tree: &pb::ObjectTree) -> Result<Message, ObjectError> {
        // Every object here was hashed when it came in (`put`) or made here.
        objects::message_from_checked_objects(wire, tree, &self.objects_of(tree))
    }

    /// Takes a message out of the store as the protobuf bytes an app is handed (each array
    /// copied once, from its chunks), with its metadata. Its objects that nothing else
    /// references are deleted first and `deleted` told which (their bytes live until the
    /// encoding is built), so what waits on the run's share of the store goes on meanwhile.
    pub fn take_encoded_message(
        &self,
        wire: &pb::Message,
        tree: &pb::ObjectTree,
        deleted: impl FnOnce(Vec<(String, usize)>),
    ) -> Result<(Metadata, Vec<u8>), ObjectError> {
        let objects = self.objects_of(tree);
        deleted(self.delete(&tree.object_id));
        objects::encoded_message_from_checked_objects(wire, tree, &objects)
    }

    /// The available objects of `tree`, by id.
    fn objects_of(&self, tree: &pb::ObjectTree) -> HashMap<String, Bytes> {
        let mut objects = HashMap::new();
        let mut stack = vec![tree];
        while let Some(t) = stack.pop() {
            if let ObjectLookup::Available(bytes) = self.get(&t.object_id) {
                objects.insert(t.object_id.clone(), bytes);
            }
            stack.extend(t.children.iter());
        }
        objects
    }

    /// Ids in `tree` whose bytes are not in the store (yet), in depth-first order.
    pub fn missing(&self, tree: &pb::ObjectTree) -> Vec<String> {
        let mut missing = Vec::new();
        let mut stack = vec![tree];
        while let Some(t) = stack.pop() {
            if !matches!(self.get(&t.object_id), ObjectLookup::Available(_)) {
                missing.push(t.object_id.clone());
            }
            stack.extend(t.children.iter().rev());
        }
        missing
    }

    /// An empty store with no limit per run.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store where no run may hold more than `limit` bytes (see the module docs).
    pub fn with_run_limit(limit: usize) -> Self {
        ObjectStore { inner: Mutex::new(Inner { run_limit: limit, ..Inner::default() }) }
    }

    /// What `run_id` is charged for now, in bytes.
    pub fn run_bytes(&self, run_id: u64) -> usize {
        self.lock().charged.get(&run_id).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers every node of `tree` under `run_id` and returns the ids that are not
    /// available yet (each once, in post-order): the objects the sender must push.
    ///
    /// Fails, registering nothing, if any id in the tree is invalid or the run would pass
    /// its limit.
    pub fn preregister(&self, run_id: u64, tree: &pb::ObjectTree) -> Result<Vec<String>, ObjectError> {
        self.register_messages(run_id, &[tree], Vec::new())
    }

    /// Registers the trees of several messages under `run_id` at once, with the bytes of
    /// those of their objects that the host made itself (`made`, stored unchecked), and
    /// returns the ids still to be pushed, each once. All or nothing: fails, storing
    /// nothing, if an id is invalid or the run would pass its limit.
    pub fn register_messages(
        &self,
        run_id: u64,
        trees: &[&pb::ObjectTree],
        made: Vec<(String, Bytes)>,
    ) -> Result<Vec<String>, ObjectError> {
        let nodes: Vec<&pb::ObjectTree> = trees.iter().flat_map(|t| post_order(t)).collect();
        if let Some(bad) = nodes.iter().find(|n| !is_valid_object_id(&n.object_id)) {
            return Err(ObjectError::InvalidId(bad.object_id.clone()));
        }
        let mut inner = self.lock();
        let new_bytes: usize = made
            .iter()
            .filter(|(id, _)| inner.entries.get(id).is_none_or(|e| e.content.is_none()))
            .map(|(_, bytes)| bytes.len())
            .sum();
        inner.admit(run_id, inner.registration_cost(run_id, &nodes) + new_bytes)?;
        let mut missing = inner.register(run_id, &nodes);
        for (object_id, bytes) in made {
            inner.fill(&object_id, bytes);
        }
        let mut listed = HashSet::new();
        missing.retain(|id| listed.insert(id.clone()) && inner.entries.get(id).is_some_and(|e| e.content.is_none()));
        Ok(missing)
    }

    /// Stores an object's bytes.
    ///
    /// `Ok(false)` if the bytes do not hash to `object_id` or the id was not preregistered;
    /// `Ok(true)` when stored or already stored. [`ObjectError::Malformed`] when the hash
    /// matches but the bytes do not have Flower's object structure, or list other children
    /// than the tree that preregistered them.
    pub fn put(&self, object_id: &str, content: Bytes) -> Result<bool, ObjectError> {
        if objects::object_id(&content) != object_id {
            tracing::debug!(object_id, "object content does not match its id");
            return Ok(false);
        }
        let (_, children, _) = ObjectHead::parse(&content)?;
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(object_id) else {
            tracing::debug!(object_id, "object was not preregistered");
            return Ok(false);
        };
        if entry.content.is_some() {
            return Ok(true);
        }
        if entry.children != children {
            let reason = format!("Its head lists children {children:?}, its object tree {:?}.", entry.children);
            return Err(ObjectError::malformed(object_id, reason));
        }
        let runs: Vec<u64> = entry.runs.iter().copied().collect();
        for run_id in runs {
            inner.admit(run_id, content.len())?;
        }
        inner.fill(object_id, content);
        Ok(true)
    }

    /// Looks an object up.
    pub fn get(&self, object_id: &str) -> ObjectLookup {
        match self.lock().entries.get(object_id) {
            None => ObjectLookup::NotFound,
            Some(Entry { content: None, .. }) => ObjectLookup::Pending,
            Some(Entry { content: Some(bytes), .. }) => ObjectLookup::Available(bytes.clone()),
        }
    }

    /// The available objects of `tree`, each once, while they fit in `max_bytes` (to carry
    /// them with their message), and whether that is every object of the tree.
    pub fn collect(&self, tree: &pb::ObjectTree, max_bytes: usize) -> (Vec<(String, Bytes)>, bool) {
        let inner = self.lock();
        let (mut objects, mut bytes, mut seen) = (Vec::new(), 0, HashSet::new());
        let mut stack = vec![tree];
        while let Some(node) = stack.pop() {
            stack.extend(node.children.iter());
            if !seen.insert(node.object_id.as_str()) {
                continue;
            }
            match inner.entries.get(&node.object_id).and_then(|e| e.content.as_ref()) {
                Some(content) if bytes + content.len() <= max_bytes => {
                    bytes += content.len();
                    objects.push((node.object_id.clone(), content.clone()));
                }
                _ => return (objects, false),
            }
        }
        (objects, true)
    }

    /// Whether the object is registered (pending or available).
    pub fn contains(&self, object_id: &str) -> bool {
        self.lock().entries.contains_key(object_id)
    }

    /// The object tree below a registered object, rebuilt from the registered children
    /// (what PullMessages returns). [`ObjectError::Missing`] if it or a descendant is not
    /// registered.
    pub fn object_tree(&self, object_id: &str) -> Result<pb::ObjectTree, ObjectError> {
        self.lock().tree(object_id)
    }

    /// Stores all objects of a message directly, registered under `run_id` (for messages
    /// the host makes itself: past the run's limit, as they are small and owed). Returns
    /// the tree and the message id.
    pub fn insert_message(&self, run_id: u64, message: &Message) -> (pb::ObjectTree, String) {
        let (tree, objects, id) = objects::message_to_objects(message);
        let mut inner = self.lock();
        inner.register(run_id, &post_order(&tree));
        for (object_id, bytes) in objects {
            inner.fill(&object_id, bytes);
        }
        (tree, id)
    }

    /// [`ObjectStore::insert_message`] for a message an app handed over: fails, storing
    /// nothing, if it would take the run past its limit.
    pub fn try_insert_message(&self, run_id: u64, message: &Message) -> Result<(pb::ObjectTree, String), ObjectError> {
        let (tree, objects, id) = objects::message_to_objects(message);
        self.register_messages(run_id, &[&tree], objects)?;
        Ok((tree, id))
    }

    /// Deletes the object if no registered parent references it, then, the same way, its
    /// children (what `ConfirmMessageReceived` does with a message id; unknown ids are
    /// ignored). Returns the ids deleted, with the bytes each held.
    pub fn delete(&self, object_id: &str) -> Vec<(String, usize)> {
        let mut deleted = Vec::new();
        self.lock().delete(object_id, &mut deleted);
        deleted
    }

    /// Drops the run's objects: every object of the run that no parent references is
    /// deleted with its unreferenced descendants; objects still referenced by another
    /// run's objects stay. Returns the ids deleted, with the bytes each held.
    pub fn delete_run(&self, run_id: u64) -> Vec<(String, usize)> {
        let mut inner = self.lock();
        let mut deleted = Vec::new();
        inner.charged.remove(&run_id);
        let Some(ids) = inner.runs.remove(&run_id) else {
            return deleted;
        };
        for id in ids {
            let Some(entry) = inner.entries.get_mut(&id) else {
                continue;
            };
            entry.runs.remove(&run_id);
            if entry.ref_count == 0 {
                inner.delete(&id, &mut deleted);
            }
        }
        inner.shrink();
        deleted
    }

    /// Number of registered objects (pending and available).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store holds no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total size of the available objects' bytes.
    pub fn total_bytes(&self) -> usize {
        self.lock().total_bytes
    }
}

impl Inner {
    /// What registering `nodes` would add to `run_id`'s charge.
    fn registration_cost(&self, run_id: u64, nodes: &[&pb::ObjectTree]) -> usize {
        let mut seen = HashSet::new();
        nodes
            .iter()
            .filter(|n| seen.insert(n.object_id.as_str()))
            .map(|n| match self.entries.get(&n.object_id) {
                Some(e) if e.runs.contains(&run_id) => 0,
                Some(e) => OBJECT_OVERHEAD + e.content.as_ref().map_or(0, Bytes::len),
                None => OBJECT_OVERHEAD,
            })
            .sum()
    }

    /// Fails unless `run_id` may be charged `more` bytes.
    fn admit(&self, run_id: u64, more: usize) -> Result<(), ObjectError> {
        let held = self.charged.get(&run_id).copied().unwrap_or(0);
        match held.checked_add(more) {
            Some(total) if total <= self.run_limit => Ok(()),
            _ => Err(ObjectError::RunQuota { run_id, held, wanted: more, limit: self.run_limit }),
        }
    }

    fn charge(&mut self, run_id: u64, bytes: usize) {
        *self.charged.entry(run_id).or_default() += bytes;
    }

    fn uncharge(&mut self, run_id: u64, bytes: usize) {
        if let Some(held) = self.charged.get_mut(&run_id) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                self.charged.remove(&run_id);
            }
        }
    }

    /// Gives back the room of maps that once held far more than they do now (a run that
    /// flooded the store must not keep its peak).
    fn shrink(&mut self) {
        fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
        shrink(&mut self.entries);
        shrink(&mut self.runs);
        shrink(&mut self.charged);
    }

    /// Registers tree nodes given in post-order; returns the ids not yet available.
    fn register(&mut self, run_id: u64, nodes: &[&pb::ObjectTree]) -> Vec<String> {
        let mut missing = Vec::new();
        let mut listed = HashSet::new();
        for node in nodes {
            let id = &node.object_id;
            let (available, cost) = match self.entries.get_mut(id) {
                Some(entry) => {
                    let len = entry.content.as_ref().map(Bytes::len);
                    let cost = if entry.runs.insert(run_id) { OBJECT_OVERHEAD + len.unwrap_or(0) } else { 0 };
                    (len.is_some(), cost)
                }
                None => {
                    self.add_entry(run_id, node);
                    (false, OBJECT_OVERHEAD)
                }
            };
            self.charge(run_id, cost);
            self.runs.entry(run_id).or_default().insert(id.clone());
            if !available && listed.insert(id.clone()) {
                missing.push(id.clone());
            }
        }
        missing
    }

    /// A new pending entry; its children (registered before it) gain a reference.
    fn add_entry(&mut self, run_id: u64, node: &pb::ObjectTree) {
        let children: Vec<String> = node.children.iter().map(|c| c.object_id.clone()).collect();
        for child in &children {
            if let Some(entry) = self.entries.get_mut(child) {
                entry.ref_count += 1;
            }
        }
        let entry = Entry { content: None, children, ref_count: 0, runs: HashSet::from([run_id]) };
        self.entries.insert(node.object_id.clone(), entry);
    }

    /// Makes a registered object available (no checks: the caller made the bytes).
    fn fill(&mut self, id: &str, bytes: Bytes) {
        let Some(entry) = self.entries.get_mut(id) else { return };
        if entry.content.is_some() {
            return;
        }
        let (len, runs) = (bytes.len(), entry.runs.iter().copied().collect::<Vec<_>>());
        entry.content = Some(bytes);
        self.total_bytes += len;
        for run_id in runs {
            self.charge(run_id, len);
        }
    }

    fn delete(&mut self, id: &str, deleted: &mut Vec<(String, usize)>) {
        let mut stack = vec![id.to_owned()];
        while let Some(id) = stack.pop() {
            if self.entries.get(&id).is_none_or(|e| e.ref_count > 0) {
                continue;
            }
            let Some(entry) = self.entries.remove(&id) else {
                continue;
            };
            let len = entry.content.as_ref().map_or(0, Bytes::len);
            self.total_bytes -= len;
            for run in &entry.runs {
                if let Some(ids) = self.runs.get_mut(run) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.runs.remove(run);
                    }
                }
                self.uncharge(*run, OBJECT_OVERHEAD + len);
            }
            for child in entry.children {
                if let Some(c) = self.entries.get_mut(&child) {
                    c.ref_count = c.ref_count.saturating_sub(1);
                    stack.push(child);
                }
            }
            deleted.push((id, len));
        }
    }

    fn tree(&self, id: &str) -> Result<pb::ObjectTree, ObjectError> {
        let entry = self.entries.get(id).ok_or_else(|| ObjectError::Missing(id.to_owned()))?;
        let children = entry.children.iter().map(|c| self.tree(c)).collect::<Result<_, _>>()?;
        Ok(pb::ObjectTree { object_id: id.to_owned(), children })
    }
}

#[cfg(test)]
mod tests;
