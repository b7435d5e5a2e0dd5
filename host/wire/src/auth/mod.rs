//! Flower's SuperNode authentication on the Fleet API, both ends.
//!
//! Flower 1.20 SuperNodes sign every Fleet request, even without TLS: metadata
//! [`PUBLIC_KEY_HEADER`] (the node's EC public key, PEM; P-256 or P-384 here), [`TIMESTAMP_HEADER`] (ISO-8601)
//! and [`SIGNATURE_HEADER`] (DER ECDSA-SHA256 over the timestamp). A [`Signer`] adds them
//! on the SuperNode; on the SuperLink, [`FleetAuth`] checks the signature and the
//! timestamp window (and, with an [`Allowlist`], that the key is listed) and leaves the
//! caller's [`NodeKey`] in the request for the handlers, which bind it to the node at
//! CreateNode and check it on every later call.
//!
//! There is no nonce, as in Flower: a captured (key, timestamp, signature) triple can be
//! replayed while its timestamp is inside the window, but only for the key's own node.

mod allowlist;
mod cache;
mod signer;
mod verifier;

pub use allowlist::Allowlist;
pub use cache::VerifiedCache;
pub use signer::{Signer, RESIGN_AFTER};
pub use verifier::{verify, verify_cached, AuthError, FleetAuth, NodeKey};

/// Metadata key of the node's public key (PEM bytes).
pub const PUBLIC_KEY_HEADER: &str = "flwr-public-key-bin";
/// Metadata key of the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "flwr-timestamp";
/// Metadata key of the signature.
pub const SIGNATURE_HEADER: &str = "flwr-signature-bin";
