//! [`AppError`]: why an app call failed.

use std::fmt;

/// Why an app call failed.
///
/// A ClientApp handler that returns an `AppError` makes the host answer the instruction
/// with a Flower error reply carrying [`AppError::code`] and [`AppError::message`]; a
/// ServerApp that returns one ends its run as failed. Most errors use
/// [`AppError::CLIENT_APP_RAISED_EXCEPTION`] (Flower's code 2, "the app raised"), which is
/// what [`AppError::new`] and every `From` conversion pick.
///
/// ```
/// use sepal_sdk::AppError;
///
/// fn check(lr: f64) -> Result<(), AppError> {
///     if lr <= 0.0 {
///         return Err(AppError::new(format!("lr must be positive, got {lr}")));
///     }
///     Ok(())
/// }
/// assert_eq!(check(-1.0).unwrap_err().code, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    /// Flower's error code (see the constants; 2 = the app raised).
    pub code: u32,
    /// Human-readable reason.
    pub message: String,
}

impl AppError {
    /// Flower's `UNKNOWN` error code.
    pub const UNKNOWN: u32 = 0;
    /// Flower's `CLIENT_APP_RAISED_EXCEPTION` code: the app failed.
    pub const CLIENT_APP_RAISED_EXCEPTION: u32 = 2;

    /// An error with code [`AppError::CLIENT_APP_RAISED_EXCEPTION`].
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_code(Self::CLIENT_APP_RAISED_EXCEPTION, message)
    }

    /// An error with an explicit Flower error code.
    pub fn with_code(code: u32, message: impl Into<String>) -> Self {
        AppError { code, message: message.into() }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for AppError {}

impl From<String> for AppError {
    fn from(message: String) -> Self {
        AppError::new(message)
    }
}

impl From<&str> for AppError {
    fn from(message: &str) -> Self {
        AppError::new(message)
    }
}

macro_rules! from_error {
    ($($t:ty => $what:literal),* $(,)?) => {
        $(impl From<$t> for AppError {
            fn from(e: $t) -> Self {
                AppError::new(format!(concat!($what, ": {}"), e))
            }
        })*
    };
}

from_error!(
    sepal_core::NpyError => "array",
    sepal_core::RecordError => "record",
    prost::DecodeError => "protobuf",
    std::num::TryFromIntError => "integer conversion",
    std::fmt::Error => "formatting",
    crate::http::HttpError => "HTTP",
    crate::mlflow::MlflowError => "MLflow",
);
