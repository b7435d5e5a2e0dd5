//! Service errors and the one place where they become gRPC statuses.

use sepal_core::error::ObjectError;
use tonic::{Code, Status};

use crate::state::StateError;

/// Everything a SuperLink service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names a run that does not exist.
    #[error("run {0} not found")]
    RunNotFound(u64),
    /// The run's status does not allow this call (Flower's wording, e.g. "Run is finished.").
    #[error("{0}")]
    RunRefused(String),
    /// The request is malformed; the text says how.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something the request refers to does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller could not be authenticated.
    #[error("{0}")]
    Unauthenticated(String),
    /// The request is well-formed but cannot be applied in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request exceeds a size limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A service the SuperLink depends on (the identity provider) cannot be used now.
    #[error("{0}")]
    Unavailable(String),
    /// The call is not offered by this SuperLink.
    #[error("{0}")]
    Unimplemented(String),
    /// The state backend failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A pushed object was refused.
    #[error(transparent)]
    Object(#[from] ObjectError),
}

/// Result type of the services.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a gRPC handler returns.
pub type Reply<T> = std::result::Result<tonic::Response<T>, Status>;

/// Turns a service result into a gRPC reply, mapping errors through [`Status::from`].
pub fn reply<T>(result: Result<T>) -> Reply<T> {
    result.map(tonic::Response::new).map_err(Status::from)
}

impl Error {
    fn code(&self) -> Code {
        match self {
            Error::RunNotFound(_) | Error::NotFound(_) => Code::NotFound,
            Error::RunRefused(_) | Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable(_) => Code::Unavailable,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::State(StateError::RunNotFound(_) | StateError::NodeNotFound(_)) => Code::NotFound,
            Error::State(StateError::PublicKeyInUse) => Code::Unauthenticated,
            Error::State(StateError::Backend(_)) => Code::Internal,
            Error::Object(ObjectError::Malformed { .. }) => Code::FailedPrecondition,
            Error::Object(ObjectError::RunQuota { .. }) => Code::ResourceExhausted,
            Error::Object(_) => Code::InvalidArgument,
        }
    }
}

impl Error {
    /// What the status message says.
    pub fn text(&self) -> String {
        match self {
            // Flower's exact wording, which its clients compare against.
            Error::State(StateError::PublicKeyInUse) => "Public key already in use".to_string(),
            Error::Object(quota @ ObjectError::RunQuota { .. }) => format!("{quota} (--max-run-mb)"),
            other => other.to_string(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        let text = err.text();
        match code {
            Code::Internal => tracing::error!(code = ?code, "{text}"),
            Code::PermissionDenied => tracing::info!(code = ?code, "{text}"),
            _ => tracing::warn!(code = ?code, "{text}"),
        }
        Status::new(code, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_precise_codes() {
        assert_eq!(Status::from(Error::RunNotFound(7)).code(), Code::NotFound);
        assert_eq!(Status::from(Error::RunNotFound(7)).message(), "run 7 not found");
        assert_eq!(Status::from(Error::RunRefused("Run is finished.".into())).code(), Code::PermissionDenied);
        assert_eq!(Status::from(Error::State(StateError::PublicKeyInUse)).message(), "Public key already in use");
        assert_eq!(Status::from(Error::State(StateError::Backend("disk".into()))).code(), Code::Internal);
    }
}
