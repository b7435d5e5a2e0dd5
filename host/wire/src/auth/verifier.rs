//! The SuperLink's end: checking a Fleet request's signature, its timestamp window and,
//! with an allow-list, its key.

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use chrono::{DateTime, Utc};

use super::cache::{Triple, VerifiedCache};
use super::{Allowlist, PUBLIC_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::keys::NodePublicKey;
use crate::time::parse_iso;

/// A timestamp may be this far in the future (clock skew), in seconds.
const MAX_FUTURE_SKEW: f64 = 5.0;
/// A timestamp may be this old, in seconds (Flower: 300 s plus 5 s skew).
const MAX_AGE: f64 = 305.0;

/// Why a request was not authenticated; the texts are Flower's, which its SuperNodes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A signature header is missing or unreadable.
    #[error("Missing authentication metadata")]
    Missing,
    /// The key is not on the allow-list.
    #[error("Public key not recognized")]
    NotRecognized,
    /// The signature does not verify with the key.
    #[error("Invalid signature")]
    InvalidSignature,
    /// The key is not an EC key on a curve Sepal verifies (Flower would accept any curve).
    #[error("Unsupported public key: only ECDSA P-256 and P-384 node keys are accepted")]
    UnsupportedKey,
    /// The timestamp does not parse or is outside the window.
    #[error("Invalid timestamp")]
    InvalidTimestamp,
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        Status::unauthenticated(e.to_string())
    }
}

/// The verified public key (PEM) of the calling node, left in the request's extensions.
#[derive(Debug, Clone)]
pub struct NodeKey(pub Vec<u8>);

/// Checks a request's signature metadata (and, with an allow-list, that the key is
/// listed); returns the caller's public key (PEM).
pub fn verify(metadata: &MetadataMap, allowlist: Option<&Allowlist>) -> Result<Vec<u8>, AuthError> {
    let (key, timestamp, signature) = headers(metadata)?;
    check(&key, timestamp, &signature, allowlist, Utc::now())?;
    Ok(key)
}

/// [`verify`], remembering the triples that verified in `cache`: a triple seen before is
/// accepted while its timestamp is inside the window, without checking the signature again.
pub fn verify_cached(
    metadata: &MetadataMap,
    allowlist: Option<&Allowlist>,
    cache: &VerifiedCache,
) -> Result<Vec<u8>, AuthError> {
    let (key, timestamp, signature) = headers(metadata)?;
    let triple = Triple::of(&key, timestamp, &signature);
    let now = Utc::now();
    if let Some(signed_at) = cache.signed_at(&triple) {
        return match in_window(signed_at, now) {
            true => Ok(key),
            false => Err(AuthError::InvalidTimestamp),
        };
    }
    let signed_at = check(&key, timestamp, &signature, allowlist, now)?;
    cache.insert(triple, signed_at, now - chrono::Duration::milliseconds((MAX_AGE * 1000.0) as i64));
    Ok(key)
}

/// The three headers: the key (PEM), the timestamp, the signature.
fn headers(metadata: &MetadataMap) -> Result<(Vec<u8>, &str, Vec<u8>), AuthError> {
    let key = metadata.get_bin(PUBLIC_KEY_HEADER).and_then(|v| v.to_bytes().ok()).ok_or(AuthError::Missing)?;
    let timestamp = metadata.get(TIMESTAMP_HEADER).and_then(|v| v.to_str().ok()).ok_or(AuthError::Missing)?;
    let signature = metadata.get_bin(SIGNATURE_HEADER).and_then(|v| v.to_bytes().ok()).ok_or(AuthError::Missing)?;
    Ok((key.to_vec(), timestamp, signature.to_vec()))
}

/// Flower's checks, in Flower's order: the allow-list, the signature, the timestamp's
/// window. When the triple passes, the time it was signed.
fn check(
    key: &[u8],
    timestamp: &str,
    signature: &[u8],
    allowlist: Option<&Allowlist>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, AuthError> {
    let public = NodePublicKey::from_pem(key);
    if let Some(allowlist) = allowlist {
        if !public.as_ref().is_some_and(|public| allowlist.contains(public)) {
            return Err(AuthError::NotRecognized);
        }
    }
    let Some(public) = public else {
        return Err(AuthError::UnsupportedKey);
    };
    if !public.verifies(timestamp.as_bytes(), signature) {
        return Err(AuthError::InvalidSignature);
    }
    let signed_at = parse_iso(timestamp).ok_or(AuthError::InvalidTimestamp)?;
    if !in_window(signed_at, now) {
        return Err(AuthError::InvalidTimestamp);
    }
    Ok(signed_at)
}

/// Whether a request signed at `signed_at` is inside the window at `now`.
fn in_window(signed_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let age = (now - signed_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    -MAX_FUTURE_SKEW < age && age < MAX_AGE
}

/// The tonic interceptor for the Fleet service: verifies the signature (and the
/// allow-list, if any) and stores the caller's [`NodeKey`] in the request extensions.
/// Triples that verified are remembered ([`verify_cached`]).
#[derive(Debug, Clone, Default)]
pub struct FleetAuth {
    allowlist: Option<Arc<Allowlist>>,
    verified: Arc<VerifiedCache>,
}

impl FleetAuth {
    /// Checks signatures; with `Some` allow-list, only its keys may call Fleet.
    pub fn new(allowlist: Option<Allowlist>) -> Self {
        Self { allowlist: allowlist.map(Arc::new), verified: Arc::default() }
    }

    /// The triples remembered so far.
    pub fn verified(&self) -> &VerifiedCache {
        &self.verified
    }
}

impl Interceptor for FleetAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let key = verify_cached(req.metadata(), self.allowlist.as_deref(), &self.verified)?;
        req.extensions_mut().insert(NodeKey(key));
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Signer;
    use crate::time::{iso, now_iso};
    use tonic::metadata::MetadataValue;

    fn signed(signer: &Signer, timestamp: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        signer.sign(timestamp, &mut md).unwrap();
        md
    }

    #[test]
    fn a_fresh_signature_is_accepted() {
        let signer = Signer::fresh();
        let key = verify(&signed(&signer, &now_iso()), None).unwrap();
        assert_eq!(key, signer.public_pem().as_bytes());
    }

    #[test]
    fn missing_tampered_and_stale_requests_are_refused() {
        assert_eq!(verify(&MetadataMap::new(), None), Err(AuthError::Missing));
        let signer = Signer::fresh();

        let mut md = signed(&signer, &now_iso());
        md.insert(TIMESTAMP_HEADER, MetadataValue::try_from(now_iso() + " ").unwrap());
        assert_eq!(verify(&md, None), Err(AuthError::InvalidSignature));

        let old = iso(chrono::Utc::now() - chrono::Duration::seconds(400));
        assert_eq!(verify(&signed(&signer, &old), None), Err(AuthError::InvalidTimestamp));
        let future = iso(chrono::Utc::now() + chrono::Duration::seconds(10));
        assert_eq!(verify(&signed(&signer, &future), None), Err(AuthError::InvalidTimestamp));
    }

    #[test]
    fn a_verified_triple_is_accepted_again_only_inside_its_window() {
        let (signer, cache) = (Signer::fresh(), VerifiedCache::default());
        let md = signed(&signer, &now_iso());
        assert!(verify_cached(&md, None, &cache).is_ok());
        assert_eq!(cache.len(), 1);
        assert!(verify_cached(&md, None, &cache).is_ok(), "seen before");
        assert_eq!(cache.len(), 1);

        // A tampered copy is another triple: checked, refused, not remembered.
        let mut tampered = md.clone();
        tampered.insert(TIMESTAMP_HEADER, MetadataValue::try_from(now_iso()).unwrap());
        assert_eq!(verify_cached(&tampered, None, &cache), Err(AuthError::InvalidSignature));
        assert_eq!(cache.len(), 1);

        // A remembered triple that has left the window is refused.
        let (signer, cache) = (Signer::fresh(), VerifiedCache::default());
        let old = chrono::Utc::now() - chrono::Duration::seconds(400);
        let md = signed(&signer, &iso(old));
        let triple = Triple::of(signer.public_pem().as_bytes(), &iso(old), &signature_of(&md));
        cache.insert(triple, old, old - chrono::Duration::seconds(1));
        assert_eq!(verify_cached(&md, None, &cache), Err(AuthError::InvalidTimestamp));
    }

    fn signature_of(md: &MetadataMap) -> Vec<u8> {
        md.get_bin(SIGNATURE_HEADER).unwrap().to_bytes().unwrap().to_vec()
    }

    #[test]
    fn an_allowlist_admits_only_its_keys() {
        let (listed, other) = (Signer::fresh(), Signer::fresh());
        let list: Allowlist = [NodePublicKey::from_pem(listed.public_pem().as_bytes()).unwrap()].into_iter().collect();
        assert!(verify(&signed(&listed, &now_iso()), Some(&list)).is_ok());
        assert_eq!(verify(&signed(&other, &now_iso()), Some(&list)), Err(AuthError::NotRecognized));
    }
}
