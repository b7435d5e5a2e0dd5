//! A run's log: the app's output and log lines, uploaded with `PushLogs` in batches (what
//! `flwr log` shows), and echoed to this process's own log.
//!
//! The SuperLink treats what arrives over ServerAppIo as app text: the sandbox's notices
//! (`SANDBOX : ...`) reach the run's log disarmed (`APP     : SANDBOX : ...`), and the
//! line saying that the run failed is the SuperLink's own, written when this process
//! reports the failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sepal_executor::log::ServerLog;
use sepal_proto::pb;
use sepal_sandbox::{LogSink, LogSource};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Link;
use crate::rpc::unary;

/// Lines waiting for upload; beyond this, lines are dropped (the sandbox's output limits
/// keep a run far below it).
const QUEUE: usize = 10_000;

/// Most lines in one PushLogs.
const MAX_BATCH: usize = 1_000;

/// How long the uploader lets lines gather before a PushLogs (Flower: >= 0.2 s apart).
const GATHER: Duration = Duration::from_millis(200);

/// Queues a run-log line for upload, counting what a full queue drops.
type Queue = Box<dyn Fn(String) + Send + Sync>;

/// The sink the sandbox writes the app's output to.
pub(crate) struct RunLog {
    run_id: u64,
    lines: ServerLog<Queue>,
    dropped: Arc<AtomicUsize>,
}

/// Starts the uploader for `run_id`; it ends once every handle to the log is dropped.
/// At most `host_log_bytes` of the output are echoed to this process's log.
pub(crate) fn start(link: Link, run_id: u64, host_log_bytes: usize) -> (Arc<RunLog>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let uploader = tokio::spawn(upload(link, run_id, rx));
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    let queue: Queue = Box::new(move |line| {
        if tx.try_send(line).is_err() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (Arc::new(RunLog { run_id, lines: ServerLog::new(run_id, host_log_bytes, queue), dropped }), uploader)
}

impl RunLog {
    /// Closes the log and waits (at most `wait`) for the last lines to be uploaded.
    pub(crate) async fn finish(self: Arc<Self>, uploader: JoinHandle<()>, wait: Duration) {
        let (run_id, dropped) = (self.run_id, self.dropped.load(Ordering::Relaxed));
        if dropped > 0 {
            tracing::warn!(run_id, "{dropped} log lines of the run were dropped (upload too slow)");
        }
        drop(self);
        if tokio::time::timeout(wait, uploader).await.is_err() {
            tracing::warn!(run_id, "the run's last log lines were not uploaded within {wait:?}");
        }
    }
}

impl LogSink for RunLog {
    fn line(&self, source: LogSource, text: &str) {
        self.lines.line(source, text);
    }
}

async fn upload(link: Link, run_id: u64, mut rx: mpsc::Receiver<String>) {
    while let Some(first) = rx.recv().await {
        if !rx.is_closed() {
            tokio::time::sleep(GATHER).await;
        }
        let mut logs = vec![first];
        while logs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(line) => logs.push(line),
                Err(_) => break,
            }
        }
        let req = pb::PushLogsRequest { node: Some(pb::Node::default()), run_id, logs };
        if let Err(e) = unary!(link, push_logs, req) {
            tracing::warn!(run_id, "cannot upload the run's log: {e}");
        }
    }
}
