//! Where the process's own log goes and how it looks: stderr, readable text (coloured only
//! on a terminal, never with `NO_COLOR` set) or one JSON object per line for log
//! collectors (`--log-format json` on the SuperLink and SuperNode).

use std::io::IsTerminal;

/// The shape of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with
    /// `message`), and the span the event is in.
    Json,
}

/// The log flags of the long-running commands (Sepal addition).
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct LogArgs {
    /// How log lines look: `text`, or `json` (one object per line).
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Logs to stderr at `default` level unless `SEPAL_LOG` (an `EnvFilter` spec) says
/// otherwise.
pub fn init(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEPAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colours_wanted()).init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// Colours only for a person at a terminal: never into a file or pipe, never with
/// `NO_COLOR` (https://no-color.org) set to anything non-empty.
fn colours_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
