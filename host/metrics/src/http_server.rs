//! `GET /metrics` (OpenMetrics text) and `GET /healthz` (200 while the server can do its
//! job, else 503) on one listener.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// A server's metrics and how to check its health.
pub struct Exposition {
    registry: Registry,
    refresh: Box<dyn Fn() + Send + Sync>,
    healthy: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
}

impl Exposition {
    /// `registry` with everything registered; `refresh` brings gauges up to date before a
    /// scrape; `healthy` says why the server cannot serve, if it cannot.
    pub fn new(
        registry: Registry,
        refresh: impl Fn() + Send + Sync + 'static,
        healthy: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self { registry, refresh: Box::new(refresh), healthy: Box::new(healthy) }
    }

    /// The metrics in the OpenMetrics text format, refreshed.
    pub fn render(&self) -> String {
        (self.refresh)();
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.registry) {
            // Only a failing fmt::Write can fail this, and a String does not.
            tracing::error!("cannot encode the metrics: {e}");
        }
        text
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    exposition: Arc<Exposition>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(exposition);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(exposition): State<Arc<Exposition>>) -> impl IntoResponse {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], exposition.render())
}

async fn healthz(State(exposition): State<Arc<Exposition>>) -> impl IntoResponse {
    match (exposition.healthy)() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => {
            tracing::warn!("health check failed: {why}");
            (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}\n"))
        }
    }
}
