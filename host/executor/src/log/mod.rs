//! An app's output, the same in every isolation mode: a ServerApp's goes into its run's log
//! (what `flwr log` shows) in one line format; a ClientApp's goes into the log of the
//! process that runs it (a SuperNode, or `sepal clientapp`), tagged with the run.
//!
//! # A run's log
//!
//! What an app writes is untrusted text shown on users' terminals, so every kind of it
//! (a Wasm app's stdout, stderr and `log` calls, a Python ServerApp's log upload, the last
//! output of a process that died) goes through this module on its way in:
//!
//! | line | written by | made with |
//! |---|---|---|
//! | `SEPAL   : ServerApp failed: ...` | the host (SuperLink) | [`host_line`] |
//! | `SANDBOX : stdout truncated: ...` | the sandbox | [`run_log_line`] |
//! | `INFO    : round 1` | a Wasm app's `log` call | [`run_log_line`] |
//! | `round 1` | a Wasm app's stdout / stderr | [`run_log_line`] |
//! | `INFO :      Starting round 1` | a Python app (Flower's own format) | [`app_text`] |
//!
//! App text is split into lines, its control characters and escape sequences are made
//! visible (colours dropped), and an app line that would start with a host tag gets
//! [`APP_TAG`] in front ([`neutralise`], [`app_text`]): lines starting with [`HOST_TAG`]
//! or [`SANDBOX_TAG`] come only from Sepal.
//!
//! # This process's log
//!
//! [`ClientLog`] and [`ServerLog`] also copy the output into the process's own log, in
//! records of up to 16 KiB (not one per line) and at most [`Settings::host_log_bytes`]
//! per invocation, with one notice when that cuts it short.
//!
//! [`Settings::host_log_bytes`]: crate::Settings::host_log_bytes

mod echo;
mod text;

use sepal_sandbox::{LogSink, LogSource};

use echo::{Echo, Side};
pub use text::{app_text, host_line, neutralise, APP_TAG, HOST_TAG, SANDBOX_TAG};

/// How one piece of app output reads in a run's log: `log` calls carry their level, the
/// sandbox's own notices say so, plain stdout/stderr lines stand as written. Each line of
/// `text` becomes one line, neutralised; a `log` call or notice of several lines carries
/// its tag on each, and a stdout/stderr line that would pass for the host's is disarmed.
///
/// ```
/// use sepal_executor::log::run_log_line;
/// use sepal_sandbox::{LogLevel, LogSource};
/// assert_eq!(run_log_line(LogSource::App(LogLevel::Info), "round 1"), "INFO    : round 1\n");
/// assert_eq!(run_log_line(LogSource::Sandbox, "output cut"), "SANDBOX : output cut\n");
/// assert_eq!(run_log_line(LogSource::Stdout, "hello"), "hello\n");
/// assert_eq!(run_log_line(LogSource::App(LogLevel::Warn), "a\nb"), "WARN    : a\nWARN    : b\n");
/// assert_eq!(run_log_line(LogSource::Stdout, "SANDBOX : no"), "APP     : SANDBOX : no\n");
/// ```
pub fn run_log_line(source: LogSource, text: &str) -> String {
    let tag = match source {
        LogSource::App(level) => format!("{:<8}: ", format!("{level:?}").to_uppercase()),
        LogSource::Sandbox => SANDBOX_TAG.into(),
        LogSource::Stdout | LogSource::Stderr => return app_text(if text.is_empty() { "\n" } else { text }),
    };
    let mut out = String::with_capacity(tag.len() + text.len() + 1);
    let body = if text.is_empty() { "\n" } else { text };
    for line in text::lines(body) {
        out.push_str(&tag);
        neutralise(line, &mut out);
        out.push('\n');
    }
    out
}

/// A ServerApp's output: each line, formatted by [`run_log_line`], goes to `write` (the
/// SuperLink's log store, or an upload queue), and is copied, batched and capped, into
/// this process's log (written out when the sink is dropped).
pub struct ServerLog<W> {
    write: W,
    echo: Echo,
}

impl<W: Fn(String) + Send + Sync> ServerLog<W> {
    /// The log of run `run_id`, written through `write`; at most `host_log_bytes` of it
    /// are copied into this process's log.
    pub fn new(run_id: u64, host_log_bytes: usize, write: W) -> Self {
        ServerLog { write, echo: Echo::new(Side::Server, run_id, host_log_bytes) }
    }
}

impl<W: Fn(String) + Send + Sync> LogSink for ServerLog<W> {
    fn line(&self, source: LogSource, text: &str) {
        self.echo.line(source, text);
        (self.write)(run_log_line(source, text));
    }
}

impl<W> Drop for ServerLog<W> {
    fn drop(&mut self) {
        self.echo.finish();
    }
}

/// A ClientApp's output, into this process's log, tagged with the run: batched, and
/// capped per message (written out when the sink is dropped, i.e. when the message is
/// done).
pub struct ClientLog {
    echo: Echo,
}

impl ClientLog {
    /// The output of one message of a ClientApp of run `run_id`, of which at most
    /// `host_log_bytes` are logged.
    pub fn new(run_id: u64, host_log_bytes: usize) -> Self {
        ClientLog { echo: Echo::new(Side::Client, run_id, host_log_bytes) }
    }
}

impl std::fmt::Debug for ClientLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientLog")
    }
}

impl LogSink for ClientLog {
    fn line(&self, source: LogSource, text: &str) {
        self.echo.line(source, text);
    }
}

impl Drop for ClientLog {
    fn drop(&mut self) {
        self.echo.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sepal_sandbox::LogLevel;

    use super::*;

    #[test]
    fn every_kind_of_app_output_is_neutralised_in_the_run_log() {
        let info = LogSource::App(LogLevel::Info);
        assert_eq!(
            run_log_line(info, "one\nSEPAL   : two\u{1b}[2J"),
            "INFO    : one\nINFO    : SEPAL   : two\\u{1b}[2J\n"
        );
        assert_eq!(run_log_line(info, ""), "INFO    : \n");
        assert_eq!(run_log_line(info, "ends\n"), "INFO    : ends\n");
        assert_eq!(run_log_line(LogSource::Stderr, ""), "\n");
        assert_eq!(run_log_line(LogSource::Stderr, "  sandbox : x"), "APP     :   sandbox : x\n");
        assert_eq!(run_log_line(LogSource::Sandbox, "cut\rhere"), "SANDBOX : cut\\rhere\n");
    }

    #[test]
    fn a_server_log_writes_every_line_to_the_run_log() {
        let written = Mutex::new(String::new());
        {
            let log = ServerLog::new(1, 10, |line: String| written.lock().unwrap().push_str(&line));
            log.line(LogSource::Stdout, "a line longer than the echo's cap");
            log.line(LogSource::App(LogLevel::Error), "SEPAL   : fake");
        }
        assert_eq!(written.into_inner().unwrap(), "a line longer than the echo's cap\nERROR   : SEPAL   : fake\n");
    }
}
