//! [`Message`]: an instruction from the ServerApp or a reply from a ClientApp.

use std::time::{SystemTime, UNIX_EPOCH};

use sepal_proto::pb;

use crate::error::AppError;
use crate::records::RecordDict;

pub use sepal_core::{Error as MessageError, Metadata};

/// Flower's default time to live of an instruction, in seconds (12 hours).
pub const DEFAULT_TTL: f64 = 43_200.0;

/// The node id of the SuperLink / ServerApp side: the source of instructions and the
/// destination of replies.
pub use sepal_core::routing::SUPERLINK_NODE_ID;

/// Flower's message types. A ClientApp dispatches on the part before the first `.`, so
/// `"train.fine-tune"` goes to the `train` handler unless one is registered for the full
/// type.
pub mod message_type {
    /// Train on local data and return updated arrays.
    pub const TRAIN: &str = "train";
    /// Evaluate the given arrays on local data.
    pub const EVALUATE: &str = "evaluate";
    /// Answer a query.
    pub const QUERY: &str = "query";
    /// Flower's internal system messages.
    pub const SYSTEM: &str = "system";
}

/// The current time in seconds since the Unix epoch (Flower's `created_at` unit).
///
/// In a Wasm component this reads `wasi:clocks/wall-clock`.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A Flower message: [`Metadata`] plus either content (a [`RecordDict`]) or an error.
///
/// A ServerApp builds instructions with [`Message::new`]; a ClientApp answers one with
/// [`Message::reply`] or [`Message::error_reply`].
///
/// ```
/// use sepal_sdk::prelude::*;
///
/// let content = RecordDict::new().with("config", ConfigRecord::new().with("lr", 0.1.into()).into());
/// let instruction = Message::new(content, 7, "train").with_group_id("1");
/// assert_eq!(instruction.dst_node_id(), 7);
/// assert_eq!(instruction.ttl(), sepal_sdk::message::DEFAULT_TTL);
///
/// let reply = instruction.reply(RecordDict::new());
/// assert_eq!(reply.dst_node_id(), sepal_sdk::message::SUPERLINK_NODE_ID);
/// assert_eq!(reply.src_node_id(), 7);
/// assert_eq!(reply.group_id(), "1");
/// assert_eq!(reply.message_type(), "train");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    metadata: Metadata,
    /// Empty for an error message.
    content: RecordDict,
    error: Option<MessageError>,
}

impl Message {
    /// An instruction to node `dst_node_id` (what a ServerApp sends).
    ///
    /// The TTL is [`DEFAULT_TTL`], the group id empty, `created_at` now. The host fills in
    /// the run id, the source node and the message id when the message is pushed.
    pub fn new(content: RecordDict, dst_node_id: u64, message_type: impl Into<String>) -> Self {
        Message {
            metadata: Metadata {
                dst_node_id,
                message_type: message_type.into(),
                ttl: DEFAULT_TTL,
                created_at: now(),
                ..Metadata::default()
            },
            content,
            error: None,
        }
    }

    /// A message with the given metadata and content.
    pub fn from_parts(metadata: Metadata, content: RecordDict) -> Self {
        Message { metadata, content, error: None }
    }

    /// A message with the given metadata carrying an error instead of content.
    pub fn from_error(metadata: Metadata, error: MessageError) -> Self {
        Message { metadata, content: RecordDict::new(), error: Some(error) }
    }

    /// Builder: sets the group id (Flower uses the server round, e.g. `"3"`).
    pub fn with_group_id(mut self, group_id: impl Into<String>) -> Self {
        self.metadata.group_id = group_id.into();
        self
    }

    /// Builder: sets the time to live, in seconds from `created_at`.
    pub fn with_ttl(mut self, ttl: f64) -> Self {
        self.metadata.ttl = ttl;
        self
    }

    /// The reply to this instruction, carrying `content`.
    ///
    /// As Flower's `Message(content, reply_to=msg)`: same run id, group id and message
    /// type; source and destination swapped (so the destination is the SuperLink,
    /// [`SUPERLINK_NODE_ID`]); `reply_to_message_id` = this message's id; `created_at` =
    /// now; and a TTL that ends when this message's does (`created_at + ttl - now`). The
    /// reply's own message id is left empty: the host computes it.
    pub fn reply(&self, content: RecordDict) -> Message {
        Message { metadata: self.reply_metadata(), content, error: None }
    }

    /// An error reply to this instruction (metadata as in [`Message::reply`]).
    ///
    /// `code` is one of Flower's error codes; a failing app uses 2
    /// ([`MessageError::CLIENT_APP_RAISED_EXCEPTION`]).
    pub fn error_reply(&self, code: i64, reason: impl Into<String>) -> Message {
        Message {
            metadata: self.reply_metadata(),
            content: RecordDict::new(),
            error: Some(MessageError::new(code, reason)),
        }
    }

    fn reply_metadata(&self) -> Metadata {
        let m = &self.metadata;
        let current = now();
        let dst = if m.src_node_id == 0 { SUPERLINK_NODE_ID } else { m.src_node_id };
        Metadata {
            run_id: m.run_id,
            message_id: String::new(),
            src_node_id: m.dst_node_id,
            dst_node_id: dst,
            reply_to_message_id: m.message_id.clone(),
            group_id: m.group_id.clone(),
            // Evaluated exactly as Flower's check on the SuperLink
            // (`ins.created_at + ins.ttl - reply.created_at`), so it can never exceed it.
            ttl: m.created_at + m.ttl - current,
            message_type: m.message_type.clone(),
            created_at: current,
        }
    }

    /// The envelope.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The envelope, mutably.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The content (empty for an error message).
    pub fn content(&self) -> &RecordDict {
        &self.content
    }

    /// The content, mutably.
    pub fn content_mut(&mut self) -> &mut RecordDict {
        &mut self.content
    }

    /// Takes the content out, leaving it empty (the metadata stays usable for a reply).
    pub fn take_content(&mut self) -> RecordDict {
        std::mem::take(&mut self.content)
    }

    /// The content, consuming the message.
    pub fn into_content(self) -> RecordDict {
        self.content
    }

    /// The error, for an error message.
    pub fn error(&self) -> Option<&MessageError> {
        self.error.as_ref()
    }

    /// Whether the message carries an error.
    pub fn has_error(&self) -> bool {
        self.error.is_some()
    }

    /// Whether the message carries content (it carries no error).
    pub fn has_content(&self) -> bool {
        self.error.is_none()
    }

    /// The message's id (empty until the host assigns it).
    pub fn message_id(&self) -> &str {
        &self.metadata.message_id
    }

    /// The message type, e.g. `train` or `evaluate.custom`.
    pub fn message_type(&self) -> &str {
        &self.metadata.message_type
    }

    /// The run id.
    pub fn run_id(&self) -> u64 {
        self.metadata.run_id
    }

    /// The sending node.
    pub fn src_node_id(&self) -> u64 {
        self.metadata.src_node_id
    }

    /// The receiving node.
    pub fn dst_node_id(&self) -> u64 {
        self.metadata.dst_node_id
    }

    /// The id of the instruction this message replies to (empty for an instruction).
    pub fn reply_to_message_id(&self) -> &str {
        &self.metadata.reply_to_message_id
    }

    /// The group id (the server round, by Flower's convention).
    pub fn group_id(&self) -> &str {
        &self.metadata.group_id
    }

    /// Time to live in seconds from [`Message::created_at`].
    pub fn ttl(&self) -> f64 {
        self.metadata.ttl
    }

    /// Creation time in seconds since the Unix epoch.
    pub fn created_at(&self) -> f64 {
        self.metadata.created_at
    }

    /// Decodes a `flwr.proto.Message` with its content inline (the bytes that cross the
    /// Wasm boundary).
    pub fn from_proto_bytes(bytes: &[u8]) -> Result<Self, AppError> {
        Self::decode(bytes)
    }

    /// [`Message::from_proto_bytes`] from a buffer the message may keep: its arrays' data
    /// become slices of `bytes` instead of copies (a large model is not held twice).
    pub fn from_proto_buffer(bytes: Vec<u8>) -> Result<Self, AppError> {
        Self::decode(bytes::Bytes::from(bytes))
    }

    fn decode(buf: impl bytes::Buf) -> Result<Self, AppError> {
        let pb: pb::Message = prost::Message::decode(buf)?;
        Message::try_from(pb)
    }

    /// Encodes as a `flwr.proto.Message` with its content inline.
    pub fn to_proto_bytes(&self) -> Vec<u8> {
        self.clone().into_proto_bytes()
    }

    /// [`Message::to_proto_bytes`], consuming the message (no copy of array data before
    /// the encoding itself).
    pub fn into_proto_bytes(self) -> Vec<u8> {
        prost::Message::encode_to_vec(&pb::Message::from(self))
    }
}

impl From<sepal_core::Message> for Message {
    fn from(m: sepal_core::Message) -> Self {
        Message {
            metadata: m.metadata,
            content: if m.error.is_some() { RecordDict::new() } else { m.content.unwrap_or_default() },
            error: m.error,
        }
    }
}

impl From<Message> for sepal_core::Message {
    fn from(m: Message) -> Self {
        match m.error {
            Some(error) => sepal_core::Message::with_error(m.metadata, error),
            None => sepal_core::Message::with_content(m.metadata, m.content),
        }
    }
}

impl TryFrom<pb::Message> for Message {
    type Error = AppError;

    fn try_from(m: pb::Message) -> Result<Self, AppError> {
        Ok(sepal_core::Message::try_from(m)?.into())
    }
}

impl From<Message> for pb::Message {
    fn from(m: Message) -> Self {
        pb::Message {
            metadata: Some((&m.metadata).into()),
            content: m.error.is_none().then(|| (&m.content).into()),
            error: m.error.as_ref().map(Into::into),
        }
    }
}
