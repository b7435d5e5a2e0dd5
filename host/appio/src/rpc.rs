//! Channels to the SuperLink / SuperNode and the retry of unavailable calls.
//!
//! Flower's Python apps retry a call only while the server is UNAVAILABLE; so do these,
//! for at most [`RETRY_FOR`]. Every call also has a deadline ([`CALL_TIMEOUT`]).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::error::{Error, RpcError};

/// How long a call is retried while the server is unavailable.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(30);

/// The longest one call may take (a 20 MiB object over a slow network included).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily connecting channel to `address` (`host:port`, as Flower's flags take it, or a
/// URI). Plaintext: ServerAppIo and ClientAppIo never use TLS.
pub(crate) fn channel(address: &str) -> Result<Channel, Error> {
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Error::Address { address: address.to_owned(), reason: e.to_string() })?;
    if endpoint.uri().host().is_none() || endpoint.uri().port_u16().is_none() {
        return Err(Error::Address { address: address.to_owned(), reason: "expected HOST:PORT".into() });
    }
    Ok(sepal_wire::net::tuned(endpoint).connect_timeout(CONNECT_TIMEOUT).timeout(CALL_TIMEOUT).connect_lazy())
}

/// Calls `f` until it succeeds, fails with another code than UNAVAILABLE, or
/// [`RETRY_FOR`] has passed.
pub(crate) async fn retry<T, F, Fut>(call: &'static str, mut f: F) -> Result<T, RpcError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let give_up = Instant::now() + RETRY_FOR;
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.code() == Code::Unavailable && Instant::now() + delay < give_up => {
                tracing::debug!(call, "server unavailable ({}); retrying in {delay:?}", status.message());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(status) => return Err(RpcError { call, status }),
        }
    }
}

/// One unary call on a generated client, retried while the server is unavailable:
/// `unary!(client, get_nodes, request)` is a `Result<Response, RpcError>`.
macro_rules! unary {
    ($client:expr, $method:ident, $request:expr) => {{
        let request = $request;
        $crate::rpc::retry(stringify!($method), || {
            let mut client = $client.clone();
            let request = request.clone();
            async move { client.$method(request).await }
        })
        .await
    }};
}

pub(crate) use unary;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        assert!(channel("127.0.0.1:9091").is_ok());
        assert!(channel("http://localhost:9094").is_ok());
        assert!(matches!(channel("no port"), Err(Error::Address { .. })));
        assert!(matches!(channel("127.0.0.1"), Err(Error::Address { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn only_unavailable_is_retried_and_not_forever() {
        let mut calls = 0;
        let err = retry::<(), _, _>("probe", || {
            calls += 1;
            async { Err(tonic::Status::unavailable("down")) }
        })
        .await
        .unwrap_err();
        assert_eq!(err.status.code(), Code::Unavailable);
        assert!(calls > 3 && calls < 40, "{calls}");

        let mut calls = 0;
        let err = retry::<(), _, _>("probe", || {
            calls += 1;
            async { Err(tonic::Status::permission_denied("Run is finished.")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(err.is_stopped());
        assert_eq!(err.to_string(), "probe failed: Run is finished. (PermissionDenied)");
    }
}
