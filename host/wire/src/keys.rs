//! SuperNode keys: the PEM a node sends with each request, and the OpenSSH files that name
//! a node's key pair (`--auth-supernode-private-key/-public-key`) and the keys a SuperLink
//! allows (`--auth-list-public-keys`), as `ssh-keygen -t ecdsa` writes them.
//!
//! Flower accepts any elliptic-curve key. Sepal accepts the two a SuperNode is made with in
//! practice: P-384 (Flower's own default) and P-256 (`ssh-keygen -t ecdsa`'s default).
//! P-521 is refused by name (the signature library Sepal verifies with has no P-521).

use std::path::{Path, PathBuf};

/// An elliptic curve a node key may be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (`ecdsa-sha2-nistp256`).
    P256,
    /// NIST P-384 (`ecdsa-sha2-nistp384`).
    P384,
}

/// A node's public key: its curve and its uncompressed SEC1 point.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodePublicKey {
    /// The curve.
    pub curve: Curve,
    /// The point, uncompressed (`04 || x || y`).
    pub point: Vec<u8>,
}

impl NodePublicKey {
    /// Reads the PEM SubjectPublicKeyInfo a node sends in `flwr-public-key-bin`.
    pub fn from_pem(pem: &[u8]) -> Option<Self> {
        use p384::pkcs8::DecodePublicKey;
        let pem = std::str::from_utf8(pem).ok()?;
        if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Some(NodePublicKey { curve: Curve::P384, point: key.to_encoded_point(false).as_bytes().to_vec() });
        }
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).ok()?;
        Some(NodePublicKey { curve: Curve::P256, point: key.to_encoded_point(false).as_bytes().to_vec() })
    }

    /// Whether `signature` (DER) is this key's ECDSA-SHA256 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA256_ASN1};
        let algorithm = match self.curve {
            Curve::P256 => &ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &ECDSA_P384_SHA256_ASN1,
        };
        UnparsedPublicKey::new(algorithm, &self.point).verify(message, signature).is_ok()
    }
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
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
    /// The file (or one line of a list) is not a usable key.
    #[error("{flag} {path}{}: {problem}", .line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The 1-based line, in a list of keys.
        line: Option<usize>,
        /// What is wrong.
        problem: String,
    },
    /// A list of keys lists none.
    #[error("{flag} {path}: no public key listed")]
    Empty {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A private and a public key file that are not one key pair.
    #[error("{public} is not the public key of {private}")]
    Mismatch {
        /// The private key file.
        private: PathBuf,
        /// The public key file.
        public: PathBuf,
    },
}

/// Reads a key file as text; `flag` names it in errors.
pub(crate) fn read_text(flag: &'static str, path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|error| KeyFileError::Read { flag, path: path.to_path_buf(), error })
}

/// What is said of a key of another kind.
fn unsupported(algorithm: impl std::fmt::Display) -> String {
    format!("a {algorithm} key: only ecdsa-sha2-nistp256 and ecdsa-sha2-nistp384 keys are supported")
}

/// Parses an OpenSSH public key line (`ecdsa-sha2-nistp384 AAAA… [comment]`).
pub fn parse_openssh_public_key(text: &str) -> Result<NodePublicKey, String> {
    use ssh_key::public::{EcdsaPublicKey, KeyData};
    let key = ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| format!("not an OpenSSH public key ({e})"))?;
    match key.key_data() {
        KeyData::Ecdsa(ecdsa @ EcdsaPublicKey::NistP384(_)) => {
            let key = p384::ecdsa::VerifyingKey::try_from(ecdsa).map_err(|e| format!("invalid P-384 point ({e})"))?;
            Ok(NodePublicKey { curve: Curve::P384, point: key.to_encoded_point(false).as_bytes().to_vec() })
        }
        KeyData::Ecdsa(ecdsa @ EcdsaPublicKey::NistP256(_)) => {
            let key = p256::ecdsa::VerifyingKey::try_from(ecdsa).map_err(|e| format!("invalid P-256 point ({e})"))?;
            Ok(NodePublicKey { curve: Curve::P256, point: key.to_encoded_point(false).as_bytes().to_vec() })
        }
        _ => Err(unsupported(key.algorithm())),
    }
}

/// A node's signing key.
#[derive(Clone)]
pub enum NodeSigningKey {
    /// On P-256.
    P256(p256::ecdsa::SigningKey),
    /// On P-384.
    P384(p384::ecdsa::SigningKey),
}

impl NodeSigningKey {
    /// Its public key.
    pub fn public(&self) -> NodePublicKey {
        match self {
            NodeSigningKey::P256(k) => NodePublicKey {
                curve: Curve::P256,
                point: k.verifying_key().to_encoded_point(false).as_bytes().to_vec(),
            },
            NodeSigningKey::P384(k) => NodePublicKey {
                curve: Curve::P384,
                point: k.verifying_key().to_encoded_point(false).as_bytes().to_vec(),
            },
        }
    }

    /// The PEM SubjectPublicKeyInfo of its public key, as sent in `flwr-public-key-bin`.
    pub fn public_pem(&self) -> String {
        use p384::pkcs8::{EncodePublicKey, LineEnding};
        let pem = match self {
            NodeSigningKey::P256(k) => k.verifying_key().to_public_key_pem(LineEnding::LF),
            NodeSigningKey::P384(k) => k.verifying_key().to_public_key_pem(LineEnding::LF),
        };
        pem.expect("an EC public key always encodes as PEM")
    }

    /// The DER ECDSA-SHA256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        use ecdsa::signature::hazmat::PrehashSigner;
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(message);
        match self {
            NodeSigningKey::P256(k) => {
                let signature: p256::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| e.to_string())?;
                Ok(signature.to_der().as_bytes().to_vec())
            }
            NodeSigningKey::P384(k) => {
                let signature: p384::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| e.to_string())?;
                Ok(signature.to_der().as_bytes().to_vec())
            }
        }
    }
}

/// Parses an unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`)
/// holding a P-256 or P-384 ECDSA key.
pub fn parse_openssh_private_key(text: &str) -> Result<NodeSigningKey, String> {
    use ssh_key::private::{EcdsaKeypair, KeypairData};
    let key =
        ssh_key::PrivateKey::from_openssh(text.trim()).map_err(|e| format!("not an OpenSSH private key ({e})"))?;
    if key.is_encrypted() {
        return Err("the key is encrypted: make it without a passphrase (ssh-keygen -N \"\")".into());
    }
    let signing = match key.key_data() {
        KeypairData::Ecdsa(EcdsaKeypair::NistP384 { private, .. }) => NodeSigningKey::P384(
            p384::ecdsa::SigningKey::from_slice(private.as_slice()).map_err(|e| format!("invalid P-384 key ({e})"))?,
        ),
        KeypairData::Ecdsa(EcdsaKeypair::NistP256 { private, .. }) => NodeSigningKey::P256(
            p256::ecdsa::SigningKey::from_slice(private.as_slice()).map_err(|e| format!("invalid P-256 key ({e})"))?,
        ),
        _ => return Err(unsupported(key.algorithm())),
    };
    let embedded = key.public_key().key_data().ecdsa().map(|e| e.as_sec1_bytes().to_vec());
    if embedded.as_deref() != Some(signing.public().point.as_slice()) {
        return Err("the embedded public key does not match the private key".into());
    }
    Ok(signing)
}

/// `(private key file text, public key line)` for `key`, as `ssh-keygen` writes them (for
/// tests and tools that make node keys).
pub fn encode_openssh(key: &NodeSigningKey, comment: &str) -> (String, String) {
    use ssh_key::private::EcdsaKeypair;
    let keypair = match key {
        NodeSigningKey::P384(k) => {
            let secret = p384::SecretKey::from(k.as_nonzero_scalar());
            EcdsaKeypair::NistP384 { public: secret.public_key().into(), private: secret.into() }
        }
        NodeSigningKey::P256(k) => {
            let secret = p256::SecretKey::from(k.as_nonzero_scalar());
            EcdsaKeypair::NistP256 { public: secret.public_key().into(), private: secret.into() }
        }
    };
    let mut private = ssh_key::PrivateKey::from(keypair);
    private.set_comment(comment);
    let private_text = private.to_openssh(ssh_key::LineEnding::LF).expect("encodes").to_string();
    let public_text = private.public_key().to_openssh().expect("encodes");
    (private_text, public_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> [NodeSigningKey; 2] {
        [
            NodeSigningKey::P384(p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)),
            NodeSigningKey::P256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)),
        ]
    }

    #[test]
    fn openssh_key_pairs_round_trip_on_both_curves() {
        for key in keys() {
            let (private, public) = encode_openssh(&key, "node@test");
            assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
            assert_eq!(parse_openssh_private_key(&private).unwrap().public(), key.public());
            assert_eq!(parse_openssh_public_key(&public).unwrap(), key.public());
            // Without a comment, with a trailing newline.
            let bare = public.rsplit_once(' ').unwrap().0.to_string() + "\n";
            assert_eq!(parse_openssh_public_key(&bare).unwrap(), key.public());
        }
    }

    #[test]
    fn a_signature_verifies_with_the_pem_the_node_sends() {
        for key in keys() {
            let public = NodePublicKey::from_pem(key.public_pem().as_bytes()).unwrap();
            assert_eq!(public, key.public());
            let signature = key.sign(b"2026-12-05T10:00:00.000000+00:00").unwrap();
            assert!(public.verifies(b"2026-12-05T10:00:00.000000+00:00", &signature));
            assert!(!public.verifies(b"2026-12-05T10:00:01.000000+00:00", &signature));
        }
    }

    #[test]
    fn other_key_types_are_refused_by_name() {
        let ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x";
        let err = parse_openssh_public_key(ed25519).unwrap_err();
        assert!(err.contains("ssh-ed25519") && err.contains("nistp256 and ecdsa-sha2-nistp384"), "{err}");
    }

    #[test]
    fn errors_say_where() {
        let e = KeyFileError::Invalid { flag: "--x", path: "/k.csv".into(), line: Some(2), problem: "bad".into() };
        assert_eq!(e.to_string(), "--x /k.csv, line 2: bad");
        let e = KeyFileError::Invalid { flag: "--x", path: "/k".into(), line: None, problem: "bad".into() };
        assert_eq!(e.to_string(), "--x /k: bad");
    }
}
