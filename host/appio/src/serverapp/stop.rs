//! Noticing that a run was stopped, and the heartbeat that keeps a run alive (and notices).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sepal_proto::pb;
use tokio::sync::watch;

use super::Link;
use crate::rpc::unary;

/// The heartbeat interval declared to the SuperLink (Flower's): a run without a heartbeat
/// for twice this long is failed by the SuperLink.
const HEARTBEAT_INTERVAL: f64 = 30.0;

/// Set once a run is known to be stopped; everyone working on the run watches it.
pub(crate) struct RunStop {
    reason: watch::Sender<Option<String>>,
}

impl RunStop {
    /// A run not stopped (yet).
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(RunStop { reason: watch::Sender::new(None) })
    }

    /// Records that the run was stopped (the first reason wins).
    pub(crate) fn stop(&self, reason: String) {
        self.reason.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Why the run was stopped, if it was.
    pub(crate) fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// Completes once the run is stopped, with the reason.
    pub(crate) async fn stopped(&self) -> String {
        let mut rx = self.reason.subscribe();
        let reason = rx.wait_for(Option::is_some).await.ok().and_then(|r| r.clone());
        match reason {
            Some(reason) => reason,
            // The sender lives in `self`, so it cannot be dropped: never happens.
            None => std::future::pending().await,
        }
    }
}

/// Sends `SendAppHeartbeat{run_id, 30}` now and then every 17.5-22.5 s (Flower's
/// schedule), until the SuperLink refuses (the run is no longer running: `stop` is set)
/// or the task is aborted.
pub(crate) async fn heartbeat(link: Link, run_id: u64, stop: Arc<RunStop>) {
    loop {
        let req = pb::SendAppHeartbeatRequest { run_id, heartbeat_interval: HEARTBEAT_INTERVAL };
        match unary!(link, send_app_heartbeat, req) {
            Ok(res) if res.success => {}
            Ok(_) => {
                stop.stop("the SuperLink refused the heartbeat: the run is no longer running".into());
                return;
            }
            Err(e) if e.is_stopped() => {
                stop.stop(e.status.message().to_owned());
                return;
            }
            Err(e) => tracing::warn!(run_id, "heartbeat failed: {e}"),
        }
        let every = (HEARTBEAT_INTERVAL - 10.0) * rand::thread_rng().gen_range(0.875..1.125);
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins() {
        let stop = RunStop::new();
        assert_eq!(stop.reason(), None);
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        stop.stop("Run is finished. Stopped by user.".into());
        stop.stop("later".into());
        assert_eq!(waiter.await.unwrap(), "Run is finished. Stopped by user.");
        assert_eq!(stop.reason().as_deref(), Some("Run is finished. Stopped by user."));
    }
}
