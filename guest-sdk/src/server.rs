//! [`ServerApp`] and the [`Grid`] it drives.

use std::fmt;
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::error::AppError;
use crate::message::Message;

/// The ServerApp's view of the federation (Flower's `Grid`).
///
/// In a Wasm component the grid is the host's `sepal:app/grid` import; in tests it is
/// [`testing::LocalGrid`](crate::testing::LocalGrid) (native builds only), or any type of
/// your own.
///
/// Instructions are built with [`Message::new`]; the grid fills in the run id, the source
/// node and the message id when it accepts them.
pub trait Grid {
    /// Ids of the nodes that are online now.
    fn node_ids(&mut self) -> Result<Vec<u64>, AppError>;

    /// Sends instructions; returns their message ids in order (an empty id marks a message
    /// that was not accepted).
    fn push_messages(&mut self, messages: Vec<Message>) -> Result<Vec<String>, AppError>;

    /// The replies that have arrived for the given instruction ids (an id without a reply
    /// yet is simply absent). A reply is returned once.
    fn pull_messages(&mut self, message_ids: &[String]) -> Result<Vec<Message>, AppError>;

    /// Sends instructions and waits until every one is answered or `timeout` passes
    /// (`None`: no limit of the app's own; the host's run deadline still applies).
    /// Returns the replies that arrived, error replies included.
    fn send_and_receive(&mut self, messages: Vec<Message>, timeout: Option<Duration>)
        -> Result<Vec<Message>, AppError>;

    /// Pauses between polls in [`Grid::wait_for_nodes`]; `std::thread::sleep` unless the
    /// grid overrides it (an in-memory grid has nothing to wait for).
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    /// Waits until at least `min_nodes` nodes are online, polling [`Grid::node_ids`] (about
    /// once a second), and returns their ids. Errors when `timeout` passes first.
    fn wait_for_nodes(&mut self, min_nodes: usize, timeout: Option<Duration>) -> Result<Vec<u64>, AppError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut logged = 0;
        loop {
            let nodes = self.node_ids()?;
            if nodes.len() >= min_nodes {
                return Ok(nodes);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(AppError::new(format!(
                    "only {} of the {min_nodes} required nodes connected within {:?}",
                    nodes.len(),
                    timeout.unwrap_or_default()
                )));
            }
            if start.elapsed().as_secs() >= logged {
                crate::info!(
                    "Waiting for nodes to connect: {} connected (minimum required: {min_nodes}).",
                    nodes.len()
                );
                logged = start.elapsed().as_secs() + 10;
            }
            self.sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// A ServerApp's main function: drives the federation through the grid.
pub type MainFn = Box<dyn Fn(&mut dyn Grid, &mut Context) -> Result<(), AppError>>;

/// A ServerApp (Flower's `@app.main()`): one function that runs the whole federated
/// computation of a run.
///
/// ```
/// use sepal_sdk::prelude::*;
///
/// fn server_main(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
///     let rounds = ctx.run_config.get_i64_or("num-server-rounds", 3);
///     let nodes = grid.node_ids()?;
///     sepal_sdk::info!("{} rounds on {} nodes", rounds, nodes.len());
///     Ok(())
/// }
///
/// let app = ServerApp::new(server_main);
/// # let _ = app;
/// ```
///
/// In the app's crate, `sepal_sdk::export_server_app!(...)` makes it the component's
/// export.
pub struct ServerApp {
    main: MainFn,
}

impl fmt::Debug for ServerApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerApp").finish_non_exhaustive()
    }
}

impl ServerApp {
    /// A ServerApp running `main`.
    pub fn new<F>(main: F) -> Self
    where
        F: Fn(&mut dyn Grid, &mut Context) -> Result<(), AppError> + 'static,
    {
        ServerApp { main: Box::new(main) }
    }

    /// Runs the app; `context` holds the run config and receives the final state.
    pub fn run(&self, grid: &mut dyn Grid, context: &mut Context) -> Result<(), AppError> {
        (self.main)(grid, context)
    }

    /// What the component's `run` export does: decodes a `flwr.proto.Context`, runs the
    /// app, and encodes the final context.
    pub fn run_proto(&self, grid: &mut dyn Grid, context: &[u8]) -> Result<Vec<u8>, AppError> {
        let mut context =
            Context::from_proto_bytes(context).map_err(|e| AppError::new(format!("invalid context: {}", e.message)))?;
        self.run(grid, &mut context)?;
        Ok(context.into_proto_bytes())
    }
}
