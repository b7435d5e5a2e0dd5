//! App output copied into this process's own log (what the operator of a SuperNode or
//! SuperLink reads), in few records and capped per invocation.
//!
//! One record per line made the process log the cheapest thing for an app to inflate: a
//! ClientApp's 128 KiB of one-character lines became about 19 MiB of SuperNode log per
//! message. Here lines are gathered into records of up to [`BATCH_BYTES`] (or
//! [`BATCH_AGE`]), written as one quoted field (`output="..."`, so nothing an app writes
//! can pass for a line of the process's own), and an invocation's output stops being
//! copied once it passes the cap; one record then says how much was left out. The
//! sandbox's own notices always get through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sepal_sandbox::LogSource;

/// A record is written once it holds this many bytes of output...
pub(crate) const BATCH_BYTES: usize = 16 * 1024;
/// ...or when a line arrives this long after the last record was written, so that output
/// that trickles is written line by line as it comes, and a burst in few records (what a
/// burst leaves gathered is written with the next line, or when the invocation ends).
pub(crate) const BATCH_AGE: Duration = Duration::from_secs(1);

/// Whose output: a ClientApp's (target `clientapp`, capped per message) or a ServerApp's
/// (target `serverapp`, capped per run; all of it is in the run's log as well).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// What is written to the process's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// `lines` lines of output, each `source: text`, separated by newlines.
    Output { lines: usize, text: String },
    /// The output passed `cap` bytes: `lines` more lines, `bytes` bytes, were left out.
    Cut { lines: u64, bytes: u64, cap: usize },
}

type Emit = Box<dyn Fn(Record) + Send + Sync>;

/// The copy of one invocation's output for this process's log. Write what is gathered
/// with [`Echo::finish`] (the sinks do it when they are dropped).
pub(crate) struct Echo {
    cap: usize,
    /// [`BATCH_AGE`], but for tests.
    age: Duration,
    state: Mutex<State>,
    emit: Emit,
}

#[derive(Default)]
struct State {
    batch: String,
    lines: usize,
    /// When the last record was written (`None`: none yet).
    written: Option<Instant>,
    /// Bytes of output copied so far (as written: quoted).
    copied: usize,
    cut_lines: u64,
    cut_bytes: u64,
}

impl Echo {
    /// The echo of run `run_id`'s output on `side`, copying at most `cap` bytes of it.
    pub(crate) fn new(side: Side, run_id: u64, cap: usize) -> Self {
        Echo::with_emit(cap, BATCH_AGE, Box::new(move |record| trace(side, run_id, record)))
    }

    /// An echo writing its records with `emit`, one at least every `age` while lines come.
    pub(crate) fn with_emit(cap: usize, age: Duration, emit: Emit) -> Self {
        Echo { cap, age, state: Mutex::new(State::default()), emit }
    }

    /// One line of output (or one `log` message) from `source`.
    pub(crate) fn line(&self, source: LogSource, text: &str) {
        let ready = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            // What the line costs in the record: quoted (escapes widen control characters),
            // and its newline.
            let cost = source.to_string().len() + 2 + text.escape_debug().count() + 2;
            if source != LogSource::Sandbox && state.copied + cost > self.cap {
                state.cut_lines += 1;
                state.cut_bytes += text.len() as u64;
                return;
            }
            if source != LogSource::Sandbox {
                state.copied += cost;
            }
            if !state.batch.is_empty() {
                state.batch.push('\n');
            }
            state.batch.push_str(&format!("{source}: {text}"));
            state.lines += 1;
            let quiet = state.written.is_none_or(|at| at.elapsed() >= self.age);
            if state.batch.len() >= BATCH_BYTES || quiet {
                state.written = Some(Instant::now());
                take(&mut state)
            } else {
                None
            }
        };
        if let Some(record) = ready {
            (self.emit)(record);
        }
    }

    /// Writes what is gathered, and says how much passed the cap. Idempotent.
    pub(crate) fn finish(&self) {
        let (batch, cut) = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let cut = (state.cut_lines > 0).then(|| Record::Cut {
                lines: std::mem::take(&mut state.cut_lines),
                bytes: std::mem::take(&mut state.cut_bytes),
                cap: self.cap,
            });
            (take(&mut state), cut)
        };
        batch.into_iter().chain(cut).for_each(|record| (self.emit)(record));
    }
}

fn take(state: &mut State) -> Option<Record> {
    let lines = std::mem::take(&mut state.lines);
    (lines > 0).then(|| Record::Output { lines, text: std::mem::take(&mut state.batch) })
}

/// Writes a record to this process's log (tracing), under the side's target.
fn trace(side: Side, run_id: u64, record: Record) {
    match (side, record) {
        (Side::Client, Record::Output { lines, text }) => {
            tracing::info!(target: "clientapp", run_id, lines, output = ?text, "ClientApp output");
        }
        (Side::Server, Record::Output { lines, text }) => {
            tracing::info!(target: "serverapp", run_id, lines, output = ?text, "ServerApp output");
        }
        (Side::Client, Record::Cut { lines, bytes, cap }) => tracing::warn!(
            target: "clientapp",
            run_id,
            "{lines} more lines ({bytes} bytes) of this message's ClientApp output are not logged here: \
             the cap is {cap} bytes per message (--wasm-host-log-kib)"
        ),
        (Side::Server, Record::Cut { lines, bytes, cap }) => tracing::warn!(
            target: "serverapp",
            run_id,
            "{lines} more lines ({bytes} bytes) of this run's ServerApp output are not logged here (the run's \
             log has them): the cap is {cap} bytes per run (--wasm-host-log-kib)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An echo capped at `cap` that writes a record for quiet spells only once an hour
    /// (so that no test depends on how fast it runs), and what it wrote.
    fn echo(cap: usize) -> (Echo, Arc<Mutex<Vec<Record>>>) {
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let hour = Duration::from_secs(3600);
        (Echo::with_emit(cap, hour, Box::new(move |r| sink.lock().unwrap().push(r))), records)
    }

    #[test]
    fn many_small_lines_become_few_records() {
        let (echo, records) = echo(1 << 20);
        for _ in 0..65_536 {
            echo.line(LogSource::Stdout, "x");
        }
        echo.finish();
        let records = records.lock().unwrap();
        // 65,536 lines of "stdout: x" (9 bytes + a newline): the first at once, then about
        // 40 records of 16 KiB.
        assert!(records.len() <= 65_536 * 10 / BATCH_BYTES + 2, "{} records", records.len());
        let lines: usize = records
            .iter()
            .map(|r| match r {
                Record::Output { lines, text } => {
                    assert_eq!(text.lines().count(), *lines);
                    lines
                }
                Record::Cut { .. } => panic!("nothing was cut"),
            })
            .sum();
        assert_eq!(lines, 65_536);
    }

    #[test]
    fn a_line_after_a_quiet_spell_is_written_at_once() {
        let (echo, records) = echo(1 << 20);
        echo.line(LogSource::Stdout, "first");
        assert_eq!(records.lock().unwrap().len(), 1, "the first line of an invocation is written at once");
        echo.line(LogSource::Stdout, "burst");
        assert_eq!(records.lock().unwrap().len(), 1, "a line right after is gathered");
        let hour_ago = Instant::now().checked_sub(Duration::from_secs(3600)).expect("an hour ago");
        echo.state.lock().unwrap().written = Some(hour_ago);
        echo.line(LogSource::Stdout, "later");
        let expected = Record::Output { lines: 2, text: "stdout: burst\nstdout: later".into() };
        assert_eq!(records.lock().unwrap().last(), Some(&expected));
    }

    #[test]
    fn output_past_the_cap_is_left_out_with_one_notice_and_sandbox_notices_pass() {
        let (echo, records) = echo(1000);
        for i in 0..1000 {
            echo.line(LogSource::Stderr, &format!("line {i}"));
        }
        echo.line(LogSource::Sandbox, "stderr truncated: kept the first 10 bytes");
        echo.finish();
        let records = records.lock().unwrap();
        let output: String = records
            .iter()
            .filter_map(|r| match r {
                Record::Output { text, .. } => Some(text.as_str()),
                Record::Cut { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(output.len() <= 1000, "{} bytes copied", output.len());
        assert!(output.starts_with("stderr: line 0\nstderr: line 1\n"), "{output}");
        assert!(output.ends_with("sandbox: stderr truncated: kept the first 10 bytes"), "{output}");
        let cuts: Vec<&Record> = records.iter().filter(|r| matches!(r, Record::Cut { .. })).collect();
        assert_eq!(cuts.len(), 1, "{records:?}");
        let Record::Cut { lines, cap, .. } = cuts[0] else { unreachable!() };
        assert_eq!(*cap, 1000);
        assert_eq!(*lines as usize + output.lines().count() - 1, 1000);
    }

    #[test]
    fn escapes_count_against_the_cap_as_written() {
        let (echo, records) = echo(100);
        echo.line(LogSource::Stdout, &"\u{1}".repeat(50));
        echo.finish();
        // 50 bytes, but written as 250 (`\u{1}` each): over the cap.
        assert!(matches!(records.lock().unwrap()[..], [Record::Cut { lines: 1, bytes: 50, cap: 100 }]));
    }

    #[test]
    fn a_quiet_invocation_writes_nothing_and_finish_is_idempotent() {
        let (echo, records) = echo(100);
        echo.finish();
        echo.line(LogSource::Stdout, "one");
        echo.finish();
        echo.finish();
        assert_eq!(*records.lock().unwrap(), [Record::Output { lines: 1, text: "stdout: one".into() }]);
    }
}
