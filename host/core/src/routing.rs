//! Routing of messages a Wasm app hands to its host: the rules every host applies,
//! whether the app runs in-process (the SuperLink's and SuperNode's Wasm executors) or in
//! `sepal serverapp` / `sepal clientapp` over ServerAppIo / ClientAppIo.
//!
//! What an app returns is untrusted. The host decodes it, refuses what Flower would
//! refuse, and sets the routing fields itself (run, source, destination of a reply,
//! message id, creation time), so an app cannot speak for another run, node or message.

use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;
use sepal_proto::pb;

use crate::records::Message;

/// The SuperLink's node id in message routing (the ServerApp side).
pub const SUPERLINK_NODE_ID: u64 = 1;

/// Flower's default message TTL (seconds), used when the app sets none.
pub const DEFAULT_TTL: f64 = 43_200.0;

/// Why an app's message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The bytes are not a `flwr.proto.Message`.
    #[error("not a flwr.proto.Message: {0}")]
    Decode(String),
    /// The message decodes but is not a valid Flower message.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The message breaks a routing rule (destination, type, content or error).
    #[error("{0}")]
    Refused(String),
}

/// Seconds since the Unix epoch, as Flower's `time.time()`.
pub fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Turns the bytes of an instruction a ServerApp sent (`flwr.proto.Message`, content
/// inline) into a message routed for `run_id`.
///
/// Refuses a message that does not decode, names no usable destination (0 or the
/// SuperLink), has no `message_type`, or carries both or neither of content and error.
/// Sets the run, source (the SuperLink), creation time (now), no message id (the caller
/// computes it from the objects), no `reply_to`, and Flower's default TTL when the app set
/// none (or a non-positive one).
pub fn prepare_instruction(bytes: impl bytes::Buf, run_id: u64) -> Result<Message, RoutingError> {
    let wire = pb::Message::decode(bytes).map_err(|e| RoutingError::Decode(e.to_string()))?;
    let mut msg = Message::try_from(wire).map_err(|e| RoutingError::Invalid(e.to_string()))?;
    let m = &mut msg.metadata;
    if m.dst_node_id == 0 || m.dst_node_id == SUPERLINK_NODE_ID {
        return Err(RoutingError::Refused(format!("invalid destination node {}", m.dst_node_id)));
    }
    if m.message_type.is_empty() {
        return Err(RoutingError::Refused("message_type must be set".into()));
    }
    if msg.content.is_some() == msg.error.is_some() {
        return Err(RoutingError::Refused("a message carries either content or an error".into()));
    }
    m.run_id = run_id;
    m.message_id = String::new();
    m.src_node_id = SUPERLINK_NODE_ID;
    m.reply_to_message_id = String::new();
    m.created_at = now_secs();
    if m.ttl.is_nan() || m.ttl <= 0.0 {
        m.ttl = DEFAULT_TTL;
    }
    Ok(msg)
}

/// Sets a ClientApp's reply's routing from the instruction `ins` it answers, sent by node
/// `node_id`: same run, to the SuperLink, in reply to `ins`, created now, no message id
/// (computed from the objects). The app's group id and message type are kept when set
/// (else the instruction's), and its TTL is capped by what is left of the instruction's.
pub fn route_reply(reply: &mut Message, ins: &pb::Metadata, node_id: u64) {
    let now = now_secs();
    let left = (ins.created_at + ins.ttl - now).max(0.0);
    let m = &mut reply.metadata;
    m.run_id = ins.run_id;
    m.message_id = String::new();
    m.src_node_id = node_id;
    m.dst_node_id = SUPERLINK_NODE_ID;
    m.reply_to_message_id = ins.message_id.clone();
    if m.group_id.is_empty() {
        m.group_id = ins.group_id.clone();
    }
    if m.message_type.is_empty() {
        m.message_type = ins.message_type.clone();
    }
    m.created_at = now;
    m.ttl = if m.ttl > 0.0 { m.ttl.min(left) } else { left };
}

/// Node `node_id`'s error reply to the instruction `ins` (a ClientApp that could not be
/// loaded, failed or timed out), routed as [`route_reply`] routes any reply.
pub fn error_reply(ins: &pb::Metadata, node_id: u64, error: crate::records::Error) -> Message {
    let mut reply = Message::with_error(crate::records::Metadata::default(), error);
    route_reply(&mut reply, ins, node_id);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Error, Metadata, RecordDict};

    fn encoded(msg: &Message) -> Vec<u8> {
        pb::Message::from(msg).encode_to_vec()
    }

    fn instruction(dst: u64) -> Message {
        let meta = Metadata {
            run_id: 99,
            message_id: "forged".into(),
            src_node_id: 7,
            dst_node_id: dst,
            reply_to_message_id: "x".into(),
            message_type: "train".into(),
            ..Default::default()
        };
        Message::with_content(meta, RecordDict::default())
    }

    #[test]
    fn instructions_are_routed_by_the_host() {
        let msg = prepare_instruction(&*encoded(&instruction(5)), 3).unwrap();
        let m = &msg.metadata;
        assert_eq!((m.run_id, m.src_node_id, m.dst_node_id), (3, SUPERLINK_NODE_ID, 5));
        assert!(m.message_id.is_empty() && m.reply_to_message_id.is_empty());
        assert_eq!(m.ttl, DEFAULT_TTL);
        assert!((now_secs() - m.created_at).abs() < 5.0);
    }

    #[test]
    fn bad_instructions_are_refused() {
        assert!(matches!(prepare_instruction(&b"\xff\xff"[..], 1), Err(RoutingError::Decode(_))));
        assert!(matches!(prepare_instruction(&[][..], 1), Err(RoutingError::Invalid(_))));
        for dst in [0, SUPERLINK_NODE_ID] {
            let err = prepare_instruction(&*encoded(&instruction(dst)), 1).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid destination node {dst}"));
        }
        let mut both = instruction(5);
        both.error = Some(Error::new(0, "x"));
        assert!(prepare_instruction(&*encoded(&both), 1).is_err());
        let mut untyped = instruction(5);
        untyped.metadata.message_type.clear();
        assert!(prepare_instruction(&*encoded(&untyped), 1).is_err());
    }

    #[test]
    fn replies_answer_their_instruction() {
        let now = now_secs();
        let ins = pb::Metadata {
            run_id: 4,
            message_id: "abc".into(),
            group_id: "2".into(),
            message_type: "evaluate".into(),
            created_at: now - 100.0,
            ttl: 200.0,
            ..Default::default()
        };
        let mut reply = instruction(77);
        reply.metadata.message_type.clear();
        reply.metadata.ttl = 1e9;
        route_reply(&mut reply, &ins, 12);
        let m = &reply.metadata;
        assert_eq!((m.run_id, m.src_node_id, m.dst_node_id), (4, 12, SUPERLINK_NODE_ID));
        assert_eq!((m.reply_to_message_id.as_str(), m.group_id.as_str()), ("abc", "2"));
        assert_eq!(m.message_type, "evaluate");
        assert!(m.message_id.is_empty());
        assert!(m.ttl <= 100.0 && m.ttl > 90.0, "{}", m.ttl);
    }
}
