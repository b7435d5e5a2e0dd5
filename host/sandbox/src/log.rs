//! The app's output: the [`LogSink`] trait the caller provides, and the truncating capture
//! of stdout, stderr and the `log` import that feeds it.
//!
//! wasmtime-wasi's stock `MemoryOutputPipe` traps the guest once it is full, so a chatty app
//! would die of its own logging. The capture here keeps the first N bytes of each stream, drops
//! the rest, and says so in the log.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines longer than this are forwarded in pieces.
const MAX_LINE: usize = 16 * 1024;
/// How much of stderr's end is kept for error reports (Rust's panic message is there).
const STDERR_TAIL: usize = 4 * 1024;
/// What the guest is told it may write at once.
const WRITE_PERMIT: usize = 64 * 1024;

/// The level of a message sent through the `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The guest's stdout, one line at a time.
    Stdout,
    /// The guest's stderr, one line at a time.
    Stderr,
    /// The guest's `log` import, one message at a time.
    App(LogLevel),
    /// The sandbox itself (for example a truncation notice).
    Sandbox,
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::Stdout => f.write_str("stdout"),
            LogSource::Stderr => f.write_str("stderr"),
            LogSource::App(LogLevel::Debug) => f.write_str("DEBUG"),
            LogSource::App(LogLevel::Info) => f.write_str("INFO"),
            LogSource::App(LogLevel::Warn) => f.write_str("WARNING"),
            LogSource::App(LogLevel::Error) => f.write_str("ERROR"),
            LogSource::Sandbox => f.write_str("sandbox"),
        }
    }
}

/// Receives an app's output as it happens, for the run's log (what `flwr log` shows).
///
/// Called from inside the running invocation, on whichever thread runs it: it must be cheap
/// and must not block (push into a buffer or a channel). Any `Fn(LogSource, &str) + Send +
/// Sync` closure is a `LogSink`.
pub trait LogSink: Send + Sync {
    /// One line (stdout/stderr, without its newline) or one `log` message.
    fn line(&self, source: LogSource, text: &str);
}

impl<F> LogSink for F
where
    F: Fn(LogSource, &str) + Send + Sync,
{
    fn line(&self, source: LogSource, text: &str) {
        self(source, text)
    }
}

/// A [`LogSink`] that keeps every line in memory (for tests and for callers that attach
/// the output to a reply afterwards).
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Mutex<Vec<(LogSource, String)>>,
}

impl LogBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        LogBuffer::default()
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<(LogSource, String)> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The lines from one source.
    pub fn lines_from(&self, source: LogSource) -> Vec<String> {
        self.lines().into_iter().filter(|(s, _)| *s == source).map(|(_, l)| l).collect()
    }

    /// Everything, one `source: text` line each.
    pub fn text(&self) -> String {
        self.lines().iter().map(|(s, l)| format!("{s}: {l}\n")).collect()
    }
}

impl LogSink for LogBuffer {
    fn line(&self, source: LogSource, text: &str) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push((source, text.to_string()));
    }
}

/// Which capped channel a write belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Stdout,
    Stderr,
}

#[derive(Debug)]
struct ChannelState {
    name: &'static str,
    cap: usize,
    kept: usize,
    dropped: u64,
    partial: Vec<u8>,
}

impl ChannelState {
    fn new(name: &'static str, cap: usize) -> Self {
        ChannelState { name, cap, kept: 0, dropped: 0, partial: Vec::new() }
    }

    /// Admits what fits under the cap; returns (admitted, newly truncated).
    fn admit<'a>(&mut self, bytes: &'a [u8]) -> (&'a [u8], bool) {
        let room = self.cap.saturating_sub(self.kept);
        let take = room.min(bytes.len());
        self.kept += take;
        let rest = (bytes.len() - take) as u64;
        let newly = rest > 0 && self.dropped == 0;
        self.dropped += rest;
        (&bytes[..take], newly)
    }
}

#[derive(Debug)]
struct CaptureState {
    stdout: ChannelState,
    stderr: ChannelState,
    app: ChannelState,
    stderr_tail: VecDeque<u8>,
    finished: bool,
}

/// The per-invocation capture of stdout, stderr and the `log` import, forwarding lines to
/// the caller's [`LogSink`]. Cloning shares the same capture.
#[derive(Clone)]
pub(crate) struct Capture {
    state: Arc<Mutex<CaptureState>>,
    sink: Arc<dyn LogSink>,
}

type Lines = Vec<(LogSource, String)>;

impl Capture {
    pub(crate) fn new(sink: Arc<dyn LogSink>, stdout_cap: usize, stderr_cap: usize, log_cap: usize) -> Self {
        Capture {
            state: Arc::new(Mutex::new(CaptureState {
                stdout: ChannelState::new("stdout", stdout_cap),
                stderr: ChannelState::new("stderr", stderr_cap),
                app: ChannelState::new("log", log_cap),
                stderr_tail: VecDeque::new(),
                finished: false,
            })),
            sink,
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut CaptureState, &mut Lines) -> R) -> R {
        let mut lines = Vec::new();
        let r = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut state, &mut lines)
        };
        for (source, text) in lines {
            self.sink.line(source, &text);
        }
        r
    }

    fn write(&self, channel: Channel, bytes: &[u8]) {
        self.with_state(|state, lines| {
            if state.finished {
                return;
            }
            if channel == Channel::Stderr {
                state.stderr_tail.extend(bytes.iter().rev().take(STDERR_TAIL).rev());
                let excess = state.stderr_tail.len().saturating_sub(STDERR_TAIL);
                state.stderr_tail.drain(..excess);
            }
            let (chan, source) = match channel {
                Channel::Stdout => (&mut state.stdout, LogSource::Stdout),
                Channel::Stderr => (&mut state.stderr, LogSource::Stderr),
            };
            let (kept, newly_truncated) = chan.admit(bytes);
            chan.partial.extend_from_slice(kept);
            while let Some(pos) = chan.partial.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = chan.partial.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push((source, String::from_utf8_lossy(&line).into_owned()));
            }
            while chan.partial.len() >= MAX_LINE {
                let piece: Vec<u8> = chan.partial.drain(..MAX_LINE).collect();
                lines.push((source, String::from_utf8_lossy(&piece).into_owned()));
            }
            if newly_truncated {
                if !chan.partial.is_empty() {
                    let piece = std::mem::take(&mut chan.partial);
                    lines.push((source, String::from_utf8_lossy(&piece).into_owned()));
                }
                lines.push((
                    LogSource::Sandbox,
                    format!("{} reached its cap of {} bytes; further output is dropped", chan.name, chan.cap),
                ));
            }
        });
    }

    /// One message from the `log` import.
    pub(crate) fn message(&self, level: LogLevel, text: &str) {
        self.with_state(|state, lines| {
            if state.finished {
                return;
            }
            let (kept, newly_truncated) = state.app.admit(text.as_bytes());
            if !kept.is_empty() {
                lines.push((LogSource::App(level), String::from_utf8_lossy(kept).into_owned()));
            }
            if newly_truncated {
                lines.push((
                    LogSource::Sandbox,
                    format!("log reached its cap of {} bytes; further messages are dropped", state.app.cap),
                ));
            }
        });
    }

    /// A notice of the sandbox's own (a limit reached), forwarded at once.
    pub(crate) fn notice(&self, text: &str) {
        self.with_state(|state, lines| {
            if !state.finished {
                lines.push((LogSource::Sandbox, text.to_string()));
            }
        });
    }

    /// Flushes unterminated lines and reports what was dropped. Later writes are ignored.
    pub(crate) fn finish(&self) {
        self.with_state(|state, lines| {
            if state.finished {
                return;
            }
            state.finished = true;
            for (chan, source) in [(&mut state.stdout, LogSource::Stdout), (&mut state.stderr, LogSource::Stderr)] {
                if !chan.partial.is_empty() {
                    let piece = std::mem::take(&mut chan.partial);
                    lines.push((source, String::from_utf8_lossy(&piece).into_owned()));
                }
            }
            for chan in [&state.stdout, &state.stderr, &state.app] {
                if chan.dropped > 0 {
                    lines.push((
                        LogSource::Sandbox,
                        format!(
                            "{} truncated: kept the first {} bytes, dropped {} more",
                            chan.name, chan.kept, chan.dropped
                        ),
                    ));
                }
            }
        });
    }

    /// The last few KiB written to stderr (including what the cap dropped).
    pub(crate) fn stderr_tail(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let bytes: Vec<u8> = state.stderr_tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether `stdout`, `stderr` or `log` dropped output.
    #[cfg(test)]
    fn truncated(&self, name: &str) -> bool {
        let state = self.state.lock().unwrap();
        [&state.stdout, &state.stderr, &state.app].iter().any(|c| c.name == name && c.dropped > 0)
    }

    pub(crate) fn stdout(&self) -> CaptureStream {
        CaptureStream { capture: self.clone(), channel: Channel::Stdout }
    }

    pub(crate) fn stderr(&self) -> CaptureStream {
        CaptureStream { capture: self.clone(), channel: Channel::Stderr }
    }
}

/// The guest's stdout or stderr: a WASI output stream that never fills up (what exceeds
/// the cap is dropped, not refused).
#[derive(Clone)]
pub(crate) struct CaptureStream {
    capture: Capture,
    channel: Channel,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.capture.write(self.channel, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.capture.write(self.channel, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(cap: usize) -> (Capture, Arc<LogBuffer>) {
        let buf = Arc::new(LogBuffer::new());
        (Capture::new(buf.clone(), cap, cap, cap), buf)
    }

    #[test]
    fn lines_are_split_and_partial_lines_flushed_at_finish() {
        let (c, buf) = capture(1024);
        c.write(Channel::Stdout, b"one\ntw");
        c.write(Channel::Stdout, b"o\r\nthree");
        assert_eq!(buf.lines_from(LogSource::Stdout), ["one", "two"]);
        c.finish();
        assert_eq!(buf.lines_from(LogSource::Stdout), ["one", "two", "three"]);
        assert!(buf.lines_from(LogSource::Sandbox).is_empty());
    }

    #[test]
    fn output_past_the_cap_is_dropped_and_reported() {
        let (c, buf) = capture(10);
        c.write(Channel::Stderr, b"0123456\n789abcdef\n");
        c.write(Channel::Stderr, b"more\n");
        c.finish();
        assert_eq!(buf.lines_from(LogSource::Stderr), ["0123456", "78"]);
        let notes = buf.lines_from(LogSource::Sandbox);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].contains("kept the first 10 bytes, dropped 13 more"));
        assert!(c.truncated("stderr"));
        assert!(!c.truncated("stdout"));
        // The tail keeps what the cap dropped: that is where a panic message would be.
        assert!(c.stderr_tail().ends_with("more\n"));
    }

    #[test]
    fn log_messages_count_against_their_own_cap() {
        let (c, buf) = capture(8);
        c.message(LogLevel::Info, "hello");
        c.message(LogLevel::Warn, "world!");
        c.message(LogLevel::Warn, "gone");
        c.finish();
        assert_eq!(buf.lines_from(LogSource::App(LogLevel::Info)), ["hello"]);
        assert_eq!(buf.lines_from(LogSource::App(LogLevel::Warn)), ["wor"]);
        assert!(c.truncated("log"));
    }

    #[test]
    fn long_lines_are_forwarded_in_pieces() {
        let (c, buf) = capture(1 << 20);
        c.write(Channel::Stdout, &vec![b'x'; MAX_LINE * 2 + 5]);
        c.finish();
        let lines = buf.lines_from(LogSource::Stdout);
        assert_eq!(lines.iter().map(String::len).collect::<Vec<_>>(), [MAX_LINE, MAX_LINE, 5]);
    }
}
