//! Messages and their objects as more than one service handles them: shape and size
//! checks, Flower's metadata validation, object pushes and pulls, and the error replies
//! the SuperLink makes itself.

use bytes::Bytes;
use sepal_core::records::{Error as MsgError, Message, Metadata};
use sepal_proto::pb;

use super::Link;
use crate::clock::now_secs;
use crate::error::{Error, Result};
use crate::limits::too_large;
use crate::state::{Change, ReplyLookup, StoredMessage, SUPERLINK_NODE_ID};

impl Link {
    /// Fails with RESOURCE_EXHAUSTED if an object is larger than the limit.
    pub fn check_object_size(&self, object_id: &str, len: usize) -> Result<()> {
        if len > self.limits.max_object_bytes {
            return Err(too_large(&format!("object {object_id}, in bytes,"), len, self.limits.max_object_bytes));
        }
        Ok(())
    }

    /// Pairs each wire message with its tree and checks their shape.
    pub fn stored_messages(
        &self,
        messages: Vec<pb::Message>,
        trees: Vec<pb::ObjectTree>,
    ) -> Result<Vec<StoredMessage>> {
        if messages.is_empty() {
            return Err(Error::InvalidArgument("messages_list must not be empty".into()));
        }
        if messages.len() > self.limits.max_messages_per_push {
            return Err(too_large("the push's message count", messages.len(), self.limits.max_messages_per_push));
        }
        if let Some(big) = trees.iter().map(tree_size).max().filter(|n| *n > self.limits.max_objects_per_message) {
            return Err(too_large("a message's object count", big, self.limits.max_objects_per_message));
        }
        if messages.len() != trees.len() {
            return Err(Error::InvalidArgument(format!(
                "{} messages but {} object trees; each message needs its tree",
                messages.len(),
                trees.len()
            )));
        }
        messages
            .into_iter()
            .zip(trees)
            .map(|(message, tree)| {
                let meta = message
                    .metadata
                    .as_ref()
                    .ok_or_else(|| Error::InvalidArgument("message without metadata".into()))?;
                if tree.object_id != meta.message_id {
                    return Err(Error::InvalidArgument(format!(
                        "object tree root {:?} is not the message id {:?}",
                        tree.object_id, meta.message_id
                    )));
                }
                Ok(StoredMessage { message, tree })
            })
            .collect()
    }

    /// Stores a pushed object of `run_id`; `false` when it was not expected or its hash is
    /// wrong.
    pub fn push_object(&self, run_id: u64, object_id: &str, content: Bytes) -> Result<bool> {
        self.check_object_size(object_id, content.len())?;
        match self.objects.put(object_id, content).map_err(|e| self.refused(run_id, e.into())) {
            Ok(true) => {
                self.uploads.stored(run_id, object_id);
                self.notify(Change::ObjectStored);
                Ok(true)
            }
            Ok(false) => {
                tracing::warn!(object_id, "pushed object not stored: not preregistered or hash mismatch");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The objects of `tree` that are here, to carry inline with their message (at most
    /// [`sepal_wire::INLINE_OBJECTS_MAX_BYTES`]), and whether that is all of them.
    pub fn inline_objects(&self, tree: &pb::ObjectTree) -> (Vec<pb::InlineObject>, bool) {
        let (objects, complete) = self.objects.collect(tree, sepal_wire::INLINE_OBJECTS_MAX_BYTES);
        let objects = objects
            .into_iter()
            .map(|(object_id, content)| pb::InlineObject { object_id, object_content: content })
            .collect();
        (objects, complete)
    }

    /// Looks up an object for a pull.
    pub fn pull_object(&self, object_id: &str) -> pb::PullObjectResponse {
        self.objects.get(object_id).into_pull_response()
    }

    /// Turns the state's answer to a reply pull into a wire message and its tree;
    /// synthetic error replies are built and stored so they can be pulled.
    pub fn reply_to_wire(&self, run_id: u64, lookup: ReplyLookup) -> Option<(pb::Message, pb::ObjectTree)> {
        let (meta, code, reason) = match lookup {
            ReplyLookup::Waiting => return None,
            ReplyLookup::Reply(m) => {
                self.objects.adopt(run_id, &m.tree);
                return Some((m.message, m.tree));
            }
            ReplyLookup::InstructionUnavailable { instruction_id } => (
                Metadata { reply_to_message_id: instruction_id, message_type: "system".into(), ..Default::default() },
                MsgError::MESSAGE_UNAVAILABLE,
                "Error: Message Unavailable - The requested message could not be found in the database. It may have expired due to its TTL or never existed.",
            ),
            ReplyLookup::ReplyUnavailable { instruction } => (
                reply_metadata(&instruction),
                MsgError::REPLY_MESSAGE_UNAVAILABLE,
                "Error: Reply Message Unavailable - The reply message has expired.",
            ),
            ReplyLookup::NodeUnavailable { instruction } => (
                reply_metadata(&instruction),
                MsgError::NODE_UNAVAILABLE,
                "Error: Node Unavailable \u{2014} The destination node failed to report a heartbeat within 2 \u{d7} its expected interval.",
            ),
        };
        let meta =
            Metadata { src_node_id: SUPERLINK_NODE_ID, dst_node_id: SUPERLINK_NODE_ID, created_at: now_secs(), ..meta };
        let message = Message::with_error(meta, MsgError::new(code, reason));
        let (tree, id) = self.objects.insert_message(run_id, &message);
        let mut wire_meta = pb::Metadata::from(&message.metadata);
        wire_meta.message_id = id;
        let error = message.error.as_ref().map(pb::Error::from);
        Some((pb::Message { metadata: Some(wire_meta), content: None, error }, tree))
    }
}

/// The number of objects in a tree.
fn tree_size(tree: &pb::ObjectTree) -> usize {
    1 + tree.children.iter().map(tree_size).sum::<usize>()
}

/// Metadata of a synthetic reply to `ins`: same run, group and type, TTL = time left.
fn reply_metadata(ins: &pb::Metadata) -> Metadata {
    let now = now_secs();
    Metadata {
        run_id: ins.run_id,
        reply_to_message_id: ins.message_id.clone(),
        group_id: ins.group_id.clone(),
        message_type: ins.message_type.clone(),
        ttl: (ins.ttl - (now - ins.created_at)).max(0.0),
        ..Default::default()
    }
}

/// Flower's checks of a message's metadata; returns every problem found.
pub fn validate_message(msg: &pb::Message, is_reply: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(m) = msg.metadata.as_ref() else {
        return vec!["message has no metadata".into()];
    };
    if m.message_id.is_empty() {
        errors.push("empty `metadata.message_id`".into());
    }
    // Unix time of 28 February 2025: Flower refuses anything older as not a timestamp.
    if m.created_at < 1_740_700_800.0 {
        errors.push("`metadata.created_at` must be the Unix time (seconds) the message was created".into());
    }
    if m.ttl <= 0.0 {
        errors.push("`metadata.ttl` must be higher than zero".into());
    }
    if m.created_at + m.ttl <= now_secs() {
        errors.push("Message TTL has expired".into());
    }
    if m.src_node_id == 0 {
        errors.push("`metadata.src_node_id` is not set".into());
    }
    if m.dst_node_id == 0 {
        errors.push("`metadata.dst_node_id` is not set".into());
    }
    if m.message_type.is_empty() {
        errors.push("`metadata.message_type` must be set".into());
    }
    if msg.content.is_some() == msg.error.is_some() {
        errors.push("either message `content` or `error` must be set (but not both)".into());
    }
    if is_reply {
        if m.reply_to_message_id.is_empty() {
            errors.push("`metadata.reply_to_message_id` must be set".into());
        }
        if m.src_node_id == SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.src_node_id` is {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
        if m.dst_node_id != SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.dst_node_id` is not {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
    } else {
        if !m.reply_to_message_id.is_empty() {
            errors.push("`metadata.reply_to_message_id` must not be set".into());
        }
        if m.src_node_id != SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.src_node_id` is not {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
        if m.dst_node_id == SUPERLINK_NODE_ID {
            errors.push(format!("`metadata.dst_node_id` is {SUPERLINK_NODE_ID} (the SuperLink)"));
        }
    }
    errors
}

/// Fails with INVALID_ARGUMENT listing every problem, if there are any.
pub fn require_valid(msgs: &[StoredMessage], is_reply: bool) -> Result<()> {
    for msg in msgs {
        let errors = validate_message(&msg.message, is_reply);
        if !errors.is_empty() {
            return Err(Error::InvalidArgument(format!("malformed message: {}", errors.join(", "))));
        }
    }
    Ok(())
}
