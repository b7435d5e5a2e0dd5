//! `sepal log`: a run's log, streamed until the run finishes or printed once (`flwr log`).
//!
//! The streaming loop is Flower's: `StreamLogs{run_id, after_timestamp}` with a 60 s
//! deadline, printing each frame's text as it arrives; when the deadline ends the call, wait
//! 0.5 s and call again from the latest timestamp seen; stop when the SuperLink ends the
//! stream (it does so once the run is finished). Unlike Flower, a lost connection
//! (UNAVAILABLE) is retried the same way for a while instead of ending the command, and a
//! stream that ends while ListRuns says the run is not finished (a SuperLink shutting down
//! ends its streams) is called again rather than taken as the end of the log.

use std::time::Duration;

use sepal_proto::pb;
use tokio::time::{timeout_at, Instant};
use tonic::{Code, Status};

use crate::exec::{AppFederationArgs, Exec};
use crate::output::out;

/// How long one StreamLogs call may last before it is replaced (Flower's `CONN_REFRESH_PERIOD`).
pub const REFRESH_PERIOD: Duration = Duration::from_secs(60);

/// The pause between two StreamLogs calls (Flower's `CONN_RECONNECT_INTERVAL`).
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// How long `--show` waits for the first frame (Flower's timeout for `flwr log --show`).
pub const SHOW_TIMEOUT: Duration = Duration::from_secs(5);

/// Failed reconnections in a row before giving up on a lost SuperLink (about 30 s at 0.5 s).
const MAX_RECONNECT_FAILURES: u32 = 60;

/// `flwr log` arguments.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The run whose log to show.
    #[arg(value_name = "RUN_ID")]
    run_id: u64,
    #[command(flatten)]
    federation: AppFederationArgs,
    /// Follow the log until the run finishes (the default).
    #[arg(long, overrides_with = "show")]
    stream: bool,
    /// Print the log so far and exit.
    #[arg(long, overrides_with = "stream")]
    show: bool,
}

impl LogArgs {
    /// Streams or prints the log.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut exec = self.federation.connect().await?;
        if self.show {
            show(&mut exec, self.run_id).await
        } else {
            follow_until_interrupted(&mut exec, self.run_id).await
        }
    }
}

/// Prints what the run has logged so far: the first frame of one StreamLogs call (the
/// SuperLink sends everything it has in it), waiting at most [`SHOW_TIMEOUT`].
pub async fn show(exec: &mut Exec, run_id: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + SHOW_TIMEOUT;
    let request = pb::StreamLogsRequest { run_id, after_timestamp: 0.0 };
    let mut stream = match timeout_at(deadline, exec.client.stream_logs(request)).await {
        Err(_) => return Ok(()),
        Ok(Err(status)) => return Err(exec.error(&status, "cannot read the log")),
        Ok(Ok(response)) => response.into_inner(),
    };
    match timeout_at(deadline, stream.message()).await {
        // Nothing logged yet (or the run finished without a log).
        Err(_) | Ok(Ok(None)) => Ok(()),
        Ok(Err(status)) if status.code() == Code::DeadlineExceeded => Ok(()),
        Ok(Err(status)) => Err(exec.error(&status, "cannot read the log")),
        Ok(Ok(Some(frame))) => {
            let mut text = frame.log_output;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            out(&text)
        }
    }
}

/// [`follow`] until it ends or the user presses Ctrl-C.
pub async fn follow_until_interrupted(exec: &mut Exec, run_id: u64) -> anyhow::Result<()> {
    tokio::select! {
        result = follow(exec, run_id) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// How one StreamLogs call ended.
enum Outcome {
    /// The SuperLink ended the stream: normally the run is finished and all its log was
    /// sent (a SuperLink shutting down may end it too).
    Ended,
    /// The refresh period ran out (or the call hit its deadline): call again.
    Refresh,
    /// The call failed.
    Failed(Status),
}

/// Prints the run's log as it grows, until the SuperLink ends the stream.
pub async fn follow(exec: &mut Exec, run_id: u64) -> anyhow::Result<()> {
    let mut after = 0.0_f64;
    let mut failures = 0_u32;
    loop {
        let outcome = match stream_once(exec, run_id, &mut after).await? {
            Outcome::Ended => match run_finished(exec, run_id).await {
                Ok(true) => return Ok(()),
                // Ended early (a SuperLink going down ends streams too): call again.
                Ok(false) => Outcome::Refresh,
                Err(status) => Outcome::Failed(status),
            },
            outcome => outcome,
        };
        match outcome {
            Outcome::Ended | Outcome::Refresh => failures = 0,
            Outcome::Failed(status) if connection_lost(&status) => {
                failures += 1;
                if failures > MAX_RECONNECT_FAILURES {
                    return Err(exec.error(&status, "lost the log stream"));
                }
                if failures == 1 {
                    eprintln!(
                        "lost the connection to the SuperLink at {} ({}); reconnecting...",
                        exec.address,
                        status.message()
                    );
                }
            }
            Outcome::Failed(status) => return Err(exec.error(&status, "cannot stream the log")),
        }
        tokio::time::sleep(RECONNECT_INTERVAL).await;
    }
}

/// One StreamLogs call from `after`, printing frames and moving `after` to the latest
/// timestamp seen, for at most [`REFRESH_PERIOD`].
async fn stream_once(exec: &mut Exec, run_id: u64, after: &mut f64) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + REFRESH_PERIOD;
    let request = pb::StreamLogsRequest { run_id, after_timestamp: *after };
    let mut stream = match timeout_at(deadline, exec.client.stream_logs(request)).await {
        Err(_) => return Ok(Outcome::Refresh),
        Ok(Err(status)) => return Ok(ended_by(status)),
        Ok(Ok(response)) => response.into_inner(),
    };
    loop {
        match timeout_at(deadline, stream.message()).await {
            Err(_) => return Ok(Outcome::Refresh),
            Ok(Ok(None)) => return Ok(Outcome::Ended),
            Ok(Err(status)) => return Ok(ended_by(status)),
            Ok(Ok(Some(frame))) => {
                out(&frame.log_output)?;
                *after = after.max(frame.latest_timestamp);
            }
        }
    }
}

/// Whether the run is finished, asked with ListRuns (the check after a stream ends).
async fn run_finished(exec: &mut Exec, run_id: u64) -> Result<bool, Status> {
    let response = exec.client.list_runs(pb::ListRunsRequest { run_id: Some(run_id) }).await?.into_inner();
    let status = response.run_dict.get(&run_id).and_then(|run| run.status.as_ref());
    // A SuperLink that does not list the run cannot be followed further: take the end as final.
    Ok(status.is_none_or(|s| s.status == "finished"))
}

fn ended_by(status: Status) -> Outcome {
    if status.code() == Code::DeadlineExceeded {
        Outcome::Refresh
    } else {
        Outcome::Failed(status)
    }
}

/// Whether a failed call means the connection went away (worth calling again), as opposed
/// to an answer from the SuperLink.
fn connection_lost(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        // A connection dropped mid-stream surfaces as an HTTP/2 error without a gRPC status.
        Code::Unknown | Code::Internal => status.message().starts_with("h2 protocol error"),
        _ => false,
    }
}
