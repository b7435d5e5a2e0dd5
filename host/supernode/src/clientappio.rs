//! The ClientAppIo API (port 9094): what a ClientApp process (`flwr-clientapp`) calls.
//!
//! The app asks which runs have a waiting instruction, takes a token for one, pulls
//! its inputs and the instruction's objects, and pushes the reply, its objects and the
//! updated context. Plaintext, meant for loopback.

use std::sync::Arc;
use std::time::Duration;

use sepal_core::store::ObjectStore;
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_server::ClientAppIo;
use tonic::{Request, Response, Status};

use crate::node::{JobError, NodeState};

/// The longest a held `GetRunIdsWithPendingMessages` waits, whatever the caller asks: short,
/// so that a SuperNode shutting down is not held up by it.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// The ClientAppIo service.
pub struct ClientAppIoService {
    state: Arc<NodeState>,
    objects: Arc<ObjectStore>,
}

impl ClientAppIoService {
    /// A service over the node's state and object store.
    pub fn new(state: Arc<NodeState>, objects: Arc<ObjectStore>) -> Self {
        Self { state, objects }
    }
}

fn job_status(e: JobError) -> Status {
    let status = match e {
        JobError::InvalidToken => Status::permission_denied(e.to_string()),
        JobError::NoMessage | JobError::NoReply => Status::failed_precondition(e.to_string()),
        JobError::BadReply(_) => Status::invalid_argument(e.to_string()),
    };
    tracing::warn!(code = ?status.code(), "ClientAppIo request refused: {}", status.message());
    status
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ClientAppIo for ClientAppIoService {
    /// Held for up to the [`sepal_proto::WAIT_HEADER`] milliseconds the caller asks (Sepal's `sepal clientapp`; at most
    /// [`MAX_WAIT`]) while nothing is pending; Flower's `flwr-clientapp` asks for no wait.
    async fn get_run_ids_with_pending_messages(
        &self,
        req: Request<pb::GetRunIdsWithPendingMessagesRequest>,
    ) -> Reply<pb::GetRunIdsWithPendingMessagesResponse> {
        let wait = sepal_proto::requested_wait(req.metadata(), MAX_WAIT);
        let run_ids = self.state.runs_with_pending_messages_within(wait).await;
        Ok(Response::new(pb::GetRunIdsWithPendingMessagesResponse { run_ids }))
    }

    async fn request_token(&self, req: Request<pb::RequestTokenRequest>) -> Reply<pb::RequestTokenResponse> {
        let token = self.state.request_token(req.get_ref().run_id).unwrap_or_default();
        Ok(Response::new(pb::RequestTokenResponse { token }))
    }

    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Reply<pb::GetRunResponse> {
        let run_id = req.get_ref().run_id;
        let entry = self.state.run(run_id).ok_or_else(|| Status::not_found(format!("run {run_id} not found")))?;
        Ok(Response::new(pb::GetRunResponse { run: Some(entry.run) }))
    }

    async fn pull_client_app_inputs(&self, req: Request<pb::PullAppInputsRequest>) -> Reply<pb::PullAppInputsResponse> {
        let entry = self.state.inputs(&req.get_ref().token).map_err(job_status)?;
        let fab = pb::Fab { hash_str: entry.run.fab_hash.clone(), content: entry.fab.to_vec() };
        Ok(Response::new(pb::PullAppInputsResponse {
            context: Some(entry.context),
            run: Some(entry.run),
            fab: Some(fab),
        }))
    }

    async fn push_client_app_outputs(
        &self,
        req: Request<pb::PushAppOutputsRequest>,
    ) -> Reply<pb::PushAppOutputsResponse> {
        let req = req.into_inner();
        let context = req.context.ok_or_else(|| Status::invalid_argument("PushClientAppOutputs without a context"))?;
        if let Some(tree) = self.state.reply_tree(&req.token).map_err(job_status)? {
            let missing = self.objects.missing(&tree);
            if !missing.is_empty() {
                return Err(Status::failed_precondition(format!("reply objects not pushed yet: {missing:?}")));
            }
        }
        self.state.complete(&req.token, context).map_err(job_status)?;
        Ok(Response::new(pb::PushAppOutputsResponse {}))
    }

    async fn push_message(&self, req: Request<pb::PushAppMessagesRequest>) -> Reply<pb::PushAppMessagesResponse> {
        let req = req.into_inner();
        let (Some(reply), Some(tree)) =
            (req.messages_list.into_iter().next(), req.message_object_trees.into_iter().next())
        else {
            return Err(Status::invalid_argument("PushMessage needs one message and its object tree"));
        };
        let run_id = self.state.put_reply(&req.token, reply, tree.clone()).map_err(job_status)?;
        let objects_to_push =
            self.objects.preregister(run_id, &tree).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::PushAppMessagesResponse { message_ids: vec![tree.object_id], objects_to_push }))
    }

    async fn pull_message(&self, req: Request<pb::PullAppMessagesRequest>) -> Reply<pb::PullAppMessagesResponse> {
        let (message, tree) = self.state.instruction(&req.get_ref().token).map_err(job_status)?;
        Ok(Response::new(pb::PullAppMessagesResponse {
            messages_list: vec![message],
            message_object_trees: vec![tree],
        }))
    }

    async fn push_object(&self, req: Request<pb::PushObjectRequest>) -> Reply<pb::PushObjectResponse> {
        let req = req.into_inner();
        let stored = match self.objects.put(&req.object_id, req.object_content.into()) {
            Ok(stored) => stored,
            Err(e) => return Err(Status::failed_precondition(e.to_string())),
        };
        Ok(Response::new(pb::PushObjectResponse { stored }))
    }

    async fn pull_object(&self, req: Request<pb::PullObjectRequest>) -> Reply<pb::PullObjectResponse> {
        Ok(Response::new(self.objects.get(&req.get_ref().object_id).into_pull_response()))
    }

    async fn confirm_message_received(
        &self,
        req: Request<pb::ConfirmMessageReceivedRequest>,
    ) -> Reply<pb::ConfirmMessageReceivedResponse> {
        self.objects.delete(&req.get_ref().message_object_id);
        Ok(Response::new(pb::ConfirmMessageReceivedResponse {}))
    }
}
