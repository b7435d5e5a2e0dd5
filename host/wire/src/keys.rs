//! SuperNode keys in OpenSSH format, as `ssh-keygen -t ecdsa -b 384 -N ""` writes them:
//! the node's key pair (`--auth-supernode-private-key/-public-key`) and the keys a
//! SuperLink allows (`--auth-list-public-keys`). Only P-384 keys are accepted: Sepal signs
//! and verifies with P-384, as Flower's SuperNodes do by default.

use std::path::{Path, PathBuf};

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

/// The PEM SubjectPublicKeyInfo form of `key`, as sent in `flwr-public-key-bin`.
pub fn public_key_pem(key: &p384::ecdsa::VerifyingKey) -> String {
    use p384::pkcs8::{EncodePublicKey, LineEnding};
    key.to_public_key_pem(LineEnding::LF).expect("a P-384 public key always encodes as PEM")
}

/// `(private key file text, public key line)` for `key`, as `ssh-keygen` writes them (for
/// tests and tools that make node keys).
pub fn encode_openssh(key: &p384::ecdsa::SigningKey, comment: &str) -> (String, String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssh_key_pair_round_trips() {
        let key = p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let (private, public) = encode_openssh(&key, "node@test");
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(public.starts_with("ecdsa-sha2-nistp384 AAAA"), "{public}");
        assert_eq!(parse_openssh_private_key(&private).unwrap(), key);
        assert_eq!(&parse_openssh_public_key(&public).unwrap(), key.verifying_key());
        // Without a comment, with a trailing newline.
        let bare = public.rsplit_once(' ').unwrap().0.to_string() + "\n";
        assert_eq!(&parse_openssh_public_key(&bare).unwrap(), key.verifying_key());
    }

    #[test]
    fn other_key_types_are_refused_by_name() {
        let ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x";
        let err = parse_openssh_public_key(ed25519).unwrap_err();
        assert!(err.contains("only ecdsa-sha2-nistp384"), "{err}");
    }

    #[test]
    fn errors_say_where() {
        let e = KeyFileError::Invalid { flag: "--x", path: "/k.csv".into(), line: Some(2), problem: "bad".into() };
        assert_eq!(e.to_string(), "--x /k.csv, line 2: bad");
        let e = KeyFileError::Invalid { flag: "--x", path: "/k".into(), line: None, problem: "bad".into() };
        assert_eq!(e.to_string(), "--x /k: bad");
    }
}
