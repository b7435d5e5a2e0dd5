//! The errors of this crate.

use tonic::{Code, Status};

/// One gRPC call that failed (after retrying while the server was unavailable).
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {} ({:?})", .status.message(), .status.code())]
pub struct RpcError {
    /// The method, as named in the generated client (`pull_app_inputs`, `push_object`, ...).
    pub call: &'static str,
    /// The server's answer.
    pub status: Status,
}

impl RpcError {
    /// Whether the server refused because the run is not running (or the token is no
    /// longer valid): Flower's PERMISSION_DENIED, which means "stop working on this".
    pub fn is_stopped(&self) -> bool {
        self.status.code() == Code::PermissionDenied
    }
}

/// Why [`serverapp::run`](crate::serverapp::run) or
/// [`clientapp::run`](crate::clientapp::run) returned an error.
///
/// A run or an instruction that fails is not an error of the process: it is recorded
/// (a failed run, an error reply) and the process serves the next one. These errors end
/// the process: a bad address, a sandbox that cannot start, or, when the process serves
/// one token or one run only, why that one could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API address is not usable.
    #[error("invalid API address {address:?}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The Wasm sandbox could not be set up.
    #[error("cannot set up the Wasm sandbox: {0}")]
    Sandbox(#[from] sepal_sandbox::SandboxError),
    /// A call to the SuperLink or SuperNode failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The server answered something this process cannot use.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// An object of the instruction could not be pulled or pushed.
    #[error("{0}")]
    Objects(String),
}
