//! SuperNode authentication on the Fleet API.
//!
//! Flower 1.20 SuperNodes sign every Fleet request, even without TLS: metadata
//! `flwr-public-key-bin` (the node's EC public key, PEM), `flwr-timestamp` (ISO-8601)
//! and `flwr-signature-bin` (DER ECDSA-SHA256 over the timestamp). The SuperLink checks
//! the signature and the timestamp window, binds the key to the node at CreateNode, and
//! afterwards accepts a request only if its `node.node_id` is the key's node.
//!
//! With `--auth-list-public-keys` the SuperLink also keeps an [`Allowlist`]: only the
//! listed keys may call Fleet (`UNAUTHENTICATED "Public key not recognized"`, checked
//! before the signature). Keys are compared by their curve point, not by PEM text.
//!
//! There is no nonce, as in Flower: a captured (key, timestamp, signature) triple can be
//! replayed while its timestamp is inside the window, but only for the key's own node.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use p384::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
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

/// Checks a request's signature metadata (and, with an allowlist, that the key is
/// listed); returns the caller's public key (PEM).
pub fn verify(metadata: &MetadataMap, allowlist: Option<&Allowlist>) -> Result<Vec<u8>, Error> {
    let missing = || Error::Unauthenticated("Missing authentication metadata".into());
    let key = metadata.get_bin(PUBLIC_KEY_HEADER).ok_or_else(missing)?.to_bytes().map_err(|_| missing())?;
    let timestamp = metadata.get(TIMESTAMP_HEADER).ok_or_else(missing)?.to_str().map_err(|_| missing())?;
    let signature = metadata.get_bin(SIGNATURE_HEADER).ok_or_else(missing)?.to_bytes().map_err(|_| missing())?;
    let public =
        std::str::from_utf8(&key).ok().and_then(|pem| p384::ecdsa::VerifyingKey::from_public_key_pem(pem).ok());
    if let Some(allowlist) = allowlist {
        if !public.as_ref().is_some_and(|public| allowlist.contains(public)) {
            return Err(Error::Unauthenticated("Public key not recognized".into()));
        }
    }
    if !public.is_some_and(|public| signature_is_valid(&public, timestamp.as_bytes(), &signature)) {
        return Err(Error::Unauthenticated("Invalid signature".into()));
    }
    let signed_at = parse_iso(timestamp).ok_or_else(|| Error::Unauthenticated("Invalid timestamp".into()))?;
    let age = (chrono::Utc::now() - signed_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    if !(-MAX_FUTURE_SKEW < age && age < MAX_AGE) {
        return Err(Error::Unauthenticated("Invalid timestamp".into()));
    }
    Ok(key.to_vec())
}

/// ECDSA P-384 over SHA-256 of `message`, DER signature (how Flower signs the timestamp).
/// Checked with ring: this runs on every Fleet request.
fn signature_is_valid(key: &p384::ecdsa::VerifyingKey, message: &[u8], der: &[u8]) -> bool {
    use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA256_ASN1};
    let point = key.to_encoded_point(false);
    UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, point.as_bytes()).verify(message, der).is_ok()
}

/// The tonic interceptor for the Fleet service: verifies the signature (and the
/// allowlist, if any) and stores the key in the request extensions for the handlers'
/// node check.
#[derive(Debug, Clone, Default)]
pub struct FleetAuth {
    allowlist: Option<Arc<Allowlist>>,
}

impl FleetAuth {
    /// Checks signatures; with `Some` allowlist, only its keys may call Fleet.
    pub fn new(allowlist: Option<Allowlist>) -> Self {
        Self { allowlist: allowlist.map(Arc::new) }
    }
}

impl Interceptor for FleetAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let key = verify(req.metadata(), self.allowlist.as_deref())?;
        req.extensions_mut().insert(NodeKey(key));
        Ok(req)
    }
}

/// [`FleetAuth`] without an allowlist, as a plain function.
pub fn interceptor(req: Request<()>) -> Result<Request<()>, Status> {
    FleetAuth::default().call(req)
}

/// The SuperNode public keys allowed on Fleet (`--auth-list-public-keys`), kept as
/// uncompressed SEC1 points so that any PEM encoding of a listed key matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(HashSet<Vec<u8>>);

impl Allowlist {
    /// Lists `key`.
    pub fn insert(&mut self, key: &p384::ecdsa::VerifyingKey) {
        self.0.insert(key.to_encoded_point(false).as_bytes().to_vec());
    }

    /// Whether `key` is listed.
    pub fn contains(&self, key: &p384::ecdsa::VerifyingKey) -> bool {
        self.0.contains(key.to_encoded_point(false).as_bytes())
    }

    /// How many keys are listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads Flower's CSV of OpenSSH public keys: every non-empty cell is a key
    /// (`ecdsa-sha2-nistp384 AAAA… [comment]`); one key per line is the usual layout.
    pub fn from_csv_file(path: &Path) -> Result<Self, KeyFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| KeyFileError::Read { path: path.to_path_buf(), error })?;
        let mut list = Self::default();
        for (index, line) in text.lines().enumerate() {
            for cell in line.split(',') {
                let cell = cell.trim().trim_matches('"').trim();
                if cell.is_empty() {
                    continue;
                }
                let key = parse_openssh_public_key(cell).map_err(|problem| KeyFileError::Invalid {
                    path: path.to_path_buf(),
                    line: index + 1,
                    problem,
                })?;
                list.insert(&key);
            }
        }
        if list.is_empty() {
            return Err(KeyFileError::Empty { path: path.to_path_buf() });
        }
        Ok(list)
    }
}

impl FromIterator<p384::ecdsa::VerifyingKey> for Allowlist {
    fn from_iter<I: IntoIterator<Item = p384::ecdsa::VerifyingKey>>(iter: I) -> Self {
        let mut list = Self::default();
        for key in iter {
            list.insert(&key);
        }
        list
    }
}

/// A public-key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a `source`: it is said once).
        error: std::io::Error,
    },
    /// A cell is not a usable key.
    #[error("{path}, line {line}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The file lists no key at all.
    #[error("{path}: no public key listed")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Parses an OpenSSH public key line (`ecdsa-sha2-nistp384 AAAA… [comment]`), as made
/// by `ssh-keygen -t ecdsa -b 384`. Only P-384 keys are accepted: Sepal signs and
/// verifies with P-384, as Flower's SuperNodes do by default.
pub fn parse_openssh_public_key(text: &str) -> Result<p384::ecdsa::VerifyingKey, String> {
    let key = ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| format!("not an OpenSSH public key ({e})"))?;
    match key.key_data() {
        ssh_key::public::KeyData::Ecdsa(ecdsa @ ssh_key::public::EcdsaPublicKey::NistP384(_)) => {
            p384::ecdsa::VerifyingKey::try_from(ecdsa).map_err(|e| format!("invalid P-384 point ({e})"))
        }
        _ => Err(format!("a {} key: only ecdsa-sha2-nistp384 keys are supported", key.algorithm())),
    }
}

/// The PEM SubjectPublicKeyInfo form of `key`, as sent in `flwr-public-key-bin`.
pub fn public_key_pem(key: &p384::ecdsa::VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).expect("a P-384 public key always encodes as PEM")
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
    use sha2::{Digest, Sha256};
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
        assert!(verify(&md, None).is_ok());
    }

    #[test]
    fn missing_tampered_and_stale_requests_are_refused() {
        assert_eq!(verify(&MetadataMap::new(), None).unwrap_err().to_string(), "Missing authentication metadata");

        let mut md = MetadataMap::new();
        sign(&key(), &crate::clock::now_iso(), &mut md);
        md.insert(TIMESTAMP_HEADER, MetadataValue::try_from(crate::clock::now_iso() + " ").unwrap());
        assert_eq!(verify(&md, None).unwrap_err().to_string(), "Invalid signature");

        let old = crate::clock::iso(chrono::Utc::now() - chrono::Duration::seconds(400));
        let mut md = MetadataMap::new();
        sign(&key(), &old, &mut md);
        assert_eq!(verify(&md, None).unwrap_err().to_string(), "Invalid timestamp");

        let future = crate::clock::iso(chrono::Utc::now() + chrono::Duration::seconds(10));
        let mut md = MetadataMap::new();
        sign(&key(), &future, &mut md);
        assert_eq!(verify(&md, None).unwrap_err().to_string(), "Invalid timestamp");
    }
}
