//! The ServerAppIo API (port 9091): what a ServerApp process calls.
//!
//! Flower 1.20 has no tokens here: a ServerApp asks for "a pending run" and names the
//! run in every later call. The API is plaintext and meant for loopback or a private
//! network.

use std::sync::Arc;
use std::time::Duration;

use sepal_executor::log::app_text;
use sepal_proto::pb;
use sepal_proto::pb::server_app_io_server::ServerAppIo;
use tonic::Request;

use crate::error::{reply, Error, Reply, Result};
use crate::link::{require_valid, Link};
use crate::state::{status, RunState, SUPERLINK_NODE_ID};

/// How long a PullMessages whose replies are not all there yet is held: well inside the 3 s
/// Flower's grid sleeps between pulls.
const REPLY_HOLD: Duration = Duration::from_millis(1500);

/// How long a PullAppInputs is held while no run is pending. Flower's `flwr-serverapp`
/// (process isolation) sleeps 3 s after an empty answer, so a run submitted then waits up to
/// 3 s; held, the call is answered as the run arrives, and the sleep comes only after 3 s
/// without runs. Bounded, so that an idle app still gets Flower's empty answer now and then.
const RUN_HOLD: Duration = Duration::from_secs(3);

/// How long a PullObject for an object still being uploaded is held.
const OBJECT_HOLD: Duration = Duration::from_secs(5);

/// How often a held pull re-checks for expired messages, which no event announces.
const EXPIRY_RECHECK: Duration = Duration::from_millis(500);

/// The ServerAppIo service.
pub struct ServerAppIoService {
    link: Arc<Link>,
}

impl ServerAppIoService {
    /// A ServerAppIo service over `link`.
    pub fn new(link: Arc<Link>) -> Self {
        Self { link }
    }

    fn get_nodes(&self, req: pb::GetNodesRequest) -> Result<pb::GetNodesResponse> {
        self.link.require_running(req.run_id)?;
        let nodes = self.link.state.online_nodes()?.into_iter().map(|node_id| pb::Node { node_id }).collect();
        Ok(pb::GetNodesResponse { nodes })
    }

    fn push_messages(&self, req: pb::PushAppMessagesRequest) -> Result<pb::PushAppMessagesResponse> {
        self.link.require_running(req.run_id)?;
        let msgs = self.link.stored_messages(req.messages_list, req.message_object_trees)?;
        require_valid(&msgs, false)?;
        if let Some(m) = msgs.iter().find(|m| m.metadata().run_id != req.run_id) {
            return Err(Error::InvalidArgument(format!(
                "message {} names run {} but the request is for run {}",
                m.id(),
                m.metadata().run_id,
                req.run_id
            )));
        }
        let (message_ids, objects_to_push) = self.link.push_instructions(req.run_id, msgs, Vec::new())?;
        Ok(pb::PushAppMessagesResponse { message_ids, objects_to_push })
    }

    /// The replies to `message_ids` that are there. While some are missing, the call is
    /// held (up to [`REPLY_HOLD`]) and answered as soon as the last one arrives: Flower's
    /// grid pulls right after pushing and then sleeps 3 s between pulls, so a held first
    /// pull gives a Python ServerApp its replies when they come, not at its next poll. The
    /// answer is one Flower would give, only later.
    async fn pull_messages(&self, req: pb::PullAppMessagesRequest) -> Result<pb::PullAppMessagesResponse> {
        let deadline = tokio::time::Instant::now() + REPLY_HOLD;
        let mut stored = self.link.events.replies.subscribe(req.run_id);
        let mut nodes = self.link.events.node_changed.subscribe();
        let mut wanted = req.message_ids;
        let mut res = pb::PullAppMessagesResponse::default();
        loop {
            self.link.require_running(req.run_id)?;
            for lookup in self.link.state.take_replies(&wanted)? {
                if let Some((message, tree)) = self.link.reply_to_wire(req.run_id, lookup) {
                    let answered = message.metadata.as_ref().map(|m| m.reply_to_message_id.clone());
                    wanted.retain(|id| Some(id) != answered.as_ref());
                    res.messages_list.push(message);
                    res.message_object_trees.push(tree);
                }
            }
            if wanted.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(self.oldest_first(req.run_id, res));
            }
            // A reply arrives, a node leaves, or (no event) a message expires.
            tokio::select! {
                _ = stored.changed() => {}
                _ = nodes.changed() => {}
                _ = tokio::time::sleep(EXPIRY_RECHECK) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.link.events.closed() => return Ok(self.oldest_first(req.run_id, res)),
            }
        }
    }

    /// The replies in the order they arrived: a ServerApp taking them in the order given
    /// takes first the one whose upload goes first (see [`crate::link::ReplyQueues`]).
    fn oldest_first(&self, run_id: u64, res: pb::PullAppMessagesResponse) -> pb::PullAppMessagesResponse {
        let mut pairs: Vec<_> = res.messages_list.into_iter().zip(res.message_object_trees).collect();
        pairs.sort_by_cached_key(|(_, tree)| self.link.uploads.position(run_id, &tree.object_id));
        let (messages_list, message_object_trees) = pairs.into_iter().unzip();
        pb::PullAppMessagesResponse { messages_list, message_object_trees }
    }

    /// The run; an empty response for an unknown run, as Flower answers.
    fn get_run(&self, req: pb::GetRunRequest) -> Result<pb::GetRunResponse> {
        Ok(pb::GetRunResponse { run: self.link.state.run(req.run_id)? })
    }

    fn get_fab(&self, req: pb::GetFabRequest) -> Result<pb::GetFabResponse> {
        let content = self
            .link
            .state
            .fab(&req.hash_str)?
            .ok_or_else(|| Error::NotFound(format!("no FAB with hash {}", req.hash_str)))?;
        Ok(pb::GetFabResponse { fab: Some(pb::Fab { hash_str: req.hash_str, content: content.to_vec() }) })
    }

    /// The oldest pending run's inputs; while there is none (or it may not start yet), the
    /// call is held (up to [`RUN_HOLD`]) and answered as soon as a run can be handed out.
    /// The answer is one Flower would give, only later.
    async fn pull_app_inputs(&self) -> Result<pb::PullAppInputsResponse> {
        let deadline = tokio::time::Instant::now() + RUN_HOLD;
        let mut submitted = self.link.events.runs_submitted.subscribe();
        // A run that waits for a slot (--max-concurrent-runs) may start when another ends.
        let mut changed = self.link.events.run_changed.subscribe();
        loop {
            if let Some(inputs) = self.claim_app_inputs()? {
                return Ok(inputs);
            }
            tokio::select! {
                _ = submitted.changed() => {}
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(pb::PullAppInputsResponse::default()),
                _ = self.link.events.closed() => return Ok(pb::PullAppInputsResponse::default()),
            }
        }
    }

    /// Claims the oldest pending run and gathers its inputs; `None` if no run is pending.
    fn claim_app_inputs(&self) -> Result<Option<pb::PullAppInputsResponse>> {
        let state = &self.link.state;
        let Some(run_id) = self.link.claim_pending_run()? else {
            return Ok(None);
        };
        let run = state.run(run_id)?.ok_or(Error::RunNotFound(run_id))?;
        let fab = state.fab(&run.fab_hash)?;
        let context = state.serverapp_context(run_id)?;
        let (Some(fab), Some(context)) = (fab, context) else {
            let details = format!("run {run_id} has no FAB or context stored");
            self.link.update_run_status(run_id, crate::link::finished(status::FAILED, &details))?;
            return Err(Error::FailedPrecondition(details));
        };
        tracing::info!(run_id, "run handed to a ServerApp");
        Ok(Some(pb::PullAppInputsResponse {
            context: Some(context),
            fab: Some(pb::Fab { hash_str: run.fab_hash.clone(), content: fab.to_vec() }),
            run: Some(run),
        }))
    }

    fn push_app_outputs(&self, req: pb::PushAppOutputsRequest) -> Result<pb::PushAppOutputsResponse> {
        self.link.require_running(req.run_id)?;
        let context = req.context.ok_or_else(|| Error::InvalidArgument("PushAppOutputs without a context".into()))?;
        self.link.state.set_serverapp_context(req.run_id, context)?;
        Ok(pb::PushAppOutputsResponse {})
    }

    fn update_run_status(&self, req: pb::UpdateRunStatusRequest) -> Result<pb::UpdateRunStatusResponse> {
        let current = self.link.run_status(req.run_id)?;
        if RunState::parse(&current.status) == Some(RunState::Finished) {
            return Err(Error::RunRefused(RunState::refusal(&current)));
        }
        let new = req.run_status.ok_or_else(|| Error::InvalidArgument("UpdateRunStatus without a status".into()))?;
        if RunState::parse(&new.status).is_none() {
            return Err(Error::InvalidArgument(format!("unknown run status {:?}", new.status)));
        }
        let shown = status::display(&new);
        if new.status == status::FINISHED && new.sub_status == status::FAILED {
            // The run's log says why, as for a ServerApp the SuperLink runs itself (before
            // the status, so that a log stream ending with the run has it).
            self.link.add_host_line(req.run_id, &format!("ServerApp failed: {}", new.details))?;
        }
        if self.link.update_run_status(req.run_id, new)? {
            tracing::info!(run_id = req.run_id, status = %shown, "run status updated");
        }
        Ok(pb::UpdateRunStatusResponse {})
    }

    fn get_run_status(&self, req: pb::GetRunStatusRequest) -> Result<pb::GetRunStatusResponse> {
        let mut run_status_dict = std::collections::HashMap::new();
        for run_id in req.run_ids {
            if let Some(run) = self.link.state.run(run_id)? {
                run_status_dict.insert(run_id, run.status.unwrap_or_default());
            }
        }
        Ok(pb::GetRunStatusResponse { run_status_dict })
    }

    fn push_logs(&self, req: pb::PushLogsRequest) -> Result<pb::PushLogsResponse> {
        // Whatever a ServerApp process uploads is app text (ServerAppIo does not tell
        // Sepal's `sepal serverapp` from anyone else): stored neutralised, never as the
        // host's lines. A line cut between two uploads is ended at the first.
        let text: String = req.logs.concat();
        self.link.add_log(req.run_id, &app_text(&text))?;
        Ok(pb::PushLogsResponse {})
    }

    fn heartbeat(&self, req: pb::SendAppHeartbeatRequest) -> Result<pb::SendAppHeartbeatResponse> {
        let success = self.link.state.ack_app_heartbeat(req.run_id, req.heartbeat_interval)?;
        Ok(pb::SendAppHeartbeatResponse { success })
    }

    fn require_superlink_node(node: &Option<pb::Node>) -> Result<()> {
        if node.as_ref().map_or(0, |n| n.node_id) != SUPERLINK_NODE_ID {
            return Err(Error::FailedPrecondition("Unexpected node ID.".into()));
        }
        Ok(())
    }

    fn push_object(&self, req: pb::PushObjectRequest) -> Result<pb::PushObjectResponse> {
        self.link.require_running(req.run_id)?;
        Self::require_superlink_node(&req.node)?;
        let stored = self.link.push_object(req.run_id, &req.object_id, req.object_content)?;
        Ok(pb::PushObjectResponse { stored })
    }

    /// An object. One still being uploaded is asked for (its reply may then upload out of
    /// turn, see [`crate::link::ReplyQueues`]) and the call is held until it arrives, up to
    /// [`OBJECT_HOLD`]: Flower's grid sleeps 1 s, doubling up to 10 s, after each "not
    /// available", and a held answer spares it those sleeps.
    async fn pull_object(&self, req: pb::PullObjectRequest) -> Result<pb::PullObjectResponse> {
        self.link.require_running(req.run_id)?;
        Self::require_superlink_node(&req.node)?;
        let deadline = tokio::time::Instant::now() + OBJECT_HOLD;
        let mut stored = self.link.events.object_stored.subscribe();
        loop {
            let res = self.link.pull_object(&req.object_id);
            if res.object_available || !res.object_found || tokio::time::Instant::now() >= deadline {
                return Ok(res);
            }
            self.link.uploads.ask(req.run_id, &req.object_id);
            tokio::select! {
                _ = stored.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.link.events.closed() => return Ok(res),
            }
        }
    }

    fn confirm(&self, req: pb::ConfirmMessageReceivedRequest) -> Result<pb::ConfirmMessageReceivedResponse> {
        self.link.require_running(req.run_id)?;
        self.link.objects.delete(&req.message_object_id);
        Ok(pb::ConfirmMessageReceivedResponse {})
    }
}

#[tonic::async_trait]
impl ServerAppIo for ServerAppIoService {
    async fn get_nodes(&self, req: Request<pb::GetNodesRequest>) -> Reply<pb::GetNodesResponse> {
        reply(ServerAppIoService::get_nodes(self, req.into_inner()))
    }
    async fn push_messages(&self, req: Request<pb::PushAppMessagesRequest>) -> Reply<pb::PushAppMessagesResponse> {
        reply(ServerAppIoService::push_messages(self, req.into_inner()))
    }
    async fn pull_messages(&self, req: Request<pb::PullAppMessagesRequest>) -> Reply<pb::PullAppMessagesResponse> {
        reply(ServerAppIoService::pull_messages(self, req.into_inner()).await)
    }
    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Reply<pb::GetRunResponse> {
        reply(ServerAppIoService::get_run(self, req.into_inner()))
    }
    async fn get_fab(&self, req: Request<pb::GetFabRequest>) -> Reply<pb::GetFabResponse> {
        reply(ServerAppIoService::get_fab(self, req.into_inner()))
    }
    async fn pull_app_inputs(&self, _req: Request<pb::PullAppInputsRequest>) -> Reply<pb::PullAppInputsResponse> {
        reply(ServerAppIoService::pull_app_inputs(self).await)
    }
    async fn push_app_outputs(&self, req: Request<pb::PushAppOutputsRequest>) -> Reply<pb::PushAppOutputsResponse> {
        reply(ServerAppIoService::push_app_outputs(self, req.into_inner()))
    }
    async fn update_run_status(&self, req: Request<pb::UpdateRunStatusRequest>) -> Reply<pb::UpdateRunStatusResponse> {
        reply(ServerAppIoService::update_run_status(self, req.into_inner()))
    }
    async fn get_run_status(&self, req: Request<pb::GetRunStatusRequest>) -> Reply<pb::GetRunStatusResponse> {
        reply(ServerAppIoService::get_run_status(self, req.into_inner()))
    }
    async fn push_logs(&self, req: Request<pb::PushLogsRequest>) -> Reply<pb::PushLogsResponse> {
        reply(ServerAppIoService::push_logs(self, req.into_inner()))
    }
    async fn send_app_heartbeat(
        &self,
        req: Request<pb::SendAppHeartbeatRequest>,
    ) -> Reply<pb::SendAppHeartbeatResponse> {
        reply(self.heartbeat(req.into_inner()))
    }
    async fn push_object(&self, req: Request<pb::PushObjectRequest>) -> Reply<pb::PushObjectResponse> {
        reply(ServerAppIoService::push_object(self, req.into_inner()))
    }
    async fn pull_object(&self, req: Request<pb::PullObjectRequest>) -> Reply<pb::PullObjectResponse> {
        reply(ServerAppIoService::pull_object(self, req.into_inner()).await)
    }
    async fn confirm_message_received(
        &self,
        req: Request<pb::ConfirmMessageReceivedRequest>,
    ) -> Reply<pb::ConfirmMessageReceivedResponse> {
        reply(self.confirm(req.into_inner()))
    }
}
