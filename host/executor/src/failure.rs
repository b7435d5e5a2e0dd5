//! Why an app produced no result, in Flower's terms.

use sepal_core::records::Error as MsgError;
use sepal_sandbox::SandboxError;

/// Why a ClientApp gave no reply, or a ServerApp run did not complete. For a ClientApp each
/// becomes Flower's error reply ([`AppFailure::to_error`]); for a ServerApp, the run's
/// `finished:failed` details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppFailure {
    /// The app could not be loaded or started (Flower's code 1 for a ClientApp).
    #[error("{0}")]
    Load(String),
    /// The app failed while running (Flower's code 2 for a ClientApp).
    #[error("{0}")]
    Raised(String),
    /// The app did not finish before its message expired.
    #[error("the ClientApp did not reply before the message expired")]
    TimedOut,
}

impl AppFailure {
    /// Flower's error code for this failure of a ClientApp.
    pub fn code(&self) -> i64 {
        match self {
            AppFailure::Load(_) => MsgError::LOAD_CLIENT_APP_EXCEPTION,
            AppFailure::Raised(_) => MsgError::CLIENT_APP_RAISED_EXCEPTION,
            AppFailure::TimedOut => MsgError::UNKNOWN,
        }
    }

    /// The Flower error a reply carries for this failure.
    pub fn to_error(&self) -> MsgError {
        MsgError::new(self.code(), self.to_string())
    }
}

impl From<SandboxError> for AppFailure {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::BadComponent(_) => AppFailure::Load(e.to_string()),
            // The app's own error: its message as the app wrote it.
            SandboxError::AppError { message, .. } => AppFailure::Raised(message),
            other => AppFailure::Raised(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_errors_keep_flower_codes() {
        let e = AppFailure::from(SandboxError::AppError { code: 2, message: "boom".into() }).to_error();
        assert_eq!((e.code, e.reason.as_str()), (MsgError::CLIENT_APP_RAISED_EXCEPTION, "boom"));
        let e = AppFailure::from(SandboxError::BadComponent("no".into())).to_error();
        assert_eq!(e.code, MsgError::LOAD_CLIENT_APP_EXCEPTION);
        assert_eq!(AppFailure::TimedOut.code(), MsgError::UNKNOWN);
    }
}
