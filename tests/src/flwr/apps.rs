//! App directories for the `flwr` CLI: Flower's own template app, copies of the project's
//! apps, and the federation the harness adds to an app's `pyproject.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::{run_with_timeout, CLI_TIMEOUT};
use crate::venv;

/// Makes a fresh app with Flower's own template, as Flower's CI does:
/// `flwr new <name> --framework numpy --username flwrlabs` in `parent` (a FedAvg ServerApp
/// on the strategy API, 3 rounds, that prints `[ROUND n]` and `Run finished`).
pub fn new_app(parent: &Path, name: &str) -> Result<PathBuf> {
    let mut cmd = Command::new(venv().join("bin").join("flwr"));
    cmd.args(["new", name, "--framework", "numpy", "--username", "flwrlabs"])
        .current_dir(parent)
        .env("FLWR_TELEMETRY_ENABLED", "0")
        .stdin(Stdio::null());
    let out = run_with_timeout(cmd, CLI_TIMEOUT)?;
    let dir = parent.join(name);
    if !out.status.success() || !dir.join("pyproject.toml").is_file() {
        bail!("flwr new {name} failed ({}): {}{}", out.status, out.stdout, out.stderr);
    }
    Ok(dir)
}

/// `security`: `insecure = true` or `root-certificates = "…"`.
pub(super) fn add_federation(pyproject: &Path, name: &str, exec: SocketAddr, security: &str) -> Result<()> {
    let mut text = std::fs::read_to_string(pyproject).with_context(|| format!("reading {}", pyproject.display()))?;
    if text.contains(&format!("[tool.flwr.federations.{name}]")) {
        bail!("{} already defines federation {name}", pyproject.display());
    }
    text.push_str(&format!(
        "\n# Added by the sepal-tests harness.\n[tool.flwr.federations.{name}]\n\
         address = \"{exec}\"\n{security}\n"
    ));
    std::fs::write(pyproject, text).with_context(|| format!("writing {}", pyproject.display()))
}

pub(super) fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let skip = name == "__pycache__" || name.to_string_lossy().ends_with(".fab");
        if skip {
            continue;
        }
        let to = dest.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}
