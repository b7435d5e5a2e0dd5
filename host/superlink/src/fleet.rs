//! The Fleet API (port 9092): what SuperNodes call.
//!
//! Every request has passed [`sepal_wire::auth::FleetAuth`], which verified its signature
//! and left the caller's key in the request; handlers check that the key is bound to the
//! node the request names, then act on the [`Link`].

use std::sync::Arc;
use std::time::Duration;

use sepal_proto::pb;
use sepal_proto::pb::fleet_server::Fleet;
use sepal_wire::auth::NodeKey;
use tonic::Request;

use crate::error::{reply, Error, Reply, Result};
use crate::link::{validate_message, Link};
use crate::state::{Change, StoredMessage};

/// How long a SuperNode should wait before reconnecting, sent with every push (seconds).
const RECONNECT_AFTER: u64 = 5;

/// The longest a pull is held, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

fn requested_wait<T>(req: &Request<T>) -> Duration {
    sepal_wire::requested_wait(req.metadata(), MAX_WAIT)
}

/// Whether a (Sepal) SuperNode asked for objects inline ([`sepal_wire::INLINE_OBJECTS_HEADER`]).
fn asks_inline<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(sepal_wire::INLINE_OBJECTS_HEADER)
}

/// Adds `header: 1` to a successful response when `say` holds (Sepal's extensions, which
/// a Sepal SuperNode asked for: Flower's never see them).
fn tell<T>(say: bool, header: &'static str, mut reply: Reply<T>) -> Reply<T> {
    if let (true, Ok(response)) = (say, reply.as_mut()) {
        response.metadata_mut().insert(header, tonic::metadata::MetadataValue::from_static("1"));
    }
    reply
}

/// The Fleet service.
pub struct FleetService {
    link: Arc<Link>,
}

impl FleetService {
    /// A Fleet service over `link`.
    pub fn new(link: Arc<Link>) -> Self {
        Self { link }
    }

    /// The node the request names, once its caller's key is found bound to that node
    /// (every Fleet call but CreateNode).
    fn node_of<T>(&self, req: &Request<T>, node: &Option<pb::Node>) -> Result<u64> {
        let node_id = node.as_ref().map_or(0, |n| n.node_id);
        let invalid = || Error::Unauthenticated("Invalid node ID".into());
        let key = req.extensions().get::<NodeKey>().ok_or_else(invalid)?;
        match self.link.state.node_for_key(&key.0)? {
            Some(bound) if bound == node_id => Ok(node_id),
            _ => Err(invalid()),
        }
    }

    fn create_node(&self, req: Request<pb::CreateNodeRequest>) -> Result<pb::CreateNodeResponse> {
        let key = req
            .extensions()
            .get::<NodeKey>()
            .cloned()
            .ok_or_else(|| Error::Unauthenticated("Missing authentication metadata".into()))?;
        let state = &self.link.state;
        let node_id = state.create_node(req.get_ref().heartbeat_interval)?;
        if let Err(e) = state.bind_public_key(node_id, &key.0) {
            state.delete_node(node_id)?;
            return Err(e.into());
        }
        self.link.node_changed();
        tracing::info!(node_id, "node created");
        Ok(pb::CreateNodeResponse { node: Some(pb::Node { node_id }) })
    }

    fn delete_node(&self, req: Request<pb::DeleteNodeRequest>) -> Result<pb::DeleteNodeResponse> {
        let node_id = self.node_of(&req, &req.get_ref().node)?;
        self.link.state.delete_node(node_id)?;
        self.link.node_left(node_id);
        tracing::info!(node_id, "node deleted");
        Ok(pb::DeleteNodeResponse {})
    }

    fn heartbeat(&self, req: Request<pb::SendNodeHeartbeatRequest>) -> Result<pb::SendNodeHeartbeatResponse> {
        let node_id = self.node_of(&req, &req.get_ref().node)?;
        let success = self.link.state.ack_node_heartbeat(node_id, req.get_ref().heartbeat_interval)?;
        Ok(pb::SendNodeHeartbeatResponse { success })
    }

    /// Hands out the node's next instruction. A Sepal SuperNode may ask (with the
    /// [`sepal_wire::WAIT_HEADER`] metadata) to be held until one arrives, for `wait`;
    /// Flower's never do.
    async fn pull_messages(
        &self,
        req: Request<pb::PullMessagesRequest>,
        wait: Duration,
    ) -> Result<pb::PullMessagesResponse> {
        let node_id = self.node_of(&req, &req.get_ref().node)?;
        if !wait.is_zero() {
            // A held pull is a sign of life: the node need not heartbeat while it pulls.
            self.link.state.keep_node_online(node_id, sepal_wire::PULL_HEARTBEAT_INTERVAL)?;
        }
        if let Some(busy) = sepal_wire::busy_runs(req.metadata()).map_err(Error::InvalidArgument)? {
            self.link.node_busy_with(node_id, busy);
        }
        let mut stored = self.link.events.instructions.subscribe(node_id);
        let deadline = tokio::time::Instant::now() + wait;
        let msg = loop {
            if let Some(msg) = self.link.next_instruction(node_id)? {
                break Some(msg);
            }
            tokio::select! {
                changed = tokio::time::timeout_at(deadline, stored.changed()) => match changed {
                    Ok(Ok(())) => continue,
                    _ => break None,
                },
                _ = self.link.events.closed() => break None,
            }
        };
        let mut res = pb::PullMessagesResponse::default();
        if let Some(msg) = msg {
            tracing::debug!(node_id, message_id = msg.id(), "instruction delivered");
            if asks_inline(&req) {
                let (objects, complete) = self.link.inline_objects(&msg.tree);
                if complete {
                    // The node has every object: the delivery is its confirmation (it
                    // skips ConfirmMessageReceived), as Flower's confirm would drop them.
                    self.link.objects.delete(&msg.tree.object_id);
                }
                res.sepal_objects = objects;
            }
            res.messages_list.push(msg.message);
            res.message_object_trees.push(msg.tree);
        }
        Ok(res)
    }

    /// Stores a node's replies. As in Flower, a reply that cannot be accepted (malformed,
    /// from the wrong node, for another run, to an unknown or expired instruction, or
    /// living longer than it) is dropped with a warning and an OK answer: Flower's
    /// SuperNodes stop on any error status here, and the ServerApp learns of the missing
    /// reply as it would from Flower (an error reply once the instruction expires).
    /// Only a run that is not running is refused (PERMISSION_DENIED, as Flower does).
    fn push_messages(&self, req: Request<pb::PushMessagesRequest>) -> Result<pb::PushMessagesResponse> {
        let node_id = self.node_of(&req, &req.get_ref().node)?;
        let body = req.into_inner();
        let msgs = self.link.stored_messages(body.messages_list, body.message_object_trees)?;
        let run_id = msgs[0].metadata().run_id;
        self.link.require_running(run_id)?;
        let mut results = std::collections::HashMap::new();
        let mut objects_to_push = Vec::new();
        let mut runs_answered = Vec::new();
        for msg in msgs {
            // Accepted or not, the node is done with the message this answers.
            self.link.node_done_with(node_id, msg.metadata().run_id);
            match self.accept_reply(&msg, node_id) {
                Ok((id, missing)) => {
                    let present = |id: &str| self.link.objects.contains(id);
                    self.link.uploads.queue(msg.metadata().run_id, &id, &missing, &present);
                    results.insert(id, 0);
                    runs_answered.push(msg.metadata().run_id);
                    for id in missing {
                        if !objects_to_push.contains(&id) {
                            objects_to_push.push(id);
                        }
                    }
                }
                Err(why) => tracing::warn!(node_id, reply = msg.id(), "reply dropped: {why}"),
            }
        }
        for object in body.sepal_objects {
            // Only objects of accepted replies are expected; others are not stored. One
            // refused here is left to PushObject, which says why.
            if !objects_to_push.contains(&object.object_id) {
                continue;
            }
            match self.link.push_object(run_id, &object.object_id, object.object_content) {
                Ok(true) => objects_to_push.retain(|id| *id != object.object_id),
                Ok(false) => {}
                Err(e) => tracing::warn!(node_id, object_id = object.object_id, "inline object not stored: {e}"),
            }
        }
        runs_answered.dedup();
        for run in runs_answered {
            self.link.notify(Change::Reply(run));
        }
        Ok(pb::PushMessagesResponse {
            reconnect: Some(pb::Reconnect { reconnect: RECONNECT_AFTER }),
            results,
            objects_to_push,
        })
    }

    /// Stores one reply from node `node_id` within its run's quota; its id and the objects
    /// to push, or why it was not stored (then nothing of it is kept).
    fn accept_reply(&self, msg: &StoredMessage, node_id: u64) -> Result<(String, Vec<String>)> {
        let problems = validate_message(&msg.message, true);
        if !problems.is_empty() {
            return Err(Error::InvalidArgument(format!("malformed message: {}", problems.join(", "))));
        }
        if msg.metadata().src_node_id != node_id {
            return Err(Error::InvalidArgument(format!(
                "reply claims to come from node {} but was sent by node {node_id}",
                msg.metadata().src_node_id
            )));
        }
        let root = &msg.tree.object_id;
        let known = self.link.objects.contains(root);
        let missing = self.link.objects.preregister(msg.metadata().run_id, &msg.tree)?;
        match self.link.state.store_reply(msg.clone())? {
            Ok(id) => Ok((id, missing)),
            Err(rejected) => {
                if !known {
                    self.link.objects.delete(root);
                }
                Err(Error::FailedPrecondition(rejected.to_string()))
            }
        }
    }

    fn get_run(&self, req: Request<pb::GetRunRequest>) -> Result<pb::GetRunResponse> {
        self.node_of(&req, &req.get_ref().node)?;
        let run_id = req.get_ref().run_id;
        let Some(run) = self.link.state.run(run_id)? else {
            // Flower answers an unknown run with an empty response.
            return Ok(pb::GetRunResponse::default());
        };
        self.link.require_running(run_id)?;
        // SuperNodes get the identity of the run, not its lifecycle.
        Ok(pb::GetRunResponse {
            run: Some(pb::Run {
                run_id: run.run_id,
                fab_id: run.fab_id,
                fab_version: run.fab_version,
                override_config: run.override_config,
                fab_hash: run.fab_hash,
                ..Default::default()
            }),
        })
    }

    fn get_fab(&self, req: Request<pb::GetFabRequest>) -> Result<pb::GetFabResponse> {
        self.node_of(&req, &req.get_ref().node)?;
        self.link.require_running(req.get_ref().run_id)?;
        let hash = &req.get_ref().hash_str;
        let content = self.link.state.fab(hash)?.ok_or_else(|| Error::NotFound(format!("no FAB with hash {hash}")))?;
        Ok(pb::GetFabResponse { fab: Some(pb::Fab { hash_str: hash.clone(), content: content.to_vec() }) })
    }

    /// Stores a reply's object once its reply's turn has come (back-pressure: see
    /// [`crate::link::ReplyQueues`]); until then the call is held.
    async fn push_object(&self, req: Request<pb::PushObjectRequest>) -> Result<pb::PushObjectResponse> {
        let node_id = self.node_of(&req, &req.get_ref().node)?;
        let body = req.into_inner();
        self.link.require_running(body.run_id)?;
        // Refused at once, not after waiting for its turn (`push_object` checks again for
        // the other callers).
        self.link.check_object_size(&body.object_id, body.object_content.len())?;
        self.link.wait_for_upload_turn(node_id, body.run_id, &body.object_id).await?;
        let stored = self.link.push_object(body.run_id, &body.object_id, body.object_content)?;
        Ok(pb::PushObjectResponse { stored })
    }

    fn pull_object(&self, req: Request<pb::PullObjectRequest>) -> Result<pb::PullObjectResponse> {
        self.node_of(&req, &req.get_ref().node)?;
        self.link.require_running(req.get_ref().run_id)?;
        Ok(self.link.pull_object(&req.get_ref().object_id))
    }

    fn confirm(&self, req: Request<pb::ConfirmMessageReceivedRequest>) -> Result<pb::ConfirmMessageReceivedResponse> {
        self.node_of(&req, &req.get_ref().node)?;
        self.link.require_running(req.get_ref().run_id)?;
        self.link.objects.delete(&req.get_ref().message_object_id);
        Ok(pb::ConfirmMessageReceivedResponse {})
    }
}

#[tonic::async_trait]
impl Fleet for FleetService {
    async fn create_node(&self, req: Request<pb::CreateNodeRequest>) -> Reply<pb::CreateNodeResponse> {
        reply(FleetService::create_node(self, req))
    }
    async fn delete_node(&self, req: Request<pb::DeleteNodeRequest>) -> Reply<pb::DeleteNodeResponse> {
        reply(FleetService::delete_node(self, req))
    }
    async fn send_node_heartbeat(
        &self,
        req: Request<pb::SendNodeHeartbeatRequest>,
    ) -> Reply<pb::SendNodeHeartbeatResponse> {
        reply(self.heartbeat(req))
    }
    async fn pull_messages(&self, req: Request<pb::PullMessagesRequest>) -> Reply<pb::PullMessagesResponse> {
        let (inline, wait) = (asks_inline(&req), requested_wait(&req));
        let replied = reply(FleetService::pull_messages(self, req, wait).await);
        tell(
            !wait.is_zero(),
            sepal_wire::PULL_IS_HEARTBEAT_HEADER,
            tell(inline, sepal_wire::INLINE_OBJECTS_HEADER, replied),
        )
    }
    async fn push_messages(&self, req: Request<pb::PushMessagesRequest>) -> Reply<pb::PushMessagesResponse> {
        reply(FleetService::push_messages(self, req))
    }
    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Reply<pb::GetRunResponse> {
        reply(FleetService::get_run(self, req))
    }
    async fn get_fab(&self, req: Request<pb::GetFabRequest>) -> Reply<pb::GetFabResponse> {
        reply(FleetService::get_fab(self, req))
    }
    async fn push_object(&self, req: Request<pb::PushObjectRequest>) -> Reply<pb::PushObjectResponse> {
        reply(FleetService::push_object(self, req).await)
    }
    async fn pull_object(&self, req: Request<pb::PullObjectRequest>) -> Reply<pb::PullObjectResponse> {
        reply(FleetService::pull_object(self, req))
    }
    async fn confirm_message_received(
        &self,
        req: Request<pb::ConfirmMessageReceivedRequest>,
    ) -> Reply<pb::ConfirmMessageReceivedResponse> {
        reply(self.confirm(req))
    }
}
