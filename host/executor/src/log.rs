//! An app's output, the same in every isolation mode: a ServerApp's goes into its run's log
//! (what `flwr log` shows) in one line format; a ClientApp's goes into the log of the
//! process that runs it (a SuperNode, or `sepal clientapp`), tagged with the run.

use sepal_sandbox::{LogSink, LogSource};

/// How one line of app output reads in a run's log: `log` calls carry their level, the
/// sandbox's own notices say so, plain stdout/stderr lines stand as written.
///
/// ```
/// use sepal_executor::log::run_log_line;
/// use sepal_sandbox::{LogLevel, LogSource};
/// assert_eq!(run_log_line(LogSource::App(LogLevel::Info), "round 1"), "INFO    : round 1\n");
/// assert_eq!(run_log_line(LogSource::Sandbox, "output cut"), "SANDBOX : output cut\n");
/// assert_eq!(run_log_line(LogSource::Stdout, "hello"), "hello\n");
/// ```
pub fn run_log_line(source: LogSource, text: &str) -> String {
    let prefix = match source {
        LogSource::App(level) => format!("{:<8}: ", format!("{level:?}").to_uppercase()),
        LogSource::Sandbox => "SANDBOX : ".into(),
        LogSource::Stdout | LogSource::Stderr => String::new(),
    };
    format!("{prefix}{text}\n")
}

/// A ServerApp's output: each line, formatted by [`run_log_line`], goes to `write` (the
/// SuperLink's log store, or an upload queue), and is echoed to this process's log.
pub struct ServerLog<W> {
    run_id: u64,
    write: W,
}

impl<W: Fn(String) + Send + Sync> ServerLog<W> {
    /// The log of run `run_id`, written through `write`.
    pub fn new(run_id: u64, write: W) -> Self {
        ServerLog { run_id, write }
    }
}

impl<W: Fn(String) + Send + Sync> LogSink for ServerLog<W> {
    fn line(&self, source: LogSource, text: &str) {
        tracing::info!(target: "serverapp", run_id = self.run_id, %source, "{text}");
        (self.write)(run_log_line(source, text));
    }
}

/// A ClientApp's output, into this process's log, tagged with the run.
#[derive(Debug, Clone, Copy)]
pub struct ClientLog {
    run_id: u64,
}

impl ClientLog {
    /// The output of a ClientApp of run `run_id`.
    pub fn new(run_id: u64) -> Self {
        ClientLog { run_id }
    }
}

impl LogSink for ClientLog {
    fn line(&self, source: LogSource, text: &str) {
        tracing::info!(target: "clientapp", run_id = self.run_id, %source, "{text}");
    }
}
