//! Flower 1.20.0's wire types and gRPC services, generated from Sepal's own `.proto` files.
//! Generated code only: the codec the services use and everything else both ends share
//! about the wire live in `sepal-wire`.
//!
//! The files in `proto/flwr/proto/` are written from the field tables in the shared wire
//! spec: same package (`flwr.proto`), message names, field numbers and service paths as
//! Flower, so Python Flower peers interoperate unchanged.

#![allow(missing_docs, clippy::all)]

/// Everything in Flower's `flwr.proto` package.
pub mod flwr {
    pub mod proto {
        include!(concat!(env!("OUT_DIR"), "/flwr.proto.rs"));
    }
}

pub use flwr::proto as pb;
