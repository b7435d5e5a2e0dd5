//! Testing apps natively: [`LocalGrid`], an in-memory federation (not built for Wasm).
//!
//! A `LocalGrid` holds ClientApps as nodes and answers a ServerApp's grid calls by running
//! them, so a whole federated run is a plain `cargo test`:
//!
//! ```
//! use sepal_sdk::prelude::*;
//! use sepal_sdk::testing::LocalGrid;
//!
//! fn query(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
//!     let id = ctx.node_config.get_i64_or("partition-id", -1);
//!     let metrics = MetricRecord::new().with("partition-id", id.into());
//!     Ok(msg.reply(RecordDict::new().with("metrics", metrics.into())))
//! }
//!
//! fn server_main(grid: &mut dyn Grid, _ctx: &mut Context) -> Result<(), AppError> {
//!     let nodes = grid.wait_for_nodes(2, None)?;
//!     let instructions = nodes.iter().map(|&n| Message::new(RecordDict::new(), n, "query"));
//!     let replies = grid.send_and_receive(instructions.collect(), None)?;
//!     assert_eq!(replies.len(), 2);
//!     Ok(())
//! }
//!
//! let mut grid = LocalGrid::new();
//! for partition in 0..2 {
//!     grid.add_node(ClientApp::new().query(query), Config::new().with("partition-id", partition));
//! }
//! grid.run(&ServerApp::new(server_main)).unwrap();
//! ```
//!
//! Messages cross the same protobuf encoding as in a Wasm host, and each node's
//! [`Context`] (with its `state`) persists across messages, as on a SuperNode. A handler
//! that returns an [`AppError`] or panics is answered with a Flower error reply, as the
//! host does.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::client::ClientApp;
use crate::context::{Config, Context};
use crate::error::AppError;
use crate::message::{now, Message, MessageError, SUPERLINK_NODE_ID};
use crate::server::{Grid, ServerApp};

struct LocalNode {
    node_id: u64,
    app: ClientApp,
    context: Context,
    online: bool,
}

/// An in-memory [`Grid`] whose nodes are ClientApps run in-process.
pub struct LocalGrid {
    run_id: u64,
    run_config: Config,
    nodes: Vec<LocalNode>,
    /// Replies not pulled yet: (instruction id, reply).
    replies: Vec<(String, Message)>,
    next_message: u64,
    handled: usize,
}

impl Default for LocalGrid {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LocalGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalGrid")
            .field("run_id", &self.run_id)
            .field("nodes", &self.nodes.iter().map(|n| n.node_id).collect::<Vec<_>>())
            .field("pending_replies", &self.replies.len())
            .finish()
    }
}

impl LocalGrid {
    /// An empty federation for run 1.
    pub fn new() -> Self {
        LocalGrid {
            run_id: 1,
            run_config: Config::new(),
            nodes: Vec::new(),
            replies: Vec::new(),
            next_message: 1,
            handled: 0,
        }
    }

    /// Builder: the run id every message and context carries.
    pub fn with_run_id(mut self, run_id: u64) -> Self {
        self.run_id = run_id;
        for node in &mut self.nodes {
            node.context.run_id = run_id;
        }
        self
    }

    /// Builder: the run config the ServerApp and every node see.
    pub fn with_run_config(mut self, run_config: Config) -> Self {
        for node in &mut self.nodes {
            node.context.run_config = run_config.clone();
        }
        self.run_config = run_config;
        self
    }

    /// Adds a node running `app` with `node_config`; returns its node id.
    pub fn add_node(&mut self, app: ClientApp, node_config: Config) -> u64 {
        let node_id = 1000 + self.nodes.len() as u64;
        let context =
            Context::new(self.run_id, node_id).with_run_config(self.run_config.clone()).with_node_config(node_config);
        self.nodes.push(LocalNode { node_id, app, context, online: true });
        node_id
    }

    /// Marks a node offline (it drops out of [`Grid::node_ids`], and instructions to it
    /// are not accepted) or online again.
    pub fn set_online(&mut self, node_id: u64, online: bool) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.node_id == node_id) {
            node.online = online;
        }
    }

    /// A node's context as its last message left it.
    pub fn node_context(&self, node_id: u64) -> Option<&Context> {
        self.nodes.iter().find(|n| n.node_id == node_id).map(|n| &n.context)
    }

    /// How many instructions the nodes have handled.
    pub fn handled(&self) -> usize {
        self.handled
    }

    /// The context a ServerApp gets for this run.
    pub fn server_context(&self) -> Context {
        Context::new(self.run_id, SUPERLINK_NODE_ID).with_run_config(self.run_config.clone())
    }

    /// Runs `app` against this federation as a host would (its context crosses the
    /// protobuf encoding), and returns its final context.
    pub fn run(&mut self, app: &ServerApp) -> Result<Context, AppError> {
        let context = self.server_context().into_proto_bytes();
        let out = app.run_proto(self, &context)?;
        Context::from_proto_bytes(&out)
    }

    fn new_message_id(&mut self) -> String {
        let id = format!("{:064x}", self.next_message);
        self.next_message += 1;
        id
    }

    /// Accepts one instruction as a SuperLink would; returns its id, or "" if rejected.
    fn accept(&mut self, mut message: Message) -> String {
        let Some(index) = self.nodes.iter().position(|n| n.node_id == message.dst_node_id() && n.online) else {
            return String::new();
        };
        let valid = message.has_content()
            && message.ttl() > 0.0
            && !message.message_type().is_empty()
            && message.reply_to_message_id().is_empty();
        if !valid {
            return String::new();
        }
        let id = self.new_message_id();
        let m = message.metadata_mut();
        m.run_id = self.run_id;
        m.src_node_id = SUPERLINK_NODE_ID;
        m.message_id = id.clone();
        m.created_at = now();
        let reply = self.deliver(index, message);
        self.replies.push((id.clone(), reply));
        id
    }

    /// Runs the node's ClientApp on `message` through the protobuf boundary.
    fn deliver(&mut self, index: usize, message: Message) -> Message {
        self.handled += 1;
        let node = &mut self.nodes[index];
        let bytes = message.to_proto_bytes();
        let context = node.context.to_proto_bytes();
        let app = &node.app;
        let outcome = catch_unwind(AssertUnwindSafe(|| app.handle_proto(&bytes, &context)));
        let mut reply = match outcome {
            Ok(Ok((reply, context))) => {
                match (Message::from_proto_bytes(&reply), Context::from_proto_bytes(&context)) {
                    (Ok(reply), Ok(context)) => {
                        node.context = context;
                        reply
                    }
                    (Err(e), _) | (_, Err(e)) => message.error_reply(
                        MessageError::CLIENT_APP_RAISED_EXCEPTION,
                        format!("the ClientApp returned invalid bytes: {}", e.message),
                    ),
                }
            }
            Ok(Err(e)) => message.error_reply(i64::from(e.code), e.message),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned());
                message
                    .error_reply(MessageError::CLIENT_APP_RAISED_EXCEPTION, format!("the ClientApp panicked: {what}"))
            }
        };
        let id = self.new_message_id();
        reply.metadata_mut().message_id = id;
        reply
    }
}

impl Grid for LocalGrid {
    fn node_ids(&mut self) -> Result<Vec<u64>, AppError> {
        Ok(self.nodes.iter().filter(|n| n.online).map(|n| n.node_id).collect())
    }

    fn push_messages(&mut self, messages: Vec<Message>) -> Result<Vec<String>, AppError> {
        Ok(messages.into_iter().map(|m| self.accept(m)).collect())
    }

    fn pull_messages(&mut self, message_ids: &[String]) -> Result<Vec<Message>, AppError> {
        let mut out = Vec::new();
        self.replies.retain(|(id, reply)| {
            if message_ids.contains(id) {
                out.push(reply.clone());
                false
            } else {
                true
            }
        });
        Ok(out)
    }

    fn send_and_receive(
        &mut self,
        messages: Vec<Message>,
        _timeout: Option<Duration>,
    ) -> Result<Vec<Message>, AppError> {
        let ids: Vec<String> = self.push_messages(messages)?.into_iter().filter(|id| !id.is_empty()).collect();
        self.pull_messages(&ids)
    }

    fn sleep(&mut self, _duration: Duration) {}

    fn wait_for_nodes(&mut self, min_nodes: usize, _timeout: Option<Duration>) -> Result<Vec<u64>, AppError> {
        let nodes = self.node_ids()?;
        if nodes.len() < min_nodes {
            return Err(AppError::new(format!(
                "the LocalGrid has {} online nodes; the app waits for {min_nodes}",
                nodes.len()
            )));
        }
        Ok(nodes)
    }
}
