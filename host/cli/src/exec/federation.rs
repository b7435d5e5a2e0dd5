//! Which SuperLink a command talks to, from its arguments: `[APP] [FEDERATION]` and
//! `--federation-config` (a federation of the app's `pyproject.toml`, as the `flwr` CLI
//! finds it), or Sepal's `--superlink HOST:PORT`, which needs no `pyproject.toml` at all.
//!
//! As in `flwr`, a federation connects with TLS unless it says `insecure = true` (see
//! [`super::pyproject`]). `--superlink` is plaintext unless `--root-certificates PATH` is
//! given.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sepal_fab::ConfigMap;
use sepal_wire::ClientTls;

use super::connection::{Exec, ExecTarget};
use super::pyproject::resolve_federation;

/// The file holding the federations.
const PYPROJECT: &str = "pyproject.toml";

/// How to find the SuperLink: `[FEDERATION]`, `--federation-config`, or `--superlink`.
///
/// The app directory argument, which comes before `FEDERATION`, belongs to each command
/// (for `sepal run` it may also be a `.fab` file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FederationArgs {
    /// Name of the federation in the app's pyproject.toml [default: the `default` key of
    /// `[tool.flwr.federations]`].
    #[arg(value_name = "FEDERATION")]
    pub federation: Option<String>,
    /// Override federation config values, e.g. "options.num-supernodes=5" (keys must exist
    /// in the federation's config; may be repeated).
    #[arg(long = "federation-config", value_name = "KEY=VALUE ...")]
    pub federation_config: Vec<String>,
    /// The SuperLink's Exec API address, instead of a federation from pyproject.toml (Sepal
    /// addition; plaintext unless --root-certificates is given).
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["federation", "federation_config"])]
    pub superlink: Option<String>,
    /// Connect to --superlink without TLS (the default for --superlink).
    #[arg(long, requires = "superlink")]
    pub insecure: bool,
    /// Connect to --superlink with TLS, verifying it against this CA certificate (PEM).
    #[arg(long, value_name = "PATH", requires = "superlink", conflicts_with = "insecure")]
    pub root_certificates: Option<PathBuf>,
}

/// `[APP] [FEDERATION]` and the federation flags: how `ls`, `log` and `stop` find the
/// SuperLink, from the app directory whose pyproject.toml declares the federation.
#[derive(Debug, Clone, clap::Args)]
pub struct AppFederationArgs {
    /// Path of the Flower app whose pyproject.toml declares the federation.
    #[arg(value_name = "APP", default_value = ".")]
    pub app: PathBuf,
    #[command(flatten)]
    pub federation: FederationArgs,
}

impl AppFederationArgs {
    /// Resolves the federation and connects to its SuperLink's Exec API.
    pub async fn connect(&self) -> anyhow::Result<Exec> {
        let federation = self.federation.resolve(&self.app)?;
        Exec::connect(&federation.address).await
    }
}

/// A resolved federation: where its SuperLink is and what `options.*` it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Federation {
    /// The federation's name; `None` for `--superlink`.
    pub name: Option<String>,
    /// The Exec API address (`HOST:PORT`) and the connection's security.
    pub address: ExecTarget,
    /// `options.*`, flattened with `.` (sent as `StartRunRequest.federation_options`).
    pub options: ConfigMap,
}

impl FederationArgs {
    /// Resolves the federation, reading `<project_dir>/pyproject.toml` unless `--superlink`.
    pub fn resolve(&self, project_dir: &Path) -> anyhow::Result<Federation> {
        if let Some(address) = &self.superlink {
            let tls = match &self.root_certificates {
                Some(path) => ClientTls::ca_file("--root-certificates", path)?,
                None => ClientTls::Insecure,
            };
            return direct(address, tls);
        }
        let path = project_dir.join(PYPROJECT);
        let document = read_pyproject(project_dir, &path)?;
        resolve_federation(&document, &path, self.federation.as_deref(), &self.federation_config)
    }
}

/// Reads and parses `path`, the pyproject.toml of the app directory `project_dir`.
fn read_pyproject(project_dir: &Path, path: &Path) -> anyhow::Result<toml::Table> {
    if !project_dir.is_dir() {
        bail!(
            "{dir} is not an app directory (the federation comes after the app directory: \
             write `. {dir}` if {dir} names a federation)",
            dir = project_dir.display()
        );
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: pass the app directory whose pyproject.toml declares \
             [tool.flwr.federations], or the SuperLink with --superlink HOST:PORT",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))
}

/// The federation `--superlink ADDRESS` stands for.
fn direct(address: &str, tls: ClientTls) -> anyhow::Result<Federation> {
    let address = address.trim();
    if address.is_empty() || !address.contains(':') {
        bail!("--superlink {address:?}: expected HOST:PORT (the SuperLink's Exec API, e.g. 127.0.0.1:9093)");
    }
    let address = ExecTarget { address: address.to_string(), tls, credentials: None };
    Ok(Federation { name: None, address, options: ConfigMap::new() })
}

/// The directory holding an app's pyproject.toml for `path` (an app directory or a `.fab`
/// file, whose federations come from the current directory's project).
pub fn project_dir_of(path: &Path) -> PathBuf {
    if path.is_file() {
        PathBuf::from(".")
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superlink_flag_needs_no_pyproject() {
        let args = FederationArgs { superlink: Some("127.0.0.1:9093".into()), ..Default::default() };
        let fed = args.resolve(Path::new("/nonexistent/dir")).unwrap();
        let address = ExecTarget::insecure("127.0.0.1:9093");
        assert_eq!(fed, Federation { name: None, address, options: ConfigMap::new() });
        let args = FederationArgs {
            superlink: Some("127.0.0.1:9093".into()),
            root_certificates: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = format!("{:#}", args.resolve(Path::new(".")).unwrap_err());
        assert!(e.contains("--root-certificates /nonexistent/ca.pem"), "{e}");
        let args = FederationArgs { superlink: Some("localhost".into()), ..Default::default() };
        assert!(args.resolve(Path::new(".")).is_err());
    }

    #[test]
    fn missing_pyproject_suggests_superlink() {
        let args = FederationArgs::default();
        let dir = std::env::temp_dir();
        let e = args.resolve(&dir.join("sepal-no-such-dir")).unwrap_err().to_string();
        assert!(e.contains("is not an app directory"), "{e}");
        if !dir.join(PYPROJECT).exists() {
            let e = args.resolve(&dir).unwrap_err().to_string();
            assert!(e.contains("--superlink"), "{e}");
        }
    }

    #[test]
    fn federation_root_certificates_are_read_relative_to_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[tool.flwr.federations.tls]\naddress = \"10.0.0.2:9093\"\nroot-certificates = \"certs/ca.crt\"\n";
        std::fs::write(dir.path().join(PYPROJECT), text).unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        let args = FederationArgs { federation: Some("tls".into()), ..Default::default() };
        std::fs::write(dir.path().join("certs/ca.crt"), "not a certificate").unwrap();
        let e = format!("{:#}", args.resolve(dir.path()).unwrap_err());
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let pem = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.path().join("certs/ca.crt"), pem).unwrap();
        let fed = args.resolve(dir.path()).unwrap();
        assert_eq!(fed.address.tls, ClientTls::Ca(pem.as_bytes().to_vec()));
    }
}
