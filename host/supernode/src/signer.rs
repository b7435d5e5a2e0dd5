//! Signing Fleet requests as Flower 1.20 SuperNodes do.
//!
//! Every request carries the node's public key (PEM), an ISO-8601 timestamp and a DER
//! ECDSA-SHA256 signature of that timestamp. The SuperLink binds the key to the node at
//! CreateNode. A fresh P-384 key is made per start, as Flower does by default, unless
//! the node's key pair is given (`--auth-supernode-private-key/-public-key`, OpenSSH
//! files as made by `ssh-keygen -t ecdsa -b 384 -N ""`), which a SuperLink with an
//! allowlist needs.

use std::path::{Path, PathBuf};

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

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("public_pem", &self.public_pem).finish_non_exhaustive()
    }
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("cannot read {flag} {path}: {error}")]
    Read {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a `source`: it is said once).
        error: std::io::Error,
    },
    /// The file is not a usable key.
    #[error("{flag} {path}: {problem}")]
    Invalid {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The two files are not one key pair.
    #[error("{public} is not the public key of {private}")]
    Mismatch {
        /// The private key file.
        private: PathBuf,
        /// The public key file.
        public: PathBuf,
    },
}

const PRIVATE_FLAG: &str = "--auth-supernode-private-key";
const PUBLIC_FLAG: &str = "--auth-supernode-public-key";

impl Signer {
    /// A signer with a fresh random P-384 key.
    pub fn fresh() -> Self {
        Self::from_key(p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// A signer with the given key.
    pub fn from_key(key: p384::ecdsa::SigningKey) -> Self {
        let public_pem =
            key.verifying_key().to_public_key_pem(LineEnding::LF).expect("a P-384 public key always encodes as PEM");
        Self { key, public_pem }
    }

    /// A signer with the node's key pair from OpenSSH files (unencrypted private key,
    /// `ecdsa-sha2-nistp384` public key); the two must belong together.
    pub fn from_openssh(private_path: &Path, public_path: &Path) -> Result<Self, KeyError> {
        let read = |flag, path: &Path| {
            std::fs::read_to_string(path).map_err(|error| KeyError::Read { flag, path: path.to_path_buf(), error })
        };
        let private_text = read(PRIVATE_FLAG, private_path)?;
        let public_text = read(PUBLIC_FLAG, public_path)?;
        let key = parse_openssh_private_key(&private_text).map_err(|problem| KeyError::Invalid {
            flag: PRIVATE_FLAG,
            path: private_path.to_path_buf(),
            problem,
        })?;
        let public = parse_openssh_public_key(&public_text).map_err(|problem| KeyError::Invalid {
            flag: PUBLIC_FLAG,
            path: public_path.to_path_buf(),
            problem,
        })?;
        if key.verifying_key() != &public {
            return Err(KeyError::Mismatch { private: private_path.to_path_buf(), public: public_path.to_path_buf() });
        }
        Ok(Self::from_key(key))
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

/// Parses an unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`)
/// holding a P-384 ECDSA key.
pub fn parse_openssh_private_key(text: &str) -> Result<p384::ecdsa::SigningKey, String> {
    let key =
        ssh_key::PrivateKey::from_openssh(text.trim()).map_err(|e| format!("not an OpenSSH private key ({e})"))?;
    if key.is_encrypted() {
        return Err("the key is encrypted: make it without a passphrase (ssh-keygen -N \"\")".into());
    }
    match key.key_data() {
        ssh_key::private::KeypairData::Ecdsa(ssh_key::private::EcdsaKeypair::NistP384 { public, private }) => {
            let key = p384::ecdsa::SigningKey::from_slice(private.as_slice())
                .map_err(|e| format!("invalid P-384 private key ({e})"))?;
            if key.verifying_key().to_encoded_point(false) != *public {
                return Err("the embedded public key does not match the private key".into());
            }
            Ok(key)
        }
        _ => Err(format!("a {} key: only ecdsa-sha2-nistp384 keys are supported", key.algorithm())),
    }
}

/// Parses an OpenSSH public key line (`ecdsa-sha2-nistp384 AAAA… [comment]`).
pub fn parse_openssh_public_key(text: &str) -> Result<p384::ecdsa::VerifyingKey, String> {
    let key = ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| format!("not an OpenSSH public key ({e})"))?;
    match key.key_data() {
        ssh_key::public::KeyData::Ecdsa(ecdsa @ ssh_key::public::EcdsaPublicKey::NistP384(_)) => {
            p384::ecdsa::VerifyingKey::try_from(ecdsa).map_err(|e| format!("invalid P-384 point ({e})"))
        }
        _ => Err(format!("a {} key: only ecdsa-sha2-nistp384 keys are supported", key.algorithm())),
    }
}

/// Test helpers: P-384 key pairs in OpenSSH format.
pub mod openssh {
    /// `(private key file text, public key line)` for `key`, as `ssh-keygen` writes them.
    pub fn encode(key: &p384::ecdsa::SigningKey, comment: &str) -> (String, String) {
        use p384::elliptic_curve::sec1::ToEncodedPoint;
        let secret = p384::SecretKey::from(key.as_nonzero_scalar());
        let keypair = ssh_key::private::EcdsaKeypair::NistP384 {
            public: secret.public_key().to_encoded_point(false),
            private: secret.into(),
        };
        let mut private = ssh_key::PrivateKey::from(keypair);
        private.set_comment(comment);
        let private_text = private.to_openssh(ssh_key::LineEnding::LF).expect("encodes").to_string();
        let public_text = private.public_key().to_openssh().expect("encodes");
        (private_text, public_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)
    }

    #[test]
    fn openssh_key_pair_round_trips() {
        let key = key();
        let (private, public) = openssh::encode(&key, "node@test");
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(public.starts_with("ecdsa-sha2-nistp384 AAAA"), "{public}");
        assert_eq!(parse_openssh_private_key(&private).unwrap(), key);
        assert_eq!(&parse_openssh_public_key(&public).unwrap(), key.verifying_key());
        // Without a comment, with a trailing newline.
        let bare = public.rsplit_once(' ').unwrap().0.to_string() + "\n";
        assert_eq!(&parse_openssh_public_key(&bare).unwrap(), key.verifying_key());
    }

    #[test]
    fn from_openssh_checks_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a_private, a_public) = openssh::encode(&key(), "a");
        let (_, b_public) = openssh::encode(&key(), "b");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (a_priv, a_pub, b_pub) = (write("a", &a_private), write("a.pub", &a_public), write("b.pub", &b_public));
        let signer = Signer::from_openssh(&a_priv, &a_pub).unwrap();
        let expected = parse_openssh_public_key(&a_public).unwrap();
        assert_eq!(signer.public_pem(), expected.to_public_key_pem(LineEnding::LF).unwrap());

        let err = Signer::from_openssh(&a_priv, &b_pub).unwrap_err().to_string();
        assert!(err.contains("is not the public key of"), "{err}");
        let err = Signer::from_openssh(&a_pub, &a_pub).unwrap_err().to_string();
        assert!(err.contains("--auth-supernode-private-key") && err.contains("not an OpenSSH private key"), "{err}");
        let err = Signer::from_openssh(&a_priv, &a_priv).unwrap_err().to_string();
        assert!(err.contains("--auth-supernode-public-key") && err.contains("not an OpenSSH public key"), "{err}");
        let err = Signer::from_openssh(&dir.path().join("missing"), &a_pub).unwrap_err().to_string();
        assert!(err.starts_with("cannot read --auth-supernode-private-key"), "{err}");
        let ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x";
        let err = parse_openssh_public_key(ed25519).unwrap_err();
        assert!(err.contains("only ecdsa-sha2-nistp384"), "{err}");
    }

    /// Keys made by the real `ssh-keygen`, when it is installed (skipped otherwise).
    #[test]
    fn reads_ssh_keygen_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", "node@test", "-f"])
            .arg(&path)
            .status();
        if !made.is_ok_and(|status| status.success()) {
            eprintln!("ssh-keygen not available: skipped");
            return;
        }
        let signer = Signer::from_openssh(&path, &path.with_extension("pub")).unwrap();
        assert!(signer.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
