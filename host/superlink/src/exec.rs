//! The Exec API (port 9093): what the `flwr` CLI and `sepal run/ls/log/stop` call.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sepal_proto::pb;
use sepal_proto::pb::exec_server::Exec;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::clock::now_iso;
use crate::error::{reply, Error, Reply, Result};
use crate::limits::too_large;
use crate::link::{finished, Link};
use crate::state::{status, NewRun, RunState};
use crate::users::{self, Tokens, User, UserAuth};

/// The `flwr` CLI compares against this exact text.
const RUN_ID_NOT_FOUND: &str = "Run ID not found";

/// How often a log stream re-checks a run whose status changes without an event
/// (a ServerApp that went silent is only noticed when its run is read).
const LOG_RECHECK: Duration = Duration::from_secs(1);

/// The Exec service.
pub struct ExecService {
    link: Arc<Link>,
    /// User authentication (`None`: anyone who reaches the API may use every run).
    users: Option<Arc<UserAuth>>,
}

/// Who makes a call: the user (`None` with authentication off), and the tokens to hand
/// back when theirs were renewed on the way.
struct Caller {
    user: Option<User>,
    renewed: Option<Tokens>,
}

impl ExecService {
    /// An Exec service over `link`, open to anyone who reaches it.
    pub fn new(link: Arc<Link>) -> Self {
        Self { link, users: None }
    }

    /// An Exec service over `link` that authenticates users with `users`.
    pub fn with_users(link: Arc<Link>, users: Option<Arc<UserAuth>>) -> Self {
        Self { link, users }
    }

    /// Authenticates the caller of `call` (anyone, when authentication is off).
    async fn caller(&self, call: &'static str, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(users) = &self.users else {
            return Ok(Caller { user: None, renewed: None });
        };
        match users.authenticate(metadata).await {
            Ok((user, renewed)) => Ok(Caller { user: Some(user), renewed }),
            Err(e) => {
                let e = Error::from(e);
                tracing::info!(target: "sepal::audit", user = "-", call, outcome = %e, "refused: not authenticated");
                Err(e.into())
            }
        }
    }

    /// The reply to `caller`'s `call`: logged (with authentication on), and carrying the
    /// renewed tokens, if any, as initial metadata.
    fn answer<T>(&self, caller: &Caller, call: &'static str, run_id: Option<u64>, result: Result<T>) -> Reply<T> {
        if let Some(user) = &caller.user {
            let run = run_id.map_or_else(|| "-".to_string(), |id| id.to_string());
            match &result {
                Ok(_) => {
                    tracing::info!(target: "sepal::audit", user = %user.id, call, run, outcome = "ok", "exec call")
                }
                Err(e) => {
                    tracing::info!(target: "sepal::audit", user = %user.id, call, run, outcome = %e.text(), "exec call refused")
                }
            }
        }
        let mut response = reply(result)?;
        if let Some(tokens) = &caller.renewed {
            attach_tokens(response.metadata_mut(), tokens);
        }
        Ok(response)
    }

    /// Submits a run. A FAB or run config that cannot be used is refused with the reason
    /// (see [`not_started`] for the status).
    fn start_run(&self, req: pb::StartRunRequest, user: Option<&User>) -> Result<pb::StartRunResponse> {
        let fab = req.fab.ok_or_else(|| Error::InvalidArgument("StartRun without a FAB".into()))?;
        let limits = &self.link.limits;
        if fab.content.len() > limits.max_fab_bytes {
            return Err(Error::ResourceExhausted(format!(
                "FAB is {} bytes; the limit is {} bytes",
                fab.content.len(),
                limits.max_fab_bytes
            )));
        }
        if req.override_config.len() > limits.max_run_config_entries {
            return Err(too_large(
                "the run config's entry count",
                req.override_config.len(),
                limits.max_run_config_entries,
            ));
        }
        let config_bytes: usize =
            req.override_config.iter().map(|(k, v)| k.len() + prost::Message::encoded_len(v)).sum();
        if config_bytes > limits.max_run_config_bytes {
            return Err(too_large("the run config, in bytes,", config_bytes, limits.max_run_config_bytes));
        }
        let hash = hex::encode(Sha256::digest(&fab.content));
        if !fab.hash_str.is_empty() && fab.hash_str != hash {
            return Err(Error::InvalidArgument(format!(
                "FAB hash mismatch: the request says {} but the content hashes to {hash}",
                fab.hash_str
            )));
        }
        let info = sepal_fab::Fab::read(&fab.content, &sepal_fab::ReadLimits::default())
            .map_err(|e| Error::InvalidArgument(format!("invalid FAB: {e}")))?;
        let manifest = info.manifest();
        let unknown: Vec<&String> =
            req.override_config.keys().filter(|k| !manifest.run_config().contains_key(*k)).collect();
        if !unknown.is_empty() {
            // The keys are the caller's: name a few, each cut short.
            let named: Vec<String> = unknown.iter().take(5).map(|k| sepal_fab::excerpt(k)).collect();
            let more = if unknown.len() > 5 { format!(" and {} more", unknown.len() - 5) } else { String::new() };
            return Err(Error::InvalidArgument(format!(
                "run config override keys not in the app's [tool.flwr.app.config]: [{}]{more}",
                named.join(", ")
            )));
        }
        let new = NewRun {
            fab_id: manifest.fab_id(),
            fab_version: manifest.version().to_string(),
            fab_hash: hash.clone(),
            override_config: req.override_config,
            federation_options: req.federation_options.unwrap_or_default(),
            flwr_aid: user.map(|u| u.id.clone()).unwrap_or_default(),
        };
        self.link.state.store_fab(&hash, fab.content.into())?;
        let run_id = self.link.state.create_run(new)?;
        tracing::info!(run_id, fab_id = %manifest.fab_id(), user = user.map(|u| u.id.as_str()), "run submitted");
        self.link.run_submitted();
        Ok(pb::StartRunResponse { run_id: Some(run_id) })
    }

    /// The run `run_id`, if it exists and `user` (when authentication is on) may use it.
    fn existing_run(&self, run_id: u64, user: Option<&User>) -> Result<pb::Run> {
        let run = self.link.state.run(run_id)?.ok_or_else(|| Error::NotFound(RUN_ID_NOT_FOUND.into()))?;
        if let Some(user) = user {
            user.may_use(&run)?;
        }
        Ok(run)
    }

    fn list_runs(&self, req: pb::ListRunsRequest, user: Option<&User>) -> Result<pb::ListRunsResponse> {
        let runs = match req.run_id {
            Some(run_id) => vec![self.existing_run(run_id, user)?],
            None => {
                let ids = self.link.state.run_ids()?;
                let all = ids
                    .into_iter()
                    .filter_map(|id| self.link.state.run(id).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                // A user sees their own runs; an admin, and everyone with authentication off, all.
                all.into_iter().filter(|run| user.is_none_or(|u| u.may_use(run).is_ok())).collect()
            }
        };
        let mut run_dict = HashMap::new();
        for run in runs {
            if run.status.as_ref().is_some_and(|s| s.status == status::FINISHED) {
                self.link.objects.delete_run(run.run_id);
            }
            run_dict.insert(run.run_id, run);
        }
        Ok(pb::ListRunsResponse { run_dict, now: now_iso() })
    }

    fn stop_run(&self, req: pb::StopRunRequest, user: Option<&User>) -> Result<pb::StopRunResponse> {
        let run = self.existing_run(req.run_id, user)?;
        if run.status.as_ref().is_some_and(|s| s.status == status::FINISHED) {
            return Err(Error::FailedPrecondition(format!("Run ID {} is already finished", req.run_id)));
        }
        let success = self.link.update_run_status(req.run_id, finished(status::STOPPED, ""))?;
        if success {
            let ids = self.link.state.instruction_ids_of_run(req.run_id)?;
            self.link.state.delete_messages(&ids)?;
            tracing::info!(run_id = req.run_id, user = user.map(|u| u.id.as_str()), "run stopped by user");
        }
        Ok(pb::StopRunResponse { success })
    }
}

/// Sends a run's log as it grows, ending once the run is finished.
async fn stream_logs(
    link: Arc<Link>,
    run_id: u64,
    mut after: f64,
    tx: mpsc::Sender<Result<pb::StreamLogsResponse, Status>>,
) {
    let mut changed = link.events.run_changed.subscribe();
    loop {
        let finished = match link.run_status(run_id) {
            Ok(s) => RunState::parse(&s.status) == Some(RunState::Finished),
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        match link.state.logs_after(run_id, after) {
            Ok((text, latest)) if !text.is_empty() => {
                after = after.max(latest);
                let frame = pb::StreamLogsResponse { log_output: text, latest_timestamp: latest };
                if tx.send(Ok(frame)).await.is_err() {
                    return; // the client went away
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(Error::from(e).into())).await;
                return;
            }
        }
        if finished {
            link.objects.delete_run(run_id);
            return;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(LOG_RECHECK) => {}
            _ = tx.closed() => return,
            _ = link.events.closed() => {
                // Not a clean end: clients would take that as "run finished" and stop following.
                let _ = tx.send(Err(Status::unavailable("the SuperLink is shutting down"))).await;
                return;
            }
        }
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<pb::StreamLogsResponse, Status>> + Send>>;

/// What a refused StartRun answers. Flower's `flwr run` 1.20 prints a status it does not
/// expect (INVALID_ARGUMENT, RESOURCE_EXHAUSTED) as a raw Python exception and exits 0;
/// for PERMISSION_DENIED it prints "❌ Permission denied." and the status's message. So a
/// submission Sepal will not start is PERMISSION_DENIED "Run not started: <the reason>",
/// which that CLI shows as two readable lines; failures of the SuperLink itself keep their
/// own status.
fn not_started(e: Error) -> Error {
    match e {
        Error::InvalidArgument(reason) | Error::ResourceExhausted(reason) => {
            Error::RunRefused(format!("Run not started: {reason}"))
        }
        other => other,
    }
}

/// Puts renewed tokens where the `flwr` CLI reads them: the reply's initial metadata,
/// both keys (it keeps them only when both are there).
fn attach_tokens(metadata: &mut MetadataMap, tokens: &Tokens) {
    match (MetadataValue::try_from(tokens.access.as_str()), MetadataValue::try_from(tokens.refresh.as_str())) {
        (Ok(access), Ok(refresh)) => {
            metadata.insert(users::ACCESS_TOKEN_KEY, access);
            metadata.insert(users::REFRESH_TOKEN_KEY, refresh);
        }
        _ => tracing::error!("the identity provider's renewed tokens cannot be sent as gRPC metadata (not ASCII)"),
    }
}

#[tonic::async_trait]
impl Exec for ExecService {
    async fn start_run(&self, req: Request<pb::StartRunRequest>) -> Reply<pb::StartRunResponse> {
        let caller = self.caller("StartRun", req.metadata()).await?;
        let result = ExecService::start_run(self, req.into_inner(), caller.user.as_ref()).map_err(not_started);
        let run_id = result.as_ref().ok().and_then(|r| r.run_id);
        self.answer(&caller, "StartRun", run_id, result)
    }

    async fn stop_run(&self, req: Request<pb::StopRunRequest>) -> Reply<pb::StopRunResponse> {
        let caller = self.caller("StopRun", req.metadata()).await?;
        let req = req.into_inner();
        let run_id = req.run_id;
        let result = ExecService::stop_run(self, req, caller.user.as_ref());
        self.answer(&caller, "StopRun", Some(run_id), result)
    }

    type StreamLogsStream = LogStream;

    async fn stream_logs(&self, req: Request<pb::StreamLogsRequest>) -> Reply<LogStream> {
        let caller = self.caller("StreamLogs", req.metadata()).await?;
        let req = req.into_inner();
        let checked = self.existing_run(req.run_id, caller.user.as_ref()).map(|_| ());
        self.answer(&caller, "StreamLogs", Some(req.run_id), checked)?;
        let (tx, rx) = mpsc::channel(16);
        // Flower resumes strictly after the last stamp the client saw.
        let after = if req.after_timestamp > 0.0 { req.after_timestamp } else { 0.0 };
        tokio::spawn(stream_logs(self.link.clone(), req.run_id, after, tx));
        let mut response = Response::new(Box::pin(ReceiverStream::new(rx)) as LogStream);
        if let Some(tokens) = &caller.renewed {
            attach_tokens(response.metadata_mut(), tokens);
        }
        Ok(response)
    }

    async fn list_runs(&self, req: Request<pb::ListRunsRequest>) -> Reply<pb::ListRunsResponse> {
        let caller = self.caller("ListRuns", req.metadata()).await?;
        let req = req.into_inner();
        let run_id = req.run_id;
        let result = ExecService::list_runs(self, req, caller.user.as_ref());
        self.answer(&caller, "ListRuns", run_id, result)
    }

    async fn get_login_details(&self, _req: Request<pb::GetLoginDetailsRequest>) -> Reply<pb::GetLoginDetailsResponse> {
        let Some(users) = &self.users else {
            return reply(Err(Error::Unimplemented(AUTH_OFF.into())));
        };
        reply(users.login_details().await.map_err(Error::from))
    }

    async fn get_auth_tokens(&self, req: Request<pb::GetAuthTokensRequest>) -> Reply<pb::GetAuthTokensResponse> {
        let Some(users) = &self.users else {
            return reply(Err(Error::Unimplemented(AUTH_OFF.into())));
        };
        reply(users.auth_tokens(&req.into_inner().device_code).await.map_err(Error::from))
    }
}

const AUTH_OFF: &str = "user authentication is not enabled on this SuperLink";
