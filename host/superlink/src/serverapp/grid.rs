//! The grid an in-process Wasm ServerApp drives the federation through: wired straight to
//! the link state of its own run (no network hop).
//!
//! Everything the app sends is untrusted: the host sets the routing of its messages
//! (run, source, message id, creation time), refuses malformed ones with an error the app
//! sees, and waits on events (message and object arrivals), never on a timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sepal_core::objects::{message_to_objects_with, RecentArrays};
use sepal_core::routing::prepare_instruction;
use sepal_core::store::ObjectLookup;
use sepal_proto::pb;
use sepal_sandbox::{GridError, GridFuture, GridHost};

use crate::error::Error;
use crate::link::Link;
use crate::state::ReplyLookup;

/// How often a waiting `send-and-receive` re-checks time-based outcomes (a node whose
/// heartbeats lapsed, an expired message), which no event announces.
const LIVENESS_RECHECK: Duration = Duration::from_secs(1);

/// How long a reply whose sender is still online may take to finish uploading its objects.
const OBJECT_WAIT: Duration = Duration::from_secs(300);

/// The grid a Wasm ServerApp sees: the link state of its own run.
pub(crate) struct LinkGrid {
    link: Arc<Link>,
    run_id: u64,
    /// Replies taken from the state whose objects are still being uploaded, by instruction
    /// id: they are handed to the app once complete, or replaced by an error reply if their
    /// sender leaves (or stalls) before finishing.
    uploading: Mutex<HashMap<String, Uploading>>,
    /// The arrays the app pushed lately: the same model pushed to each node is cut and
    /// hashed once while its chunks are stored.
    recent: Mutex<RecentArrays>,
}

/// A reply whose message arrived but whose objects have not all arrived yet.
struct Uploading {
    wire: pb::Message,
    tree: pb::ObjectTree,
    since: Instant,
}

fn app_error(message: impl Into<String>) -> GridError {
    GridError::App { code: 0, message: message.into() }
}

fn state_error(e: impl std::fmt::Display) -> GridError {
    GridError::Abort(e.to_string())
}

/// A refused push: the app hears why (a limit, with its flag) and may go on; a failing
/// state ends the run.
fn refusal(e: Error) -> GridError {
    match e {
        Error::State(e) => state_error(e),
        other => {
            tracing::warn!("a Wasm ServerApp's push was refused: {}", other.text());
            app_error(other.text())
        }
    }
}

impl LinkGrid {
    pub(crate) fn new(link: Arc<Link>, run_id: u64) -> LinkGrid {
        LinkGrid { link, run_id, uploading: Mutex::default(), recent: Mutex::default() }
    }

    /// The app may only act while its run is running; otherwise the run is over.
    fn check(&self) -> Result<(), GridError> {
        self.link.require_running(self.run_id).map_err(state_error)
    }

    /// Stores the app's instructions under the same limits and quotas as a ServerAppIo
    /// push (all or none); an id is "" for one whose node is unknown, as in Flower.
    async fn push(&self, messages: Vec<Vec<u8>>) -> Result<Vec<String>, GridError> {
        self.check()?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (mut wires, mut trees, mut made) = (Vec::new(), Vec::new(), Vec::new());
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let stored = |id: &str| match self.link.objects.get(id) {
            ObjectLookup::Available(bytes) => Some(bytes),
            _ => None,
        };
        // Owned buffers: the decoded arrays are slices of them, not copies.
        for bytes in messages {
            let msg =
                prepare_instruction(bytes::Bytes::from(bytes), self.run_id).map_err(|e| app_error(e.to_string()))?;
            let (tree, objects, id) = message_to_objects_with(&msg, Some(&mut recent.known(stored)));
            for (object_id, content) in &objects {
                self.link.check_object_size(object_id, content.len()).map_err(refusal)?;
            }
            let mut wire = msg.to_wire_pb();
            if let Some(meta) = wire.metadata.as_mut() {
                meta.message_id = id;
            }
            wires.push(wire);
            trees.push(tree);
            made.extend(objects);
        }
        drop(recent);
        let msgs = self.link.stored_messages(wires, trees).map_err(refusal)?;
        let (ids, _) = self.link.push_instructions(self.run_id, msgs, made).map_err(refusal)?;
        Ok(ids)
    }

    /// The replies to `ids` that are complete now (whole messages, content inline). A reply
    /// still uploading is kept back until its objects are in.
    async fn pull(&self, ids: &[String]) -> Result<Vec<(String, Vec<u8>)>, GridError> {
        self.check()?;
        let mut uploading = self.uploading.lock().unwrap_or_else(|e| e.into_inner());
        let fresh: Vec<String> = ids.iter().filter(|id| !uploading.contains_key(*id)).cloned().collect();
        let lookups = self.link.state.take_replies(&fresh).map_err(state_error)?;
        for (id, lookup) in fresh.into_iter().zip(lookups) {
            if let Some((wire, tree)) = self.link.reply_to_wire(self.run_id, lookup) {
                uploading.insert(id, Uploading { wire, tree, since: Instant::now() });
            }
        }
        let mut out = Vec::new();
        for id in ids {
            let Some(reply) = uploading.get(id) else { continue };
            if let Some(encoded) = self.settle(reply)? {
                uploading.remove(id);
                out.push((id.clone(), encoded));
            }
        }
        if out.is_empty() {
            self.ask_for_one(ids.iter().filter_map(|id| uploading.get(id)));
        }
        Ok(out)
    }

    /// The app waits on these replies and none is in: unless one of them is uploading
    /// (its turn came), the first is asked for, so the app never waits on a reply whose
    /// upload waits for the app to take another (see [`crate::link::ReplyQueues`]).
    fn ask_for_one<'a>(&self, waited: impl Iterator<Item = &'a Uploading>) {
        let present = |id: &str| self.link.objects.contains(id);
        let waited: Vec<&str> = waited.map(|r| r.tree.object_id.as_str()).collect();
        if !waited.iter().any(|reply| self.link.uploads.has_turn(self.run_id, reply, &present)) {
            if let Some(first) = waited.first() {
                self.link.uploads.ask(self.run_id, first);
            }
        }
    }

    /// The reply once its objects are all uploaded (its objects are then dropped, as a
    /// ServerApp's ConfirmMessageReceived would); an error reply if its sender is no longer
    /// online or it stalled for [`OBJECT_WAIT`], so a node that dies mid-upload cannot hold
    /// the app; `None` while it is still uploading.
    fn settle(&self, reply: &Uploading) -> Result<Option<Vec<u8>>, GridError> {
        if self.link.objects.missing(&reply.tree).is_empty() {
            return self.take_message(&reply.wire, &reply.tree).map(Some);
        }
        let meta = reply.wire.metadata.clone().unwrap_or_default();
        let online = self.link.state.online_nodes().map_err(state_error)?.contains(&meta.src_node_id);
        if online && reply.since.elapsed() < OBJECT_WAIT {
            return Ok(None);
        }
        tracing::warn!(
            run_id = self.run_id,
            node_id = meta.src_node_id,
            "the reply to {} never finished uploading; the app gets a node-unavailable error",
            meta.reply_to_message_id
        );
        self.link.objects.delete(&reply.tree.object_id);
        // The instruction as the node saw it, to answer it as if the node had left first.
        let instruction = pb::Metadata {
            run_id: meta.run_id,
            message_id: meta.reply_to_message_id,
            src_node_id: meta.dst_node_id,
            dst_node_id: meta.src_node_id,
            group_id: meta.group_id,
            message_type: meta.message_type,
            created_at: meta.created_at,
            ttl: meta.ttl,
            ..Default::default()
        };
        let (wire, tree) = self
            .link
            .reply_to_wire(self.run_id, ReplyLookup::NodeUnavailable { instruction })
            .ok_or_else(|| app_error("no error reply for an unfinished upload"))?;
        self.take_message(&wire, &tree).map(Some)
    }

    /// A reply whose objects are all in the store, as the app gets it (its protobuf
    /// bytes); its objects are dropped first, so that an upload waiting for the app to
    /// take this reply goes on while it is encoded.
    fn take_message(&self, wire: &pb::Message, tree: &pb::ObjectTree) -> Result<Vec<u8>, GridError> {
        let read = self.link.objects.take_encoded_message(wire, tree);
        let (_, encoded) = read.map_err(|e| app_error(format!("reply unreadable: {e}")))?;
        Ok(encoded)
    }

    async fn send_and_receive(&self, messages: Vec<Vec<u8>>, timeout: Duration) -> Result<Vec<Vec<u8>>, GridError> {
        let mut stored = self.link.events.replies.subscribe(self.run_id);
        let mut nodes = self.link.events.node_changed.subscribe();
        let mut objects = self.link.events.object_stored.subscribe();
        let mut pending: Vec<String> = self.push(messages).await?.into_iter().filter(|id| !id.is_empty()).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut replies = Vec::new();
        loop {
            for (id, reply) in self.pull(&pending).await? {
                pending.retain(|p| *p != id);
                replies.push(reply);
            }
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(replies);
            }
            // A reply or one of its objects arrives, a node leaves, or (time-based) a node's
            // liveness or a message's TTL lapses: the last has no event, so re-check on a tick.
            tokio::select! {
                _ = stored.changed() => {}
                _ = nodes.changed() => {}
                _ = objects.changed() => {}
                _ = tokio::time::sleep(LIVENESS_RECHECK) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

impl GridHost for LinkGrid {
    fn node_ids(&mut self) -> GridFuture<'_, Vec<u64>> {
        Box::pin(async move {
            self.check()?;
            self.link.state.online_nodes().map_err(state_error)
        })
    }

    fn push_messages(&mut self, messages: Vec<Vec<u8>>) -> GridFuture<'_, Vec<String>> {
        Box::pin(self.push(messages))
    }

    fn pull_messages(&mut self, message_ids: Vec<String>) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move { Ok(self.pull(&message_ids).await?.into_iter().map(|(_, m)| m).collect()) })
    }

    fn send_and_receive(&mut self, messages: Vec<Vec<u8>>, timeout: Duration) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(LinkGrid::send_and_receive(self, messages, timeout))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use sepal_core::records::{ConfigRecord, ConfigValue, Error as MsgError, Message, Metadata, RecordDict};
    use sepal_core::routing::route_reply;
    use sepal_core::store::ObjectStore;

    use super::*;
    use crate::limits::InputLimits;
    use crate::state::memory::MemoryState;
    use crate::state::status;
    use crate::state::NewRun;
    use crate::state::{Pick, StoredMessage};

    /// A running run, one online node, and an instruction the app sent to it that the node
    /// has pulled: (grid, node id, the instruction as delivered, the instruction id).
    async fn delivered_instruction() -> (LinkGrid, u64, pb::Message, String) {
        let link = Link::new(Arc::new(MemoryState::new()), InputLimits::default());
        let run_id = link.state.create_run(NewRun::default()).unwrap();
        for s in [status::STARTING, status::RUNNING] {
            assert!(link.update_run_status(run_id, status::status(s, "", "")).unwrap());
        }
        let node = link.state.create_node(30.0).unwrap();
        let grid = LinkGrid::new(link.clone(), run_id);
        let meta = Metadata { dst_node_id: node, message_type: "train".into(), ..Default::default() };
        let content = RecordDict::new().with("config", ConfigRecord::new().with("lr", ConfigValue::Double(0.1)).into());
        let bytes = pb::Message::from(&Message::with_content(meta, content)).encode_to_vec();
        let ids = grid.push(vec![bytes]).await.unwrap();
        let delivered =
            link.state.next_instruction(node, &Pick::default()).unwrap().expect("the node gets its instruction");
        (grid, node, delivered.message, ids[0].clone())
    }

    /// The node's reply: its message is stored at the SuperLink, its objects are not uploaded.
    /// Returns the reply's objects as the node holds them.
    fn store_reply_without_objects(grid: &LinkGrid, node: u64, ins: &pb::Message) -> ObjectStore {
        let content =
            RecordDict::new().with("config", ConfigRecord::new().with("loss", ConfigValue::Double(1.5)).into());
        let mut reply = Message::with_content(Metadata::default(), content);
        route_reply(&mut reply, ins.metadata.as_ref().unwrap(), node);
        let on_node = ObjectStore::new();
        let (tree, id) = on_node.insert_message(grid.run_id, &reply);
        let mut wire = reply.to_wire_pb();
        wire.metadata.as_mut().unwrap().message_id = id;
        let stored = StoredMessage { message: wire, tree };
        grid.link.state.store_reply(stored.clone()).unwrap().unwrap();
        let missing = grid.link.objects.preregister(grid.run_id, &stored.tree).unwrap();
        grid.link.uploads.queue(grid.run_id, &stored.tree.object_id, &missing, &|_| true);
        on_node
    }

    #[tokio::test]
    async fn a_reply_whose_node_left_mid_upload_becomes_a_node_unavailable_error() {
        let (grid, node, ins, id) = delivered_instruction().await;
        store_reply_without_objects(&grid, node, &ins);
        assert!(grid.pull(std::slice::from_ref(&id)).await.unwrap().is_empty(), "an incomplete reply is held back");

        grid.link.state.delete_node(node).unwrap();
        let out = grid.pull(std::slice::from_ref(&id)).await.unwrap();
        assert_eq!(out.len(), 1, "the app gets an answer once the node is gone");
        let reply = Message::try_from(pb::Message::decode(out[0].1.as_slice()).unwrap()).unwrap();
        assert_eq!(reply.error.map(|e| e.code), Some(MsgError::NODE_UNAVAILABLE));
        assert_eq!(reply.metadata.reply_to_message_id, id);
        assert_eq!(reply.metadata.message_type, "train");
        assert!(grid.uploading.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_app_waiting_on_a_reply_lets_it_upload_before_older_ones() {
        let (grid, node, ins, id) = delivered_instruction().await;
        // An older reply of the run that has not uploaded yet.
        let (older, _) = ObjectStore::new()
            .insert_message(grid.run_id, &Message::with_content(Metadata::default(), RecordDict::new()));
        let missing = grid.link.objects.preregister(grid.run_id, &older).unwrap();
        grid.link.uploads.queue(grid.run_id, &older.object_id, &missing, &|_| true);
        store_reply_without_objects(&grid, node, &ins);
        assert!(grid.pull(std::slice::from_ref(&id)).await.unwrap().is_empty());

        let tree = grid.uploading.lock().unwrap()[&id].tree.clone();
        let present = |id: &str| grid.link.objects.contains(id);
        assert!(grid.link.uploads.has_turn(grid.run_id, &tree.object_id, &present), "the awaited reply may upload");
        assert!(grid.link.uploads.has_turn(grid.run_id, &older.object_id, &present), "the older one still may");
    }

    #[tokio::test]
    async fn a_reply_is_handed_over_once_its_objects_are_in() {
        let (grid, node, ins, id) = delivered_instruction().await;
        let on_node = store_reply_without_objects(&grid, node, &ins);
        assert!(grid.pull(std::slice::from_ref(&id)).await.unwrap().is_empty());

        let tree = grid.uploading.lock().unwrap()[&id].tree.clone();
        for object_id in grid.link.objects.missing(&tree) {
            let sepal_core::store::ObjectLookup::Available(bytes) = on_node.get(&object_id) else {
                panic!("the node holds {object_id}");
            };
            assert!(grid.link.push_object(grid.run_id, &object_id, bytes).unwrap());
        }
        let out = grid.pull(std::slice::from_ref(&id)).await.unwrap();
        let reply = Message::try_from(pb::Message::decode(out[0].1.as_slice()).unwrap()).unwrap();
        let loss = reply.content.as_ref().and_then(|c| c.config_record("config")).and_then(|c| c.get("loss"));
        assert_eq!(loss, Some(&ConfigValue::Double(1.5)));
        assert_eq!(reply.metadata.src_node_id, node);
    }
}
