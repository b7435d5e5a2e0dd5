//! What commands print on stdout: the `--format` choice, writes that survive a closed pipe,
//! and Flower's JSON for a failed command.

use std::io::Write as _;

use anyhow::Context as _;
use serde::Serialize;

/// `--format`: Flower's `default` (human-readable) or `json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    #[default]
    Default,
    /// One JSON document on stdout (errors too: `{"success": false, "error-message": ...}`).
    Json,
}

/// Writes `text` to stdout and flushes; a closed pipe (`sepal log | head`) is not an error.
pub fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// Prints `value` as indented JSON on stdout, as `flwr ... --format json` does.
pub fn out_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode the JSON output")?;
    text.push('\n');
    out(&text)
}

/// Flower's JSON for a failed command.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct JsonError {
    success: bool,
    error_message: String,
}

/// With `--format json`, also reports a failure on stdout as Flower does
/// (`{"success": false, "error-message": ...}`); the error is returned either way.
pub fn report<T>(format: OutputFormat, result: anyhow::Result<T>) -> anyhow::Result<T> {
    if let (OutputFormat::Json, Err(e)) = (format, &result) {
        let _ = out_json(&JsonError { success: false, error_message: format!("{e:#}") });
    }
    result
}
