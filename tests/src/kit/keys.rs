//! SuperNode key pairs made as an operator makes them for Flower: `ssh-keygen -t ecdsa`
//! (OpenSSH private key, `.pub` public key), and the allow-list CSV of public keys that
//! `--auth-list-public-keys` reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Makes `dir/name` and `dir/name.pub`, an ECDSA key on the curve of `bits` (256 or 384),
/// with `ssh-keygen` (scripts/test.sh installs it when missing).
pub fn ssh_keygen(dir: &Path, name: &str, bits: u32) -> Result<(PathBuf, PathBuf)> {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-b", &bits.to_string(), "-N", "", "-C", name, "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .context("running ssh-keygen (install openssh-client)")?;
    if !status.success() {
        bail!("ssh-keygen for {} failed: {status}", path.display());
    }
    let public = path.with_extension("pub");
    Ok((path, public))
}

/// Writes `dir/name`, an allow-list with the public keys in `public_keys`, one per line.
pub fn allow_list(dir: &Path, name: &str, public_keys: &[&Path]) -> Result<PathBuf> {
    let mut csv = String::new();
    for key in public_keys {
        let text = std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
        csv.push_str(text.trim());
        csv.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
