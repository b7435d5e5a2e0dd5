//! Readable errors for failed Exec API calls: a gRPC status becomes a message that says
//! what went wrong and, where it can, what to do about it.

use anyhow::anyhow;
use tonic::{Code, Status};

/// The text Flower's Exec API sends with NOT_FOUND for an unknown run.
const RUN_ID_NOT_FOUND: &str = "Run ID not found";

/// Maps a gRPC status from the SuperLink at `address` to a message that says what to do
/// about it; `what` says what was refused, e.g. "the SuperLink refused the run".
pub fn rpc_error(status: &Status, address: &str, what: &str) -> anyhow::Error {
    let message = status.message();
    let detail = if message.is_empty() { status.code().description() } else { message };
    match status.code() {
        Code::Unavailable => anyhow!("cannot reach the SuperLink at {address}: {detail}"),
        Code::NotFound if message == RUN_ID_NOT_FOUND => anyhow!("{RUN_ID_NOT_FOUND}"),
        Code::Unauthenticated => anyhow!(
            "authentication failed at {address} ({detail}); log in with `sepal login` (or `flwr login`) and try again \
             (the federation needs enable-user-auth = true)"
        ),
        // The SuperLink's own words for a submission it refused (FAB, run config).
        Code::PermissionDenied if detail.starts_with("Run not started: ") => anyhow!("{detail}"),
        Code::PermissionDenied => anyhow!("permission denied by the SuperLink at {address}: {detail}"),
        Code::Unimplemented => {
            anyhow!("the server at {address} does not implement this call of Flower's Exec API: {detail}")
        }
        Code::DeadlineExceeded => anyhow!("the SuperLink at {address} did not answer in time: {detail}"),
        code => anyhow!("{what}: {detail} ({})", code_name(code)),
    }
}

/// The gRPC name of a status code (`INVALID_ARGUMENT`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages() {
        let addr = "127.0.0.1:1";
        let e = rpc_error(&Status::unavailable("connection refused"), addr, "x").to_string();
        assert_eq!(e, "cannot reach the SuperLink at 127.0.0.1:1: connection refused");
        let e = rpc_error(&Status::not_found("Run ID not found"), addr, "x").to_string();
        assert_eq!(e, "Run ID not found");
        let e = rpc_error(&Status::invalid_argument("FAB hash mismatch"), addr, "the SuperLink refused the run");
        assert_eq!(e.to_string(), "the SuperLink refused the run: FAB hash mismatch (INVALID_ARGUMENT)");
    }
}
