//! The grid a Wasm ServerApp sees in `sepal serverapp`: its run on a SuperLink, over
//! ServerAppIo.
//!
//! What the app sends is untrusted and routed by [`prepare_instruction`] (the rule the
//! SuperLink's in-process grid applies too). Messages travel as Flower does it: the
//! content-less message and its object tree with PushMessages, then the objects the
//! SuperLink asks for; replies come with PullMessages, their objects with PullObject, and
//! are confirmed. ServerAppIo has no long-poll, so `send_and_receive` polls PullMessages
//! (every 50 ms, rising to 250 ms; Python's ServerApp polls every 3 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use sepal_core::routing::{prepare_instruction, SUPERLINK_NODE_ID};
use sepal_core::{message_from_objects, message_to_objects};
use sepal_proto::pb;
use sepal_sandbox::{GridError, GridFuture, GridHost};
use tokio::time::Instant;
use tonic::Code;

use super::stop::RunStop;
use super::Link;
use crate::error::RpcError;
use crate::objects::{pull_tree, push_objects, TransferError};
use crate::rpc::unary;

/// First pause between PullMessages in `send_and_receive`.
const FIRST_POLL: Duration = Duration::from_millis(50);

/// Longest pause between PullMessages in `send_and_receive`.
const MAX_POLL: Duration = Duration::from_millis(250);

/// The ServerApp's view of its run.
pub(crate) struct GrpcGrid {
    link: Link,
    run_id: u64,
    stop: Arc<RunStop>,
}

fn app_error(message: impl Into<String>) -> GridError {
    GridError::App { code: 0, message: message.into() }
}

fn superlink() -> Option<pb::Node> {
    Some(pb::Node { node_id: SUPERLINK_NODE_ID })
}

impl GrpcGrid {
    pub(crate) fn new(link: Link, run_id: u64, stop: Arc<RunStop>) -> Self {
        GrpcGrid { link, run_id, stop }
    }

    /// Ends the app if the run is known to be stopped.
    fn check(&self) -> Result<(), GridError> {
        match self.stop.reason() {
            Some(reason) => Err(GridError::Abort(format!("run {} stopped: {reason}", self.run_id))),
            None => Ok(()),
        }
    }

    /// A failed call as the app sees it: a stopped run ends it; a refused request is an
    /// error it can handle; anything else (the SuperLink is gone) ends it.
    fn rpc_error(&self, e: RpcError) -> GridError {
        if e.is_stopped() {
            self.stop.stop(e.status.message().to_owned());
            return GridError::Abort(format!("run {} stopped: {}", self.run_id, e.status.message()));
        }
        match e.status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => app_error(e.to_string()),
            _ => GridError::Abort(e.to_string()),
        }
    }

    fn transfer_error(&self, e: TransferError) -> GridError {
        match e {
            TransferError::Rpc(e) => self.rpc_error(e),
            other => app_error(other.to_string()),
        }
    }

    async fn node_ids(&self) -> Result<Vec<u64>, GridError> {
        self.check()?;
        let res =
            unary!(self.link, get_nodes, pb::GetNodesRequest { run_id: self.run_id }).map_err(|e| self.rpc_error(e))?;
        Ok(res.nodes.into_iter().map(|n| n.node_id).collect())
    }

    /// Pushes instructions and the objects the SuperLink asks for; returns their ids.
    async fn push(&self, messages: Vec<Vec<u8>>) -> Result<Vec<String>, GridError> {
        self.check()?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let sent = messages.len();
        let (mut wires, mut trees, mut objects) = (Vec::new(), Vec::new(), HashMap::new());
        // Owned buffers: the decoded arrays are slices of them, not copies.
        for bytes in messages {
            let msg = prepare_instruction(Bytes::from(bytes), self.run_id).map_err(|e| app_error(e.to_string()))?;
            let (tree, encoded, id) = message_to_objects(&msg);
            let mut wire = msg.to_wire_pb();
            if let Some(meta) = wire.metadata.as_mut() {
                meta.message_id = id;
            }
            objects.extend(encoded);
            wires.push(wire);
            trees.push(tree);
        }
        let req = pb::PushAppMessagesRequest {
            run_id: self.run_id,
            messages_list: wires,
            message_object_trees: trees,
            ..Default::default()
        };
        let res = unary!(self.link, push_messages, req).map_err(|e| self.rpc_error(e))?;
        if res.message_ids.len() != sent {
            let got = res.message_ids.len();
            return Err(GridError::Abort(format!("the SuperLink answered {got} message ids for {sent} messages")));
        }
        self.push_objects(&res.objects_to_push, &objects).await?;
        Ok(res.message_ids)
    }

    async fn push_objects(&self, wanted: &[String], objects: &HashMap<String, Bytes>) -> Result<(), GridError> {
        let run_id = self.run_id;
        push_objects(wanted, objects, |object_id, content| {
            let req = pb::PushObjectRequest { node: superlink(), run_id, object_id, object_content: content };
            let link = self.link.clone();
            async move { unary!(link, push_object, req).map(|r| r.stored) }
        })
        .await
        .map_err(|e| self.transfer_error(e))
    }

    /// The replies that arrived for `ids`, each with the instruction id it answers.
    async fn pull(&self, ids: &[String]) -> Result<Vec<(String, Vec<u8>)>, GridError> {
        self.check()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let req = pb::PullAppMessagesRequest { run_id: self.run_id, message_ids: ids.to_vec(), ..Default::default() };
        let res = unary!(self.link, pull_messages, req).map_err(|e| self.rpc_error(e))?;
        if res.messages_list.len() != res.message_object_trees.len() {
            return Err(GridError::Abort("the SuperLink sent replies without their object trees".into()));
        }
        let mut out = Vec::with_capacity(res.messages_list.len());
        for (wire, tree) in res.messages_list.iter().zip(&res.message_object_trees) {
            let reply = self.assemble(wire, tree).await?;
            let reply_to = reply.metadata.reply_to_message_id.clone();
            out.push((reply_to, pb::Message::from(&reply).encode_to_vec()));
        }
        Ok(out)
    }

    /// Pulls a reply's objects, decodes it, and confirms it (the SuperLink drops it).
    async fn assemble(
        &self,
        wire: &pb::Message,
        tree: &pb::ObjectTree,
    ) -> Result<sepal_core::records::Message, GridError> {
        let run_id = self.run_id;
        let objects = pull_tree(tree, |object_id| {
            let req = pb::PullObjectRequest { node: superlink(), run_id, object_id };
            async move { unary!(self.link, pull_object, req) }
        })
        .await
        .map_err(|e| self.transfer_error(e))?;
        let reply = message_from_objects(wire, tree, &objects)
            .map_err(|e| app_error(format!("reply {} unreadable: {e}", tree.object_id)))?;
        let req =
            pb::ConfirmMessageReceivedRequest { node: superlink(), run_id, message_object_id: tree.object_id.clone() };
        unary!(self.link, confirm_message_received, req).map_err(|e| self.rpc_error(e))?;
        Ok(reply)
    }

    /// Pushes, then polls for the replies until all arrived or `timeout` passed.
    async fn send_and_receive(&self, messages: Vec<Vec<u8>>, timeout: Duration) -> Result<Vec<Vec<u8>>, GridError> {
        let mut pending: Vec<String> = self.push(messages).await?.into_iter().filter(|id| !id.is_empty()).collect();
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_POLL;
        let mut replies = Vec::new();
        loop {
            for (reply_to, reply) in self.pull(&pending).await? {
                pending.retain(|id| *id != reply_to);
                replies.push(reply);
            }
            let now = Instant::now();
            if pending.is_empty() || now >= deadline {
                return Ok(replies);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}

impl GridHost for GrpcGrid {
    fn node_ids(&mut self) -> GridFuture<'_, Vec<u64>> {
        Box::pin(GrpcGrid::node_ids(self))
    }

    fn push_messages(&mut self, messages: Vec<Vec<u8>>) -> GridFuture<'_, Vec<String>> {
        Box::pin(self.push(messages))
    }

    fn pull_messages(&mut self, message_ids: Vec<String>) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move { Ok(self.pull(&message_ids).await?.into_iter().map(|(_, m)| m).collect()) })
    }

    fn send_and_receive(&mut self, messages: Vec<Vec<u8>>, timeout: Duration) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(GrpcGrid::send_and_receive(self, messages, timeout))
    }
}
