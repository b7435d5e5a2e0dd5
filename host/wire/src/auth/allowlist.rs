//! The SuperNode public keys a SuperLink allows on Fleet (`--auth-list-public-keys`).

use std::collections::HashSet;
use std::path::Path;

use crate::keys::{parse_openssh_public_key, read_text, KeyFileError, NodePublicKey};

const FLAG: &str = "--auth-list-public-keys";

/// The allowed keys, kept by curve and point so that any PEM encoding of a listed key
/// matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(HashSet<NodePublicKey>);

impl Allowlist {
    /// Lists `key`.
    pub fn insert(&mut self, key: NodePublicKey) {
        self.0.insert(key);
    }

    /// Whether `key` is listed.
    pub fn contains(&self, key: &NodePublicKey) -> bool {
        self.0.contains(key)
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
    /// (`ecdsa-sha2-nistp384 AAAA… [comment]`, or `-nistp256`); one key per line is the
    /// usual layout.
    pub fn from_csv_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = read_text(FLAG, path)?;
        let mut list = Self::default();
        for (index, line) in text.lines().enumerate() {
            for cell in line.split(',').map(|c| c.trim().trim_matches('"').trim()).filter(|c| !c.is_empty()) {
                let key = parse_openssh_public_key(cell).map_err(|problem| KeyFileError::Invalid {
                    flag: FLAG,
                    path: path.to_path_buf(),
                    line: Some(index + 1),
                    problem,
                })?;
                list.insert(key);
            }
        }
        if list.is_empty() {
            return Err(KeyFileError::Empty { flag: FLAG, path: path.to_path_buf() });
        }
        Ok(list)
    }
}

impl FromIterator<NodePublicKey> for Allowlist {
    fn from_iter<I: IntoIterator<Item = NodePublicKey>>(iter: I) -> Self {
        Allowlist(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::encode_openssh;

    #[test]
    fn allowlist_csv_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let (_, good) = encode_openssh(
            &crate::keys::NodeSigningKey::P384(p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)),
            "ok",
        );
        let csv = dir.path().join("keys.csv");
        std::fs::write(
            &csv,
            format!("{good}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"),
        )
        .unwrap();
        let err = Allowlist::from_csv_file(&csv).unwrap_err().to_string();
        assert!(err.contains("keys.csv, line 2") && err.contains("ssh-ed25519"), "{err}");
        std::fs::write(&csv, format!("{good}\nnot a key\n")).unwrap();
        let err = Allowlist::from_csv_file(&csv).unwrap_err().to_string();
        assert!(err.contains("keys.csv, line 2") && err.contains("not an OpenSSH public key"), "{err}");
        std::fs::write(&csv, "\n").unwrap();
        assert!(Allowlist::from_csv_file(&csv).unwrap_err().to_string().contains("no public key listed"));
        let err = Allowlist::from_csv_file(&dir.path().join("missing.csv")).unwrap_err().to_string();
        assert!(err.starts_with("cannot read") && err.contains("missing.csv"), "{err}");
        // Several keys in one row, quoted cells.
        let (_, second) = encode_openssh(
            &crate::keys::NodeSigningKey::P256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)),
            "two",
        );
        std::fs::write(&csv, format!("{good},\"{second}\"\n")).unwrap();
        let list = Allowlist::from_csv_file(&csv).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&parse_openssh_public_key(&good).unwrap()));
    }
}
