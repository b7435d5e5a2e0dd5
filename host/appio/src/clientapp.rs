//! `sepal clientapp`: runs a SuperNode's Wasm ClientApps over ClientAppIo, with the call
//! sequence of Flower 1.20's `flwr-clientapp`:
//!
//! ```text
//! GetRunIdsWithPendingMessages{}      -> run ids      (skipped with --token)
//! RequestToken{run_id}                -> token ("": taken; ask again later)
//! PullClientAppInputs{token}          -> {context, run, fab}
//! PullMessage{token}                  -> the instruction and its object tree
//! PullObject{node, run, id}           for every object of the tree
//! ConfirmMessageReceived{node, run, message id}
//! (the ClientApp runs in the sandbox)
//! PushMessage{token, [reply], [tree]} -> objects to push
//! PushObject{node, run, id, bytes}    for each
//! PushClientAppOutputs{token, context}
//! ```
//!
//! The app runs through `sepal-executor`, exactly as in a SuperNode's in-process
//! isolation: whatever goes wrong becomes a Flower error reply (code 1 when the app cannot
//! be loaded, a Python FAB among them: `flwr-clientapp` runs those; code 2 when it fails on
//! the message), the reply's routing is the host's, and of the context the app returns only
//! the state is kept.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sepal_core::records::Message;
use sepal_core::routing::error_reply;
use sepal_core::{encoded_message_from_objects, message_to_objects};
use sepal_executor::log::ClientLog;
use sepal_executor::{time_to_reply, AppFailure, Executor, Instruction, RunApp, Settings, Side};
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_client::ClientAppIoClient;
use sepal_sandbox::ClientComponent;
use sepal_wire::MAX_GRPC_MESSAGE;
use tonic::transport::Channel;

use crate::error::Error;
use crate::objects::{pull_tree, push_objects, TransferError};
use crate::rpc::{channel, unary};

/// The ClientAppIo client.
type Node = ClientAppIoClient<Channel>;

/// The first pause between asks for an instruction after serving one.
const FIRST_POLL: Duration = Duration::from_millis(25);

/// How long a Sepal SuperNode may hold an ask for an instruction (`sepal-wait-ms`).
const HELD_POLL: Duration = Duration::from_secs(1);

/// How `sepal clientapp` runs ClientApps.
#[derive(Debug, Clone)]
pub struct Options {
    /// Limits (the wall time is also cut to what the instruction has left to live; default
    /// 600 s), grants (default: nothing) and the engine, as a SuperNode's.
    pub wasm: Settings,
    /// Handle one instruction, then return (`--run-once`).
    pub run_once: bool,
    /// Handle the instruction of this token only, then return (`--token`; skips asking
    /// for pending runs and for a token, as `flwr-clientapp --token` does).
    pub token: Option<String>,
    /// Longest pause between asks for an instruction that were answered at once (by a
    /// Flower SuperNode; a Sepal SuperNode holds the ask instead): the pause starts at 25 ms
    /// after an instruction and doubles while there is none. Default 250 ms (Python polls
    /// every 1 s).
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { wasm: Settings::default(), run_once: false, token: None, poll_interval: Duration::from_millis(250) }
    }
}

/// Serves the instructions the SuperNode at `address` (ClientAppIo, `host:port`) offers,
/// one at a time, until `shutdown` completes; with [`Options::token`] or
/// [`Options::run_once`], serves one and returns.
///
/// An app that fails is answered with an error reply, not an error here. Errors are
/// returned for an unusable address or sandbox, and, when serving one instruction only,
/// for why it could not be served (an invalid token, an unreachable SuperNode).
pub async fn run(address: &str, options: Options, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let executor = Executor::new(options.wasm.clone())?;
    let node = ClientAppIoClient::new(channel(address)?)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let app = ClientApp { node, executor, options, last: Mutex::new(None) };
    tokio::pin!(shutdown);
    if let Some(token) = app.options.token.clone() {
        return tokio::select! {
            result = app.serve(&token) => result,
            () = &mut shutdown => Ok(()),
        };
    }
    tracing::info!(address, "ClientApp process started; waiting for instructions");
    loop {
        let token = tokio::select! {
            () = &mut shutdown => return Ok(()),
            token = app.next_token() => token,
        };
        let result = tokio::select! {
            result = app.serve(&token) => result,
            () = &mut shutdown => return Ok(()),
        };
        if app.options.run_once {
            return result;
        }
        if let Err(e) = result {
            tracing::warn!("instruction not served: {e}");
        }
    }
}

fn protocol(what: &str) -> Error {
    Error::Protocol(what.to_owned())
}

fn objects_error(e: TransferError) -> Error {
    match e {
        TransferError::Rpc(e) => Error::Rpc(e),
        other => Error::Objects(other.to_string()),
    }
}

/// What PullClientAppInputs and PullMessage gave for a token.
struct Inputs {
    context: pb::Context,
    run: pb::Run,
    fab: pb::Fab,
    wire: pb::Message,
    tree: pb::ObjectTree,
}

impl Inputs {
    fn metadata(&self) -> pb::Metadata {
        self.wire.metadata.clone().unwrap_or_default()
    }

    fn node(&self) -> Option<pb::Node> {
        Some(pb::Node { node_id: self.context.node_id })
    }
}

struct ClientApp {
    node: Node,
    executor: Executor,
    options: Options,
    /// The last FAB's component, by FAB hash (a run's messages share it).
    last: Mutex<Option<(String, ClientComponent)>>,
}

impl ClientApp {
    /// Asks for a pending instruction and a token for it until there is one: quickly at
    /// first (instructions come in bursts: a round's train, then its evaluate), then every
    /// [`Options::poll_interval`].
    ///
    /// A Sepal SuperNode holds each ask for up to [`HELD_POLL`] until an instruction comes,
    /// so the pauses only apply when asks come back at once (Flower's SuperNode, errors).
    async fn next_token(&self) -> String {
        let mut warned = false;
        let mut pause = FIRST_POLL.min(self.options.poll_interval);
        loop {
            let asked = tokio::time::Instant::now();
            match self.try_token().await {
                Ok(Some(token)) => return token,
                Ok(None) if asked.elapsed() >= HELD_POLL / 2 => {
                    warned = false;
                    continue;
                }
                Ok(None) => warned = false,
                Err(e) if !warned => {
                    tracing::warn!("cannot ask the SuperNode for an instruction ({e}); still trying");
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.options.poll_interval);
        }
    }

    async fn try_token(&self) -> Result<Option<String>, Error> {
        let held = || {
            let mut req = tonic::Request::new(pb::GetRunIdsWithPendingMessagesRequest {});
            sepal_wire::ask_to_wait(&mut req, HELD_POLL);
            req
        };
        let pending = crate::rpc::retry("get_run_ids_with_pending_messages", || {
            let mut node = self.node.clone();
            let req = held();
            async move { node.get_run_ids_with_pending_messages(req).await }
        })
        .await?;
        let Some(&run_id) = pending.run_ids.first() else {
            return Ok(None);
        };
        let token = unary!(self.node, request_token, pb::RequestTokenRequest { run_id })?.token;
        Ok(Some(token).filter(|t| !t.is_empty()))
    }

    /// Handles the token's instruction: inputs, objects, the app, the reply, the context.
    async fn serve(&self, token: &str) -> Result<(), Error> {
        let inputs = self.inputs(token).await?;
        let ins = inputs.metadata();
        let run_id = ins.run_id;
        tracing::info!(run_id, "received {} message {}", ins.message_type, ins.message_id);
        let instruction = self.instruction(&inputs).await?;
        let (reply, context) = match self.handle(&inputs, instruction).await {
            Ok(done) => done,
            Err(failure) => {
                tracing::warn!(run_id, code = failure.code(), "ClientApp failed: {failure}");
                (error_reply(&ins, inputs.context.node_id, failure.to_error()), inputs.context.clone())
            }
        };
        self.push_reply(token, &inputs, &reply).await?;
        let req = pb::PushAppOutputsRequest { token: token.to_owned(), run_id, context: Some(context) };
        unary!(self.node, push_client_app_outputs, req)?;
        tracing::info!(run_id, "reply sent");
        Ok(())
    }

    async fn inputs(&self, token: &str) -> Result<Inputs, Error> {
        let req = pb::PullAppInputsRequest { token: token.to_owned() };
        let inputs = unary!(self.node, pull_client_app_inputs, req)?;
        let req = pb::PullAppMessagesRequest { token: token.to_owned(), ..Default::default() };
        let pulled = unary!(self.node, pull_message, req)?;
        let (Some(wire), Some(tree)) =
            (pulled.messages_list.into_iter().next(), pulled.message_object_trees.into_iter().next())
        else {
            return Err(protocol("PullMessage returned no message with its object tree"));
        };
        if wire.metadata.is_none() {
            return Err(protocol("PullMessage returned a message without metadata"));
        }
        Ok(Inputs {
            context: inputs.context.ok_or_else(|| protocol("PullClientAppInputs returned no context"))?,
            run: inputs.run.ok_or_else(|| protocol("PullClientAppInputs returned no run"))?,
            fab: inputs.fab.ok_or_else(|| protocol("PullClientAppInputs returned no FAB"))?,
            wire,
            tree,
        })
    }

    /// Pulls the instruction's objects and confirms it; the instruction, or why it is
    /// unusable (then the app is not run and the reply is an error). Fails only when the
    /// SuperNode cannot be talked to (or the token is no longer valid).
    async fn instruction(&self, inputs: &Inputs) -> Result<Result<Instruction, AppFailure>, Error> {
        let (node, run_id) = (inputs.node(), inputs.metadata().run_id);
        let pulled = pull_tree(&inputs.tree, |object_id| {
            let req = pb::PullObjectRequest { node, run_id, object_id };
            async move { unary!(self.node, pull_object, req) }
        })
        .await;
        let objects = match pulled {
            Ok(objects) => objects,
            Err(TransferError::Rpc(e)) => return Err(e.into()),
            Err(e) => return Ok(Err(AppFailure::Load(format!("the instruction's objects could not be pulled: {e}")))),
        };
        let req = pb::ConfirmMessageReceivedRequest { node, run_id, message_object_id: inputs.tree.object_id.clone() };
        unary!(self.node, confirm_message_received, req)?;
        // Encoded for the app straight from the objects: the model is copied once.
        Ok(encoded_message_from_objects(&inputs.wire, &inputs.tree, &objects)
            .map(Instruction::from)
            .map_err(|e| AppFailure::Load(format!("the instruction's objects are unusable: {e}"))))
    }

    /// Runs the app on the instruction; returns its routed reply and the new context.
    async fn handle(
        &self,
        inputs: &Inputs,
        instruction: Result<Instruction, AppFailure>,
    ) -> Result<(Message, pb::Context), AppFailure> {
        let instruction = instruction?;
        let component = self.component(&inputs.fab, &inputs.run).await?;
        let ins = inputs.metadata();
        let (context, node_id) = (&inputs.context, inputs.context.node_id);
        let time_left = time_to_reply(&ins, None);
        let log = Arc::new(ClientLog::new(ins.run_id, self.executor.settings().host_log_bytes));
        self.executor.handle_message(&component, instruction, context, node_id, time_left, log).await
    }

    /// The FAB's ClientApp component (hash verified, compiled off the async threads).
    async fn component(&self, fab: &pb::Fab, run: &pb::Run) -> Result<ClientComponent, AppFailure> {
        let expected = if run.fab_hash.is_empty() { fab.hash_str.clone() } else { run.fab_hash.clone() };
        if let Some((hash, component)) = self.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if *hash == expected {
                return Ok(component.clone());
            }
        }
        let wasm = RunApp::read(&fab.content, &expected)?.wasm(Side::Client)?;
        let component = self.executor.load_client(wasm).await?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((expected, component.clone()));
        Ok(component)
    }

    /// Pushes the reply and the objects the SuperNode asks for.
    async fn push_reply(&self, token: &str, inputs: &Inputs, reply: &Message) -> Result<(), Error> {
        let (tree, objects, id) = message_to_objects(reply);
        let mut wire = reply.to_wire_pb();
        if let Some(meta) = wire.metadata.as_mut() {
            meta.message_id = id;
        }
        let req = pb::PushAppMessagesRequest {
            token: token.to_owned(),
            messages_list: vec![wire],
            message_object_trees: vec![tree],
            ..Default::default()
        };
        let res = unary!(self.node, push_message, req)?;
        let objects: HashMap<String, Bytes> = objects.into_iter().collect();
        let (node, run_id) = (inputs.node(), reply.metadata.run_id);
        push_objects(&res.objects_to_push, &objects, |object_id, content| {
            let req = pb::PushObjectRequest { node, run_id, object_id, object_content: content };
            let client = self.node.clone();
            async move { unary!(client, push_object, req).map(|r| r.stored) }
        })
        .await
        .map_err(objects_error)
    }
}
