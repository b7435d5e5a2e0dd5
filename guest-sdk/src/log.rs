//! Logging into the run's log (what `flwr log` shows).
//!
//! In a Wasm component, [`log`] calls the host's `sepal:app/log` import; natively (tests)
//! it writes to stderr. The macros [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn) and [`error!`](crate::error) take `format!` arguments.
//!
//! ```
//! sepal_sdk::info!("round {} of {}", 1, 3);
//! sepal_sdk::log::log(sepal_sdk::log::Level::Warn, "careful");
//! ```

use std::fmt;

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Detail for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the app handled.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// The level's name as Flower prints it (`DEBUG`, `INFO`, `WARNING`, `ERROR`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `message` to the run's log at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{:<8}: {}", level.as_str(), message);
}

#[doc(hidden)]
pub fn log_fmt(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => log(level, s),
        None => log(level, &args.to_string()),
    }
}

/// Logs at [`Level::Debug`], with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Debug, format_args!($($arg)+)) };
}

/// Logs at [`Level::Info`], with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Info, format_args!($($arg)+)) };
}

/// Logs at [`Level::Warn`], with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Warn, format_args!($($arg)+)) };
}

/// Logs at [`Level::Error`], with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Error, format_args!($($arg)+)) };
}
