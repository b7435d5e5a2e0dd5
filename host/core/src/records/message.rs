//! Flower's `Message`, `Metadata` and `Error`.

use super::RecordDict;

/// A message's envelope (Flower 1.20 `Metadata`; no task ids, no `delivered_at`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// The run the message belongs to.
    pub run_id: u64,
    /// The message's id: the object id of its Message object (empty until computed).
    pub message_id: String,
    /// Sender node (1 is the SuperLink / ServerApp side).
    pub src_node_id: u64,
    /// Receiver node.
    pub dst_node_id: u64,
    /// The id of the message this one replies to (empty for an instruction).
    pub reply_to_message_id: String,
    /// The ServerApp's group (round) identifier.
    pub group_id: String,
    /// Time to live, in seconds from `created_at`.
    pub ttl: f64,
    /// `train`, `evaluate`, `query`, `system`, optionally `.<identifier>`.
    pub message_type: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: f64,
}

/// An error carried by a message instead of content (Flower's `Error`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Error {
    /// One of the `Error::*` codes (other values are passed through).
    pub code: i64,
    /// Human-readable reason (empty for none).
    pub reason: String,
}

impl Error {
    /// Unknown error.
    pub const UNKNOWN: i64 = 0;
    /// The ClientApp could not be loaded.
    pub const LOAD_CLIENT_APP_EXCEPTION: i64 = 1;
    /// The ClientApp raised an exception.
    pub const CLIENT_APP_RAISED_EXCEPTION: i64 = 2;
    /// The instruction message is unknown or expired.
    pub const MESSAGE_UNAVAILABLE: i64 = 3;
    /// The reply expired.
    pub const REPLY_MESSAGE_UNAVAILABLE: i64 = 4;
    /// The destination node is offline or deleted.
    pub const NODE_UNAVAILABLE: i64 = 5;

    /// An error with the given code and reason.
    pub fn new(code: i64, reason: impl Into<String>) -> Self {
        Error { code, reason: reason.into() }
    }
}

/// A Flower message: metadata plus either content or an error.
///
/// Flower requires exactly one of `content` and `error`. When both are set, the object
/// encoding keeps only the error, as Flower's would.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The envelope.
    pub metadata: Metadata,
    /// The payload (absent for an error reply).
    pub content: Option<RecordDict>,
    /// The error (absent for a normal message).
    pub error: Option<Error>,
}

impl Message {
    /// A message with content.
    pub fn with_content(metadata: Metadata, content: RecordDict) -> Self {
        Message { metadata, content: Some(content), error: None }
    }

    /// An error message.
    pub fn with_error(metadata: Metadata, error: Error) -> Self {
        Message { metadata, content: None, error: Some(error) }
    }

    /// Whether the message carries an error.
    pub fn has_error(&self) -> bool {
        self.error.is_some()
    }

    /// Whether the message carries content (and no error).
    pub fn has_content(&self) -> bool {
        self.error.is_none() && self.content.is_some()
    }
}
