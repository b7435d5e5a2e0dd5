//! Wasm ServerApps, run in-process under subprocess isolation: the sandboxed app drives
//! the federation through a grid wired straight to the link state (no network hop).
//!
//! Everything the app sends is untrusted: the host sets the routing of its messages
//! (run, source, message id, creation time), refuses malformed ones with an error the app
//! sees, and waits on events (message and object arrivals), never on a timer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use sepal_core::records::Message;
use sepal_core::routing::prepare_instruction;
use sepal_proto::pb;
use sepal_sandbox::{decode_reply, Grants, GridError, GridFuture, GridHost, Limits, LogSink, LogSource, Sandbox};

use crate::link::{finished, Link};
use crate::state::{status, RunState, StoredMessage};

/// The heartbeat interval declared for an in-process ServerApp (Flower's default).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// How often a waiting `send-and-receive` re-checks time-based outcomes (a node whose
/// heartbeats lapsed, an expired message), which no event announces.
const LIVENESS_RECHECK: Duration = Duration::from_secs(1);

/// How long a pulled reply may take to finish uploading its objects.
const OBJECT_WAIT: Duration = Duration::from_secs(300);

/// What the operator allows Wasm ServerApps.
#[derive(Debug, Clone, Default)]
pub struct WasmSettings {
    /// Memory, time and output limits per run.
    pub limits: Limits,
    /// Capabilities beyond nothing (e.g. a metrics endpoint).
    pub grants: Grants,
}

/// The grid a Wasm ServerApp sees: the link state of its own run.
struct LinkGrid {
    link: Arc<Link>,
    run_id: u64,
}

fn app_error(message: impl Into<String>) -> GridError {
    GridError::App { code: 0, message: message.into() }
}

impl LinkGrid {
    /// The app may only act while its run is running; otherwise the run is over.
    fn check(&self) -> Result<(), GridError> {
        self.link.require_running(self.run_id).map_err(|e| GridError::Abort(e.to_string()))
    }

    /// Stores one instruction from the app; returns its id, or "" if it was not stored.
    fn push_one(&self, bytes: &[u8]) -> Result<String, GridError> {
        let msg = prepare_instruction(bytes, self.run_id).map_err(|e| app_error(e.to_string()))?;
        let (tree, id) = self.link.objects.insert_message(self.run_id, &msg);
        let mut wire = msg.to_wire_pb();
        if let Some(meta) = wire.metadata.as_mut() {
            meta.message_id = id;
        }
        match self.link.state.store_instruction(StoredMessage { message: wire, tree }) {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(rejected)) => {
                tracing::warn!(run_id = self.run_id, "instruction not stored: {rejected}");
                Ok(String::new())
            }
            Err(e) => Err(GridError::Abort(e.to_string())),
        }
    }

    async fn push(&self, messages: Vec<Vec<u8>>) -> Result<Vec<String>, GridError> {
        self.check()?;
        let ids = messages.iter().map(|m| self.push_one(m)).collect::<Result<Vec<_>, _>>()?;
        self.link.message_stored();
        Ok(ids)
    }

    /// The replies that arrived for `ids` (whole messages, content inline).
    async fn pull(&self, ids: &[String]) -> Result<Vec<(String, Vec<u8>)>, GridError> {
        self.check()?;
        let lookups = self.link.state.take_replies(ids).map_err(|e| GridError::Abort(e.to_string()))?;
        let mut out = Vec::new();
        for (id, lookup) in ids.iter().zip(lookups) {
            if let Some((wire, tree)) = self.link.reply_to_wire(self.run_id, lookup) {
                let message = self.assemble(&wire, &tree).await?;
                out.push((id.clone(), pb::Message::from(&message).encode_to_vec()));
            }
        }
        Ok(out)
    }

    /// Waits until a reply's objects are all uploaded, then decodes it and drops its
    /// objects (as a ServerApp's ConfirmMessageReceived would).
    async fn assemble(&self, wire: &pb::Message, tree: &pb::ObjectTree) -> Result<Message, GridError> {
        let mut arrivals = self.link.events.object_stored.subscribe();
        let deadline = tokio::time::Instant::now() + OBJECT_WAIT;
        while !self.link.objects.missing(tree).is_empty() {
            if tokio::time::timeout_at(deadline, arrivals.changed()).await.is_err() {
                return Err(app_error(format!("reply {} never finished uploading", tree.object_id)));
            }
        }
        let message = self.link.objects.message(wire, tree).map_err(|e| app_error(format!("reply unreadable: {e}")))?;
        self.link.objects.delete(&tree.object_id);
        Ok(message)
    }

    async fn send_and_receive(&self, messages: Vec<Vec<u8>>, timeout: Duration) -> Result<Vec<Vec<u8>>, GridError> {
        let mut stored = self.link.events.message_stored.subscribe();
        let mut nodes = self.link.events.node_changed.subscribe();
        let mut pending: Vec<String> = self.push(messages).await?.into_iter().filter(|id| !id.is_empty()).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut replies = Vec::new();
        loop {
            for (id, reply) in self.pull(&pending).await? {
                pending.retain(|p| *p != id);
                replies.push(reply);
            }
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(replies);
            }
            // A reply arrives, a node leaves, or (time-based) a node's liveness or a
            // message's TTL lapses: the last has no event, so re-check on a short tick.
            tokio::select! {
                _ = stored.changed() => {}
                _ = nodes.changed() => {}
                _ = tokio::time::sleep(LIVENESS_RECHECK) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

impl GridHost for LinkGrid {
    fn node_ids(&mut self) -> GridFuture<'_, Vec<u64>> {
        Box::pin(async move {
            self.check()?;
            self.link.state.online_nodes().map_err(|e| GridError::Abort(e.to_string()))
        })
    }

    fn push_messages(&mut self, messages: Vec<Vec<u8>>) -> GridFuture<'_, Vec<String>> {
        Box::pin(self.push(messages))
    }

    fn pull_messages(&mut self, message_ids: Vec<String>) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move { Ok(self.pull(&message_ids).await?.into_iter().map(|(_, m)| m).collect()) })
    }

    fn send_and_receive(&mut self, messages: Vec<Vec<u8>>, timeout: Duration) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(LinkGrid::send_and_receive(self, messages, timeout))
    }
}

/// The app's output and log lines go into the run's log (what `flwr log` shows).
struct RunLog {
    link: Arc<Link>,
    run_id: u64,
}

impl LogSink for RunLog {
    fn line(&self, source: LogSource, line: &str) {
        let prefix = match source {
            LogSource::App(level) => format!("{:<8}: ", format!("{level:?}").to_uppercase()),
            LogSource::Sandbox => "SANDBOX :   ".into(),
            LogSource::Stdout | LogSource::Stderr => String::new(),
        };
        let _ = self.link.add_log(self.run_id, &format!("{prefix}{line}\n"));
    }
}

/// Runs the Wasm ServerApp of a pending run to its end and records the outcome.
pub async fn run_serverapp(link: Arc<Link>, sandbox: Sandbox, settings: Arc<WasmSettings>, run_id: u64, wasm: Bytes) {
    let starting = status::status(status::STARTING, "", "");
    if !matches!(link.update_run_status(run_id, starting), Ok(true)) {
        return; // someone else took the run
    }
    let outcome = tokio::select! {
        outcome = execute(&link, &sandbox, &settings, run_id, &wasm) => outcome,
        _ = run_finished_elsewhere(&link, run_id) => return,
        _ = heartbeat(&link, run_id) => return,
    };
    let new_status = match outcome {
        Ok(()) => finished(status::COMPLETED, ""),
        Err(details) => {
            let _ = link.add_log(run_id, &format!("ServerApp failed: {details}\n"));
            tracing::warn!(run_id, "Wasm ServerApp failed: {details}");
            finished(status::FAILED, &details)
        }
    };
    if let Err(e) = link.update_run_status(run_id, new_status) {
        tracing::error!(run_id, "cannot record the run's outcome: {e}");
    }
}

/// Keeps the run's ServerApp heartbeat fresh like an external ServerApp does, so that a
/// run whose in-process app vanished (the SuperLink stopped) fails after a restart instead
/// of staying "running". Never completes.
async fn heartbeat(link: &Link, run_id: u64) {
    loop {
        if let Err(e) = link.state.ack_app_heartbeat(run_id, HEARTBEAT_INTERVAL.as_secs_f64()) {
            tracing::warn!(run_id, "cannot record the ServerApp's heartbeat: {e}");
        }
        tokio::time::sleep(HEARTBEAT_INTERVAL / 2).await;
    }
}

/// Completes when the run is finished by someone else (a user's StopRun).
async fn run_finished_elsewhere(link: &Link, run_id: u64) {
    let mut changed = link.events.run_changed.subscribe();
    loop {
        let done = link.run_status(run_id).map(|s| RunState::parse(&s.status) == Some(RunState::Finished));
        if done.unwrap_or(true) || changed.changed().await.is_err() {
            return;
        }
    }
}

async fn execute(
    link: &Arc<Link>,
    sandbox: &Sandbox,
    settings: &WasmSettings,
    run_id: u64,
    wasm: &[u8],
) -> Result<(), String> {
    let run = link.state.run(run_id).map_err(|e| e.to_string())?.ok_or("the run vanished")?;
    let fab = link.state.fab(&run.fab_hash).map_err(|e| e.to_string())?.ok_or("the run's FAB is missing")?;
    let fab = sepal_fab::Fab::read(&fab, &sepal_fab::Limits::default()).map_err(|e| e.to_string())?;
    let mut context = link.state.serverapp_context(run_id).map_err(|e| e.to_string())?.unwrap_or_default();
    context.run_config = sepal_fab::fuse_wire_run_config(fab.manifest().run_config(), &run.override_config)
        .map_err(|e| e.to_string())?;
    let component = sandbox.load_server(wasm).map_err(|e| e.to_string())?;
    link.update_run_status(run_id, status::status(status::RUNNING, "", "")).map_err(|e| e.to_string())?;
    // Entering "running" clears the heartbeat deadline; set one at once, so the run fails
    // after a restart even if the SuperLink stops before the next periodic heartbeat.
    link.state.ack_app_heartbeat(run_id, HEARTBEAT_INTERVAL.as_secs_f64()).map_err(|e| e.to_string())?;
    tracing::info!(run_id, "Wasm ServerApp running");

    let grid = LinkGrid { link: link.clone(), run_id };
    let log = Arc::new(RunLog { link: link.clone(), run_id });
    let runner = sandbox.server_runner();
    let out = runner
        .run(&component, &context.encode_to_vec(), grid, &settings.limits, &settings.grants, log)
        .await
        .map_err(|e| e.to_string())?;
    let returned: pb::Context = decode_reply(&out).map_err(|e| e.to_string())?;
    let context = pb::Context { state: returned.state, ..context };
    link.state.set_serverapp_context(run_id, context).map_err(|e| e.to_string())
}
