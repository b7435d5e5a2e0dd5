//! The in-memory, content-addressed object store (Flower 1.20's `InMemoryObjectStore`).
//!
//! Objects are *preregistered* from a message's object tree, then *put* one by one; a
//! preregistered object that has not been put yet is *pending*. Each object counts its
//! distinct registered parents; [`ObjectStore::delete`] removes an object only when no
//! parent references it, then does the same for its children, so content shared with
//! another message survives. Each object also remembers the runs that registered it, and
//! [`ObjectStore::delete_run`] drops a run's objects.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use sepal_proto::pb;

use crate::error::ObjectError;
use crate::objects::{self, is_valid_object_id, ObjectHead};
use crate::records::Message;

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
                pb::PullObjectResponse { object_found: true, object_available: true, object_content: content.to_vec() }
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

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    runs: HashMap<u64, HashSet<String>>,
    total_bytes: usize,
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
        let mut objects = std::collections::HashMap::new();
        let mut stack = vec![tree];
        while let Some(t) = stack.pop() {
            if let ObjectLookup::Available(bytes) = self.get(&t.object_id) {
                objects.insert(t.object_id.clone(), bytes);
            }
            stack.extend(t.children.iter());
        }
        objects::message_from_objects(wire, tree, &objects)
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

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers every node of `tree` under `run_id` and returns the ids that are not
    /// available yet (each once, in post-order): the objects the sender must push.
    ///
    /// Fails, registering nothing, if any id in the tree is invalid.
    pub fn preregister(&self, run_id: u64, tree: &pb::ObjectTree) -> Result<Vec<String>, ObjectError> {
        let nodes = post_order(tree);
        if let Some(bad) = nodes.iter().find(|n| !is_valid_object_id(&n.object_id)) {
            return Err(ObjectError::InvalidId(bad.object_id.clone()));
        }
        Ok(self.lock().register(run_id, &nodes))
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
        let len = content.len();
        entry.content = Some(content);
        inner.total_bytes += len;
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

    /// Stores all objects of a message directly, registered under `run_id` (for replies
    /// the SuperLink makes itself). Returns the tree and the message id.
    pub fn insert_message(&self, run_id: u64, message: &Message) -> (pb::ObjectTree, String) {
        let (tree, objects, id) = objects::message_to_objects(message);
        let mut inner = self.lock();
        inner.register(run_id, &post_order(&tree));
        for (object_id, bytes) in objects {
            inner.fill(&object_id, bytes);
        }
        (tree, id)
    }

    /// Deletes the object if no registered parent references it, then, the same way, its
    /// children (what `ConfirmMessageReceived` does with a message id). Unknown ids are
    /// ignored.
    /// Returns the ids deleted, with the bytes each held.
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
    /// Registers tree nodes given in post-order; returns the ids not yet available.
    fn register(&mut self, run_id: u64, nodes: &[&pb::ObjectTree]) -> Vec<String> {
        let mut missing = Vec::new();
        let mut listed = HashSet::new();
        for node in nodes {
            let id = &node.object_id;
            let available = match self.entries.get_mut(id) {
                Some(entry) => {
                    entry.runs.insert(run_id);
                    entry.content.is_some()
                }
                None => {
                    self.add_entry(run_id, node);
                    false
                }
            };
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
        if let Some(entry) = self.entries.get_mut(id) {
            if entry.content.is_none() {
                self.total_bytes += bytes.len();
                entry.content = Some(bytes);
            }
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
                }
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
