//! The SuperNode's end: signing every Fleet request as Flower 1.20 SuperNodes do.
//!
//! A fresh P-384 key is made per start, as Flower does by default, unless the node's key
//! pair is given (`--auth-supernode-private-key/-public-key`), which a SuperLink with an
//! allow-list needs.
//!
//! Unlike Flower's SuperNode, which signs a fresh timestamp for every request, a Sepal
//! SuperNode signs one every [`RESIGN_AFTER`] and sends it with every request until then:
//! signing is ECDSA P-384 work on both ends, and the SuperLink (Sepal's or Flower's)
//! accepts a timestamp for 300 s anyway, so the window anyone who captures a request could
//! replay it in is the same (see `docs/security.md`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::{PUBLIC_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::keys::{parse_openssh_private_key, parse_openssh_public_key, read_text, KeyFileError, NodeSigningKey};

const PRIVATE_FLAG: &str = "--auth-supernode-private-key";
const PUBLIC_FLAG: &str = "--auth-supernode-public-key";

/// How long one signed timestamp is sent with every request: far inside the 300 s a
/// SuperLink accepts it for, so clocks a few seconds apart do not matter.
pub const RESIGN_AFTER: Duration = Duration::from_secs(30);

/// The node's key pair, and a tonic interceptor that signs each request with it. Clones
/// share the signed timestamp.
#[derive(Clone)]
pub struct Signer {
    key: NodeSigningKey,
    public_pem: String,
    current: Arc<Mutex<Option<Signed>>>,
}

/// A timestamp and its signature, when they were made, and how long they are sent.
struct Signed {
    made: Instant,
    lifetime: Duration,
    timestamp: String,
    signature: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("public_pem", &self.public_pem).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with a fresh random P-384 key (Flower's default curve).
    pub fn fresh() -> Self {
        Self::from_key(NodeSigningKey::P384(p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)))
    }

    /// A signer with the given key.
    pub fn from_key(key: NodeSigningKey) -> Self {
        let public_pem = key.public_pem();
        Self { key, public_pem, current: Arc::default() }
    }

    /// A signer with the node's key pair from OpenSSH files (unencrypted private key,
    /// `ecdsa-sha2-nistp256` or `-nistp384` public key); the two must belong together.
    pub fn from_openssh(private_path: &Path, public_path: &Path) -> Result<Self, KeyFileError> {
        let invalid =
            |flag, path: &Path, problem| KeyFileError::Invalid { flag, path: path.to_path_buf(), line: None, problem };
        let key = parse_openssh_private_key(&read_text(PRIVATE_FLAG, private_path)?)
            .map_err(|problem| invalid(PRIVATE_FLAG, private_path, problem))?;
        let public = parse_openssh_public_key(&read_text(PUBLIC_FLAG, public_path)?)
            .map_err(|problem| invalid(PUBLIC_FLAG, public_path, problem))?;
        if key.public() != public {
            return Err(KeyFileError::Mismatch {
                private: private_path.to_path_buf(),
                public: public_path.to_path_buf(),
            });
        }
        Ok(Self::from_key(key))
    }

    /// The public key as sent in `flwr-public-key-bin`.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Adds the three signature headers for `timestamp` (ISO-8601), freshly signed, to `md`.
    pub fn sign(&self, timestamp: &str, md: &mut tonic::metadata::MetadataMap) -> Result<(), Status> {
        let signature = self.signature(timestamp)?;
        self.add_headers(timestamp, &signature, md)
    }

    fn signature(&self, timestamp: &str) -> Result<Vec<u8>, Status> {
        self.key.sign(timestamp.as_bytes()).map_err(|e| Status::internal(format!("cannot sign the request: {e}")))
    }

    fn add_headers(
        &self,
        timestamp: &str,
        signature: &[u8],
        md: &mut tonic::metadata::MetadataMap,
    ) -> Result<(), Status> {
        let ts = MetadataValue::try_from(timestamp).map_err(|e| Status::internal(e.to_string()))?;
        md.insert_bin(PUBLIC_KEY_HEADER, BinaryMetadataValue::from_bytes(self.public_pem.as_bytes()));
        md.insert(TIMESTAMP_HEADER, ts);
        md.insert_bin(SIGNATURE_HEADER, BinaryMetadataValue::from_bytes(signature));
        Ok(())
    }

    /// Adds the current signed timestamp to `md`, signing a new one when the last is
    /// [`RESIGN_AFTER`] old.
    pub fn sign_current(&self, md: &mut tonic::metadata::MetadataMap) -> Result<(), Status> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|signed| signed.made.elapsed() >= signed.lifetime) {
            // The first timestamp is sent for a random part of the period: nodes started
            // together (a fleet coming back after a SuperLink restart) would otherwise re-sign
            // together every period and the SuperLink would verify them all in one burst.
            let lifetime = match *current {
                None => RESIGN_AFTER.mul_f64(rand::random::<f64>()).max(Duration::from_secs(1)),
                Some(_) => RESIGN_AFTER,
            };
            let timestamp = crate::time::now_iso();
            let signature = self.signature(&timestamp)?;
            *current = Some(Signed { made: Instant::now(), lifetime, timestamp, signature });
        }
        let signed = current.as_ref().expect("just made");
        self.add_headers(&signed.timestamp, &signed.signature, md)
    }
}

impl Interceptor for Signer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        self.sign_current(req.metadata_mut())?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::encode_openssh;

    fn key() -> NodeSigningKey {
        NodeSigningKey::P384(p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    #[test]
    fn from_openssh_checks_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a_private, a_public) = encode_openssh(&key(), "a");
        let (_, b_public) = encode_openssh(&key(), "b");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (a_priv, a_pub, b_pub) = (write("a", &a_private), write("a.pub", &a_public), write("b.pub", &b_public));
        let signer = Signer::from_openssh(&a_priv, &a_pub).unwrap();
        let expected = parse_openssh_public_key(&a_public).unwrap();
        assert_eq!(crate::keys::NodePublicKey::from_pem(signer.public_pem().as_bytes()), Some(expected));

        let err = Signer::from_openssh(&a_priv, &b_pub).unwrap_err().to_string();
        assert!(err.contains("is not the public key of"), "{err}");
        let err = Signer::from_openssh(&a_pub, &a_pub).unwrap_err().to_string();
        assert!(err.contains(PRIVATE_FLAG) && err.contains("not an OpenSSH private key"), "{err}");
        let err = Signer::from_openssh(&a_priv, &a_priv).unwrap_err().to_string();
        assert!(err.contains(PUBLIC_FLAG) && err.contains("not an OpenSSH public key"), "{err}");
        let err = Signer::from_openssh(&dir.path().join("missing"), &a_pub).unwrap_err().to_string();
        assert!(err.starts_with("cannot read --auth-supernode-private-key"), "{err}");
    }

    #[test]
    fn one_signed_timestamp_serves_many_requests_and_clones() {
        let signer = Signer::fresh();
        let (mut a, mut b) = (tonic::metadata::MetadataMap::new(), tonic::metadata::MetadataMap::new());
        signer.sign_current(&mut a).unwrap();
        signer.clone().sign_current(&mut b).unwrap();
        assert_eq!(a.get(TIMESTAMP_HEADER), b.get(TIMESTAMP_HEADER));
        assert_eq!(a.get_bin(SIGNATURE_HEADER), b.get_bin(SIGNATURE_HEADER));
        assert!(crate::auth::verify(&a, None).is_ok(), "what is reused still verifies");
    }

    #[test]
    fn nodes_started_together_re_sign_at_different_times() {
        let lifetimes: Vec<Duration> = (0..16)
            .map(|_| {
                let signer = Signer::fresh();
                signer.sign_current(&mut tonic::metadata::MetadataMap::new()).unwrap();
                let current = signer.current.lock().unwrap();
                current.as_ref().unwrap().lifetime
            })
            .collect();
        assert!(lifetimes.iter().all(|l| (Duration::from_secs(1)..=RESIGN_AFTER).contains(l)), "{lifetimes:?}");
        let spread = lifetimes.iter().max().unwrap().saturating_sub(*lifetimes.iter().min().unwrap());
        assert!(spread > RESIGN_AFTER / 4, "first lifetimes spread over the period: {lifetimes:?}");
    }

    /// Keys made by the real `ssh-keygen` (P-256, its default, and P-384), when it is
    /// installed (skipped otherwise).
    #[test]
    fn reads_ssh_keygen_files() {
        for bits in ["256", "384"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("k");
            let made = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ecdsa", "-b", bits, "-N", "", "-C", "node@test", "-f"])
                .arg(&path)
                .status();
            if !made.is_ok_and(|status| status.success()) {
                eprintln!("ssh-keygen not available: skipped");
                return;
            }
            let signer = Signer::from_openssh(&path, &path.with_extension("pub")).unwrap();
            let mut md = tonic::metadata::MetadataMap::new();
            signer.sign_current(&mut md).unwrap();
            assert!(crate::auth::verify(&md, None).is_ok(), "a P-{bits} key's request verifies");
        }
    }
}
