//! The ClientAppIo API (port 9094): what a ClientApp process (`flwr-clientapp`) calls.
//!
//! The app asks which runs have a waiting instruction, takes a token for one, pulls
//! its inputs and the instruction's objects, and pushes the reply, its objects and the
//! updated context. Plaintext, meant for loopback.

use std::sync::Arc;
use std::time::Duration;

use sepal_core::error::ObjectError;
use sepal_core::store::ObjectStore;
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_server::ClientAppIo;
use tonic::{Code, Request, Response, Status};

use crate::node::{JobError, NodeState};

/// The longest a held `GetRunIdsWithPendingMessages` waits, whatever a Sepal caller asks
/// (Sepal's `sepal clientapp` asks 1 s).
const MAX_WAIT: Duration = Duration::from_secs(2);

/// How long a `GetRunIdsWithPendingMessages` from Flower's `flwr-clientapp` (process
/// isolation; it asks for no wait) is held while nothing is pending. After an empty answer
/// it sleeps 1 s, so an instruction arriving then waits up to 1 s; held, the call is
/// answered as the instruction arrives, and the sleep comes only after 3 s without work.
/// Bounded, so that an idle app still gets Flower's empty answer now and then.
const FLOWER_POLL_HOLD: Duration = Duration::from_secs(3);

/// How long a ClientApp process started ahead of need (a spare) waits in one
/// PullClientAppInputs for its instruction; then it is told to ask again (UNAVAILABLE,
/// which `flwr-clientapp` retries).
const SPARE_WAIT: Duration = Duration::from_secs(3600);

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

/// Why a ClientAppIo request was refused.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// About the instruction being served (token, reply).
    #[error(transparent)]
    Job(#[from] JobError),
    /// A pushed object is unusable (Flower: FAILED_PRECONDITION).
    #[error(transparent)]
    BadObject(ObjectError),
    /// A reply's object tree is unusable.
    #[error(transparent)]
    BadTree(ObjectError),
    /// The request is incomplete.
    #[error("{0}")]
    Incomplete(&'static str),
    /// The run is not known here.
    #[error("run {0} not found")]
    UnknownRun(u64),
    /// The reply's objects have not all been pushed.
    #[error("reply objects not pushed yet: {0:?}")]
    ObjectsMissing(Vec<String>),
}

/// The one place where ClientAppIo refusals become statuses (and are logged).
impl From<Refusal> for Status {
    fn from(e: Refusal) -> Self {
        let code = match &e {
            Refusal::Job(JobError::InvalidToken) => Code::PermissionDenied,
            Refusal::Job(JobError::NotYet) => Code::Unavailable,
            Refusal::Job(JobError::NoMessage | JobError::NoReply) | Refusal::ObjectsMissing(_) => {
                Code::FailedPrecondition
            }
            Refusal::Job(JobError::BadReply(_)) | Refusal::Incomplete(_) | Refusal::BadTree(_) => Code::InvalidArgument,
            Refusal::BadObject(_) => Code::FailedPrecondition,
            Refusal::UnknownRun(_) => Code::NotFound,
        };
        tracing::warn!(?code, "ClientAppIo request refused: {e}");
        Status::new(code, e.to_string())
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, Refusal>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl ClientAppIo for ClientAppIoService {
    /// Held while nothing is pending: for up to the [`sepal_wire::WAIT_HEADER`]
    /// milliseconds a Sepal caller asks (at most [`MAX_WAIT`]), and for
    /// [`FLOWER_POLL_HOLD`] when the caller (Flower's `flwr-clientapp`) asks nothing.
    async fn get_run_ids_with_pending_messages(
        &self,
        req: Request<pb::GetRunIdsWithPendingMessagesRequest>,
    ) -> Reply<pb::GetRunIdsWithPendingMessagesResponse> {
        let wait = if req.metadata().contains_key(sepal_wire::WAIT_HEADER) {
            sepal_wire::requested_wait(req.metadata(), MAX_WAIT)
        } else {
            FLOWER_POLL_HOLD
        };
        let run_ids = self.state.runs_with_pending_messages_within(wait).await;
        Ok(Response::new(pb::GetRunIdsWithPendingMessagesResponse { run_ids }))
    }

    async fn request_token(&self, req: Request<pb::RequestTokenRequest>) -> Reply<pb::RequestTokenResponse> {
        let token = self.state.request_token(req.get_ref().run_id).unwrap_or_default();
        Ok(Response::new(pb::RequestTokenResponse { token }))
    }

    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Reply<pb::GetRunResponse> {
        let run_id = req.get_ref().run_id;
        reply(
            self.state
                .run(run_id)
                .map(|entry| pb::GetRunResponse { run: Some(entry.run) })
                .ok_or(Refusal::UnknownRun(run_id)),
        )
    }

    async fn pull_client_app_inputs(&self, req: Request<pb::PullAppInputsRequest>) -> Reply<pb::PullAppInputsResponse> {
        let entry = self.state.inputs_when_bound(&req.get_ref().token, SPARE_WAIT).await.map_err(Refusal::from)?;
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
        reply((|| {
            let context = req.context.ok_or(Refusal::Incomplete("PushClientAppOutputs without a context"))?;
            if let Some(tree) = self.state.reply_tree(&req.token)? {
                let missing = self.objects.missing(&tree);
                if !missing.is_empty() {
                    return Err(Refusal::ObjectsMissing(missing));
                }
            }
            self.state.complete(&req.token, context)?;
            Ok(pb::PushAppOutputsResponse {})
        })())
    }

    async fn push_message(&self, req: Request<pb::PushAppMessagesRequest>) -> Reply<pb::PushAppMessagesResponse> {
        let req = req.into_inner();
        reply((|| {
            let (Some(message), Some(tree)) =
                (req.messages_list.into_iter().next(), req.message_object_trees.into_iter().next())
            else {
                return Err(Refusal::Incomplete("PushMessage needs one message and its object tree"));
            };
            let run_id = self.state.put_reply(&req.token, message, tree.clone())?;
            let objects_to_push = self.objects.preregister(run_id, &tree).map_err(Refusal::BadTree)?;
            Ok(pb::PushAppMessagesResponse { message_ids: vec![tree.object_id], objects_to_push })
        })())
    }

    async fn pull_message(&self, req: Request<pb::PullAppMessagesRequest>) -> Reply<pb::PullAppMessagesResponse> {
        reply(self.state.instruction(&req.get_ref().token).map_err(Refusal::from).map(|(message, tree)| {
            pb::PullAppMessagesResponse { messages_list: vec![message], message_object_trees: vec![tree] }
        }))
    }

    async fn push_object(&self, req: Request<pb::PushObjectRequest>) -> Reply<pb::PushObjectResponse> {
        let req = req.into_inner();
        let stored = self.objects.put(&req.object_id, req.object_content).map_err(Refusal::BadObject);
        reply(stored.map(|stored| pb::PushObjectResponse { stored }))
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
