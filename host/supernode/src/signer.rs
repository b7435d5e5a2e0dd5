//! Signing Fleet requests as Flower 1.20 SuperNodes do.
//!
//! Every request carries the node's public key (PEM), an ISO-8601 timestamp and a DER
//! ECDSA-SHA256 signature of that timestamp. The SuperLink binds the key to the node at
//! CreateNode. A fresh P-384 key is made per start, as Flower does by default.

use ecdsa::signature::hazmat::PrehashSigner;
use p384::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The node's key pair and a tonic interceptor that signs with it.
#[derive(Clone)]
pub struct Signer {
    key: p384::ecdsa::SigningKey,
    public_pem: String,
}

impl Signer {
    /// A signer with a fresh random P-384 key.
    pub fn fresh() -> Self {
        let key = p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let public_pem =
            key.verifying_key().to_public_key_pem(LineEnding::LF).expect("a P-384 public key always encodes as PEM");
        Self { key, public_pem }
    }

    /// The public key as sent in `flwr-public-key-bin`.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
}

impl Interceptor for Signer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
        let signature: p384::ecdsa::Signature = self
            .key
            .sign_prehash(&Sha256::digest(timestamp.as_bytes()))
            .map_err(|e| Status::internal(format!("cannot sign the request: {e}")))?;
        let md = req.metadata_mut();
        md.insert_bin("flwr-public-key-bin", BinaryMetadataValue::from_bytes(self.public_pem.as_bytes()));
        let ts = MetadataValue::try_from(timestamp.as_str()).map_err(|e| Status::internal(e.to_string()))?;
        md.insert("flwr-timestamp", ts);
        md.insert_bin("flwr-signature-bin", BinaryMetadataValue::from_bytes(signature.to_der().as_bytes()));
        Ok(req)
    }
}
