//! What a Sepal server shows its operator besides logs: Prometheus metrics at
//! `GET /metrics` and a health check at `GET /healthz` on one HTTP address
//! (`--metrics-address`), and the per-call gRPC metrics every server records
//! ([`RpcLayer`]), and the Wasm app invocations of a process that runs them
//! ([`SandboxMetrics`]). What each server measures beyond calls is its own (it registers its
//! metrics in the [`Exposition`]'s registry and refreshes them before each scrape).

mod http_server;
mod rpc;
mod sandbox;

pub use http_server::{serve, Exposition};
pub use rpc::{RpcLayer, RpcMetrics};
pub use sandbox::SandboxMetrics;
