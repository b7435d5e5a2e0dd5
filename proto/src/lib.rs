//! Flower 1.20.0's wire types and gRPC services, generated from Sepal's own `.proto` files.
//!
//! The files in `proto/flwr/proto/` are written from the field tables in the shared wire
//! spec: same package (`flwr.proto`), message names, field numbers and service paths as
//! Flower, so Python Flower peers interoperate unchanged.

#![allow(missing_docs, clippy::all)]

#[cfg(feature = "grpc")]
pub mod codec;

/// Everything in Flower's `flwr.proto` package.
pub mod flwr {
    pub mod proto {
        include!(concat!(env!("OUT_DIR"), "/flwr.proto.rs"));
    }
}

pub use flwr::proto as pb;

/// The largest gRPC message Flower accepts in either direction (2 GiB - 1).
pub const MAX_GRPC_MESSAGE: usize = 2_147_483_647;

/// Request metadata by which Sepal's own clients ask a Sepal server to hold an empty poll
/// (Fleet PullMessages, ClientAppIo GetRunIdsWithPendingMessages) until there is work or
/// this many milliseconds pass. Flower's clients never send it; Flower's servers ignore it.
pub const WAIT_HEADER: &str = "sepal-wait-ms";

/// The wait a request asks for with [`WAIT_HEADER`], at most `max`; zero without one.
#[cfg(feature = "grpc")]
pub fn requested_wait(metadata: &tonic::metadata::MetadataMap, max: std::time::Duration) -> std::time::Duration {
    let ms = metadata.get(WAIT_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    ms.map_or(std::time::Duration::ZERO, std::time::Duration::from_millis).min(max)
}
