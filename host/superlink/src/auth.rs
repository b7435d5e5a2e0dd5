//! SuperNode authentication on the Fleet API.
//!
//! Flower 1.20 SuperNodes sign every Fleet request, even without TLS: metadata
//! `flwr-public-key-bin` (the node's EC public key, PEM), `flwr-timestamp` (ISO-8601)
//! and `flwr-signature-bin` (DER ECDSA-SHA256 over the timestamp). The SuperLink checks
//! the signature and the timestamp window, binds the key to the node at CreateNode, and
//! afterwards accepts a request only if its `node.node_id` is the key's node.

use std::sync::Arc;

use ecdsa::signature::hazmat::PrehashVerifier;
use p384::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::clock::parse_iso;
use crate::error::Error;
use crate::state::LinkState;

/// Metadata key of the node's public key (PEM bytes).
pub const PUBLIC_KEY_HEADER: &str = "flwr-public-key-bin";
/// Metadata key of the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "flwr-timestamp";
/// Metadata key of the signature.
pub const SIGNATURE_HEADER: &str = "flwr-signature-bin";

/// A timestamp may be this far in the future (clock skew), in seconds.
const MAX_FUTURE_SKEW: f64 = 5.0;
/// A timestamp may be this old, in seconds (Flower: 300 s plus 5 s skew).
const MAX_AGE: f64 = 305.0;

/// The verified public key of the calling node, left in the request's extensions.
#[derive(Debug, Clone)]
pub struct NodeKey(pub Vec<u8>);

/// Checks a request's signature metadata; returns the caller's public key (PEM).
pub fn verify(metadata: &MetadataMap) -> Result<Vec<u8>, Error> {
    let missing = || Error::Unauthenticated("Missing authentication metadata".into());
    let key = metadata.get_bin(PUBLIC_KEY_HEADER).ok_or_else(missing)?.to_bytes().map_err(|_| missing())?;
    let timestamp = metadata.get(TIMESTAMP_HEADER).ok_or_else(missing)?.to_str().map_err(|_| missing())?;
    let signature = metadata.get_bin(SIGNATURE_HEADER).ok_or_else(missing)?.to_bytes().map_err(|_| missing())?;
    if !signature_is_valid(&key, timestamp.as_bytes(), &signature) {
        return Err(Error::Unauthenticated("Invalid signature".into()));
    }
    let signed_at = parse_iso(timestamp).ok_or_else(|| Error::Unauthenticated("Invalid timestamp".into()))?;
    let age = (chrono::Utc::now() - signed_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    if !(-MAX_FUTURE_SKEW < age && age < MAX_AGE) {
        return Err(Error::Unauthenticated("Invalid timestamp".into()));
    }
    Ok(key.to_vec())
}

fn signature_is_valid(pem: &[u8], message: &[u8], der: &[u8]) -> bool {
    let Ok(pem) = std::str::from_utf8(pem) else {
        return false;
    };
    let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_pem(pem) else {
        return false;
    };
    let Ok(signature) = p384::ecdsa::Signature::from_der(der) else {
        return false;
    };
    key.verify_prehash(&Sha256::digest(message), &signature).is_ok()
}

/// A tonic interceptor for the Fleet service: verifies the signature and stores the
/// key in the request extensions for the handlers' node check.
pub fn interceptor(mut req: Request<()>) -> Result<Request<()>, Status> {
    let key = verify(req.metadata())?;
    req.extensions_mut().insert(NodeKey(key));
    Ok(req)
}

/// Checks that the caller's key is bound to `claimed_node` (every Fleet call but
/// CreateNode).
pub fn require_node<T>(state: &Arc<dyn LinkState>, req: &Request<T>, claimed_node: u64) -> Result<(), Error> {
    let invalid = || Error::Unauthenticated("Invalid node ID".into());
    let key = req.extensions().get::<NodeKey>().ok_or_else(invalid)?;
    match state.node_for_key(&key.0)? {
        Some(node) if node == claimed_node => Ok(()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ecdsa::signature::hazmat::PrehashSigner;
    use p384::pkcs8::{EncodePublicKey, LineEnding};
    use tonic::metadata::{BinaryMetadataValue, MetadataValue};

    /// Signs `timestamp` like a Flower SuperNode and returns the three metadata values.
    pub(crate) fn sign(key: &p384::ecdsa::SigningKey, timestamp: &str, md: &mut MetadataMap) {
        let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        let sig: p384::ecdsa::Signature = key.sign_prehash(&Sha256::digest(timestamp.as_bytes())).unwrap();
        md.insert_bin(PUBLIC_KEY_HEADER, BinaryMetadataValue::from_bytes(pem.as_bytes()));
        md.insert(TIMESTAMP_HEADER, MetadataValue::try_from(timestamp).unwrap());
        md.insert_bin(SIGNATURE_HEADER, BinaryMetadataValue::from_bytes(sig.to_der().as_bytes()));
    }

    fn key() -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)
    }

    #[test]
    fn fresh_signature_is_accepted() {
        let mut md = MetadataMap::new();
        sign(&key(), &crate::clock::now_iso(), &mut md);
        assert!(verify(&md).is_ok());
    }

    #[test]
    fn missing_tampered_and_stale_requests_are_refused() {
        assert_eq!(verify(&MetadataMap::new()).unwrap_err().to_string(), "Missing authentication metadata");

        let mut md = MetadataMap::new();
        sign(&key(), &crate::clock::now_iso(), &mut md);
        md.insert(TIMESTAMP_HEADER, MetadataValue::try_from(crate::clock::now_iso() + " ").unwrap());
        assert_eq!(verify(&md).unwrap_err().to_string(), "Invalid signature");

        let old = crate::clock::iso(chrono::Utc::now() - chrono::Duration::seconds(400));
        let mut md = MetadataMap::new();
        sign(&key(), &old, &mut md);
        assert_eq!(verify(&md).unwrap_err().to_string(), "Invalid timestamp");

        let future = crate::clock::iso(chrono::Utc::now() + chrono::Duration::seconds(10));
        let mut md = MetadataMap::new();
        sign(&key(), &future, &mut md);
        assert_eq!(verify(&md).unwrap_err().to_string(), "Invalid timestamp");
    }
}
