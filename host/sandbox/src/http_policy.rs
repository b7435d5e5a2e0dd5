//! Outgoing HTTP for guests (`wasi:http/outgoing-handler`): only to the origins the
//! operator granted, and within [`HttpLimits`]. wasmtime-wasi-http implements the
//! interface; this module is its `send_request` hook.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{default_send_request, Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::{HttpLimits, Origin};
use crate::log::Capture;

/// The flag that grants an origin.
const GRANT_FLAG: &str = "--wasm-allow-http";
/// The flag that sets [`HttpLimits::concurrent_requests`].
const REQUESTS_FLAG: &str = "--wasm-http-max-requests";
/// The flag that sets [`HttpLimits::response_bytes`].
const RESPONSE_FLAG: &str = "--wasm-http-max-response-kib";

/// What `send_request` hands back to wasmtime-wasi-http.
type Sent = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>;

/// One invocation's HTTP policy: the granted origins, the limits, and which refusals the
/// run's log already mentions (each once, so a retrying app cannot flood it).
pub(crate) struct HttpPolicy {
    origins: Arc<[Origin]>,
    limits: HttpLimits,
    in_flight: Arc<Semaphore>,
    capture: Capture,
    refusals_noted: HashSet<String>,
}

impl HttpPolicy {
    pub(crate) fn new(origins: &[Origin], limits: &HttpLimits, capture: Capture) -> Self {
        HttpPolicy {
            origins: origins.into(),
            limits: limits.clone(),
            in_flight: Arc::new(Semaphore::new(limits.concurrent_requests)),
            capture,
            refusals_noted: HashSet::new(),
        }
    }

    /// Says once per invocation and cause why a request was refused: in the process log
    /// (the operator's) and in the run's log (the app author's).
    fn note(&mut self, key: String, text: String) {
        if self.refusals_noted.insert(key) {
            tracing::warn!("a Wasm app's HTTP request was refused: {text}");
            self.capture.notice(&text);
        }
    }

    /// A slot for a request to `uri`, or the error the guest gets.
    fn admit(&mut self, uri: &http::Uri) -> Result<OwnedSemaphorePermit, Error> {
        let origin = Origin::of(uri).filter(|_| !uri.authority().is_some_and(|a| a.as_str().contains('@')));
        let Some(origin) = origin.filter(|o| self.origins.contains(o)) else {
            let shown = uri
                .authority()
                .map_or_else(|| uri.to_string(), |a| format!("{}://{a}", uri.scheme_str().unwrap_or("?")));
            let text = format!(
                "HTTP request to {shown} refused: origin {shown} not granted (the operator grants one with {GRANT_FLAG} ORIGIN)"
            );
            self.note(format!("origin {shown}"), text);
            return Err(Error::HttpRequestDenied);
        };
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            let max = self.limits.concurrent_requests;
            let text = format!(
                "the app reached its limit of {max} HTTP requests in flight (set with {REQUESTS_FLAG}); \
                 more fail with connection-limit-reached (request to {origin})"
            );
            self.note("requests".into(), text);
            Error::ConnectionLimitReached
        })
    }

    /// The guest's timeouts, each no longer than the operator's.
    fn options(&self, asked: Option<RequestOptions>) -> RequestOptions {
        let asked = asked.unwrap_or_default();
        let at_most = |asked: Option<std::time::Duration>, limit| Some(asked.map_or(limit, |a| a.min(limit)));
        RequestOptions {
            connect_timeout: at_most(asked.connect_timeout, self.limits.connect_timeout),
            first_byte_timeout: at_most(asked.first_byte_timeout, self.limits.first_byte_timeout),
            between_bytes_timeout: at_most(asked.between_bytes_timeout, self.limits.between_bytes_timeout),
        }
    }
}

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        let permit = match self.admit(request.uri()) {
            Ok(permit) => permit,
            Err(refused) => return Box::new(std::future::ready(Err(refused))),
        };
        let options = self.options(options);
        let cap =
            Cap { bytes: self.limits.response_bytes, capture: self.capture.clone(), uri: request.uri().to_string() };
        Box::new(async move {
            let (response, io) = default_send_request(request, Some(options)).await?;
            if content_length(response.headers()).is_some_and(|n| n > cap.bytes) {
                // Refused before the body is read: the app gets a clean error code.
                cap.note();
                return Err(Error::HttpResponseBodySize(Some(cap.bytes)));
            }
            let response = response.map(|body| CappedBody::new(body.boxed_unsync(), cap, permit).boxed_unsync());
            Ok((response, Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>))
        })
    }
}

/// The `content-length` a response announces, if any and well-formed.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The response-body cap and what to say when it is hit.
struct Cap {
    bytes: u64,
    capture: Capture,
    uri: String,
}

impl Cap {
    fn note(&self) {
        let text = format!(
            "the response from {} passed the limit of {} bytes per HTTP response body (set with \
             {RESPONSE_FLAG}); the app got HTTP-response-body-size",
            self.uri, self.bytes
        );
        tracing::warn!("a Wasm app's HTTP response was cut off: {text}");
        self.capture.notice(&text);
    }
}

/// A response body that ends with `HTTP-response-body-size` past [`Cap::bytes`], and holds
/// its request's slot until it is finished or dropped.
struct CappedBody {
    inner: WasiBody,
    read: u64,
    cap: Cap,
    ended: bool,
    _slot: OwnedSemaphorePermit,
}

impl CappedBody {
    fn new(inner: WasiBody, cap: Cap, slot: OwnedSemaphorePermit) -> Self {
        CappedBody { inner, read: 0, cap, ended: false, _slot: slot }
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            this.read += data.map_or(0, |d| d.len() as u64);
            if this.read > this.cap.bytes {
                this.ended = true;
                this.cap.note();
                return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.cap.bytes)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log::LogBuffer;

    fn policy(origins: &[&str], limits: HttpLimits) -> (HttpPolicy, Arc<LogBuffer>) {
        let log = Arc::new(LogBuffer::new());
        let origins: Vec<Origin> = origins.iter().map(|o| Origin::parse(o).unwrap()).collect();
        let capture = Capture::new(log.clone(), 1024, 1024, 1024);
        (HttpPolicy::new(&origins, &limits, capture), log)
    }

    #[test]
    fn only_granted_origins_are_admitted_and_each_refusal_is_noted_once() {
        let (mut policy, log) = policy(&["http://127.0.0.1:5000"], HttpLimits::default());
        assert!(policy.admit(&"http://127.0.0.1:5000/api".parse().unwrap()).is_ok());
        for _ in 0..3 {
            let refused = policy.admit(&"http://127.0.0.1:5001/api".parse().unwrap());
            assert!(matches!(refused, Err(Error::HttpRequestDenied)));
        }
        assert!(policy.admit(&"http://x@127.0.0.1:5000/".parse().unwrap()).is_err(), "user info is refused");
        let text = log.text();
        assert_eq!(text.matches("127.0.0.1:5001 not granted").count(), 1, "{text}");
        assert!(text.contains("--wasm-allow-http"), "{text}");
    }

    #[test]
    fn requests_in_flight_are_bounded() {
        let limits = HttpLimits { concurrent_requests: 2, ..HttpLimits::default() };
        let (mut policy, log) = policy(&["http://a.test"], limits);
        let uri: http::Uri = "http://a.test/".parse().unwrap();
        let (first, second) = (policy.admit(&uri).unwrap(), policy.admit(&uri).unwrap());
        assert!(matches!(policy.admit(&uri), Err(Error::ConnectionLimitReached)));
        assert!(log.text().contains(REQUESTS_FLAG));
        drop((first, second));
        assert!(policy.admit(&uri).is_ok(), "a finished request frees its slot");
    }

    #[test]
    fn the_guest_may_shorten_timeouts_but_not_lengthen_them() {
        let (policy, _) = policy(&[], HttpLimits::default());
        let asked = RequestOptions {
            connect_timeout: Some(Duration::from_secs(1)),
            first_byte_timeout: Some(Duration::from_secs(3600)),
            between_bytes_timeout: None,
        };
        let got = policy.options(Some(asked));
        assert_eq!(got.connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(got.first_byte_timeout, Some(HttpLimits::default().first_byte_timeout));
        assert_eq!(got.between_bytes_timeout, Some(HttpLimits::default().between_bytes_timeout));
    }
}
