//! Per-call gRPC metrics, recorded in one place for every service of a server: a tower
//! layer on the tonic server that counts calls by method and status code and times them
//! (to the response headers: the whole call for unary methods, the set-up for streams).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    method: String,
    code: String,
}

/// Labels of a method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

/// Call seconds: from 100 µs (a loopback unary call) to 30 s (a held pull).
const BUCKETS: [f64; 17] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Calls by method and gRPC status, and their durations.
#[derive(Clone)]
pub struct RpcMetrics {
    calls: Family<CallLabels, Counter>,
    seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl RpcMetrics {
    /// Registers `sepal_grpc_calls_total` and `sepal_grpc_call_seconds` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self { calls: Family::default(), seconds: Family::new_with_constructor(histogram) };
        registry.register(
            "sepal_grpc_calls",
            "gRPC calls served, by service, method and status code",
            metrics.calls.clone(),
        );
        registry.register(
            "sepal_grpc_call_seconds",
            "Seconds from a gRPC call's arrival to its response headers",
            metrics.seconds.clone(),
        );
        metrics
    }

    fn record(&self, path: &str, code: &str, seconds: f64) {
        // "/flwr.proto.Fleet/PullMessages" -> ("flwr.proto.Fleet", "PullMessages")
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("unknown", path));
        let (service, method) = (service.to_string(), method.to_string());
        self.seconds.get_or_create(&MethodLabels { service: service.clone(), method: method.clone() }).observe(seconds);
        self.calls.get_or_create(&CallLabels { service, method, code: code.to_string() }).inc();
    }
}

/// The tower layer that records [`RpcMetrics`] (none: calls pass untouched).
#[derive(Clone, Default)]
pub struct RpcLayer(Option<RpcMetrics>);

impl RpcLayer {
    /// A layer recording into `metrics`, or doing nothing.
    pub fn new(metrics: Option<RpcMetrics>) -> Self {
        Self(metrics)
    }
}

impl<S> tower_layer::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner, metrics: self.0.clone() }
    }
}

/// A service wrapped by [`RpcLayer`].
#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Option<RpcMetrics>,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for RpcService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let record = self.metrics.clone().map(|m| (m, req.uri().path().to_string(), Instant::now()));
        RpcFuture { inner: self.inner.call(req), record }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RpcService`]: records the call when the response starts.
    pub struct RpcFuture<F> {
        #[pin]
        inner: F,
        record: Option<(RpcMetrics, String, Instant)>,
    }
}

impl<F, R, E> Future for RpcFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some((metrics, path, started)) = this.record.take() {
            let code = match &out {
                Ok(res) => code_name(res.headers()),
                Err(_) => "Unknown".to_string(),
            };
            metrics.record(&path, &code, started.elapsed().as_secs_f64());
        }
        Poll::Ready(out)
    }
}

/// The call's status as tonic names it: in the headers for a call that failed before any
/// reply ("trailers only"), else `Ok` (a stream's final status is in its trailers).
fn code_name(headers: &http::HeaderMap) -> String {
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
    format!("{:?}", code.map_or(tonic::Code::Ok, tonic::Code::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    /// A service answering with `status` in the headers (none: OK).
    #[derive(Clone)]
    struct Answer(Option<&'static str>);

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<http::Response<()>, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut res = http::Response::new(());
            if let Some(code) = self.0 {
                res.headers_mut().insert("grpc-status", http::HeaderValue::from_static(code));
            }
            std::future::ready(Ok(res))
        }
    }

    async fn call(layer: &RpcLayer, status: Option<&'static str>, path: &str) {
        let mut svc = tower_layer::Layer::layer(layer, Answer(status));
        svc.call(http::Request::builder().uri(path).body(()).unwrap()).await.unwrap();
    }

    #[tokio::test]
    async fn calls_are_counted_by_method_and_code_and_timed() {
        let mut registry = Registry::default();
        let layer = RpcLayer::new(Some(RpcMetrics::register(&mut registry)));
        call(&layer, None, "/flwr.proto.Fleet/PullMessages").await;
        call(&layer, None, "/flwr.proto.Fleet/PullMessages").await;
        call(&layer, Some("5"), "/flwr.proto.Fleet/GetRun").await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = |needle: &str| text.lines().find(|l| l.starts_with(needle)).map(str::to_string);
        assert_eq!(
            line("sepal_grpc_calls_total{service=\"flwr.proto.Fleet\",method=\"PullMessages\",code=\"Ok\"}").as_deref(),
            Some("sepal_grpc_calls_total{service=\"flwr.proto.Fleet\",method=\"PullMessages\",code=\"Ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("method=\"GetRun\",code=\"NotFound\"} 1"), "{text}");
        assert!(
            text.contains("sepal_grpc_call_seconds_count{service=\"flwr.proto.Fleet\",method=\"PullMessages\"} 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn without_metrics_calls_pass_untouched() {
        call(&RpcLayer::default(), Some("13"), "/x/Y").await;
    }
}
