//! What `sepal run`, `ls`, `log` and `stop` share: finding the SuperLink, the Exec connection
//! and readable gRPC errors.
//!
//! The SuperLink is found the way the `flwr` CLI finds it: a federation in the app's
//! `pyproject.toml` (`[tool.flwr.federations]`, the `default` key naming the default one),
//! optionally patched with `--federation-config`. Sepal adds `--superlink HOST:PORT`, which
//! needs no `pyproject.toml` at all. As in `flwr`, a federation connects with TLS unless it
//! says `insecure = true`: verified against its `root-certificates` (a CA file, relative to
//! the app directory) or else the system's root certificates. `--superlink` is plaintext
//! unless `--root-certificates PATH` is given.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use sepal_fab::{ConfigMap, ConfigValue};
use sepal_proto::pb::exec_client::ExecClient;
use sepal_proto::MAX_GRPC_MESSAGE;
use sepal_supernode::ClientTls;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How long connecting to the SuperLink may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The file holding the federations.
const PYPROJECT: &str = "pyproject.toml";

/// The text Flower's Exec API sends with NOT_FOUND for an unknown run.
const RUN_ID_NOT_FOUND: &str = "Run ID not found";

// === Federation arguments ===

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

/// Where the SuperLink's Exec API is and how the connection is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    /// `HOST:PORT`.
    pub address: String,
    /// Plaintext, or TLS with a CA or the system's roots.
    pub tls: ClientTls,
}

impl ExecTarget {
    /// A plaintext target.
    pub fn insecure(address: impl Into<String>) -> Self {
        Self { address: address.into(), tls: ClientTls::Insecure }
    }
}

impl From<&ExecTarget> for ExecTarget {
    fn from(target: &ExecTarget) -> Self {
        target.clone()
    }
}

/// A bare address is plaintext.
impl From<&String> for ExecTarget {
    fn from(address: &String) -> Self {
        Self::insecure(address.as_str())
    }
}

/// A bare address is plaintext.
impl From<&str> for ExecTarget {
    fn from(address: &str) -> Self {
        Self::insecure(address)
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
        if !project_dir.is_dir() {
            bail!(
                "{dir} is not an app directory (the federation comes after the app directory: \
                 write `. {dir}` if {dir} names a federation)",
                dir = project_dir.display()
            );
        }
        let path = project_dir.join(PYPROJECT);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} does not exist: pass the app directory whose pyproject.toml declares \
                 [tool.flwr.federations], or the SuperLink with --superlink HOST:PORT",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let document: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
        resolve_federation(&document, &path, self.federation.as_deref(), &self.federation_config)
    }
}

/// The federation `--superlink ADDRESS` stands for.
fn direct(address: &str, tls: ClientTls) -> anyhow::Result<Federation> {
    let address = address.trim();
    if address.is_empty() || !address.contains(':') {
        bail!("--superlink {address:?}: expected HOST:PORT (the SuperLink's Exec API, e.g. 127.0.0.1:9093)");
    }
    Ok(Federation { name: None, address: ExecTarget { address: address.to_string(), tls }, options: ConfigMap::new() })
}

/// Picks and checks a federation of a parsed `pyproject.toml` (at `path`, for messages), as
/// `flwr` does: `name`, else `[tool.flwr.federations] default`; `overrides` patch existing
/// keys only.
pub fn resolve_federation(
    document: &toml::Table,
    path: &Path,
    name: Option<&str>,
    overrides: &[String],
) -> anyhow::Result<Federation> {
    let federations = document
        .get("tool")
        .and_then(|t| t.get("flwr"))
        .and_then(|t| t.get("federations"))
        .and_then(toml::Value::as_table)
        .ok_or_else(|| {
            anyhow!(
                "{} declares no [tool.flwr.federations]: add one, or pass the SuperLink with --superlink HOST:PORT",
                path.display()
            )
        })?;
    let name = match name {
        Some(name) => name.to_string(),
        None => match federations.get("default") {
            Some(toml::Value::String(name)) => name.clone(),
            Some(_) => bail!("{}: [tool.flwr.federations] default must be a string", path.display()),
            None => bail!(
                "no federation name was given and {} declares no default federation \
                 ([tool.flwr.federations] default = \"...\")",
                path.display()
            ),
        },
    };
    let mut config = match federations.get(&name) {
        Some(toml::Value::Table(table)) if name != "default" => table.clone(),
        _ => {
            let known: Vec<&str> = federations
                .iter()
                .filter(|(key, value)| *key != "default" && value.is_table())
                .map(|(key, _)| key.as_str())
                .collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            bail!("there is no `{name}` federation declared in {}; the federations found are: {known}", path.display());
        }
    };
    if !overrides.is_empty() {
        let parsed = sepal_fab::parse_config_args(overrides).map_err(|e| anyhow!("--federation-config: {e}"))?;
        apply_overrides(&mut config, &parsed).with_context(|| format!("--federation-config for `{name}`"))?;
    }
    let app_dir = path.parent().unwrap_or(Path::new("."));
    check_federation(&name, config, app_dir)
}

/// Writes flattened `a.b = v` overrides into `config`, refusing keys it does not have
/// (Flower's `fuse_dicts` with key checks; nested tables are merged, not replaced).
fn apply_overrides(config: &mut toml::Table, overrides: &ConfigMap) -> anyhow::Result<()> {
    for (key, value) in overrides {
        let segments: Vec<&str> = key.split('.').collect();
        let (last, parents) = segments.split_last().expect("split yields at least one segment");
        let mut table = &mut *config;
        for parent in parents {
            table = match table.get_mut(*parent) {
                Some(toml::Value::Table(inner)) => inner,
                _ => bail!("Key '{key}' is not present in the main dictionary"),
            };
        }
        match table.get_mut(*last) {
            Some(slot) if !slot.is_table() => *slot = to_toml(value),
            _ => bail!("Key '{key}' is not present in the main dictionary"),
        }
    }
    Ok(())
}

fn to_toml(value: &ConfigValue) -> toml::Value {
    match value {
        ConfigValue::Bool(b) => toml::Value::Boolean(*b),
        ConfigValue::Int(i) => toml::Value::Integer(*i),
        ConfigValue::Float(x) => toml::Value::Float(*x),
        ConfigValue::Str(s) => toml::Value::String(s.clone()),
    }
}

/// The checks `flwr` makes before connecting, plus Sepal's: no user auth. `root-certificates`
/// is relative to `app_dir` and read now.
fn check_federation(name: &str, config: toml::Table, app_dir: &Path) -> anyhow::Result<Federation> {
    if config.get("enable-user-auth").and_then(toml::Value::as_bool) == Some(true) {
        bail!(
            "federation `{name}` sets enable-user-auth = true: user authentication is not supported by sepal's CLI yet"
        );
    }
    let address = match config.get("address") {
        Some(toml::Value::String(address)) => address.clone(),
        Some(_) => bail!("federation `{name}`: `address` must be a string (HOST:PORT of the SuperLink's Exec API)"),
        None => bail!(
            "federation `{name}` has no `address`: it describes a local simulation, which sepal does not run; \
             give it the SuperLink's Exec API address (address = \"HOST:PORT\")"
        ),
    };
    let insecure = match config.get("insecure") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => bail!(
            "federation `{name}`: invalid type for `insecure`: expected a boolean (`insecure = true` or `insecure = false`)"
        ),
    };
    if config.contains_key("root-certificates") && insecure {
        bail!("federation `{name}`: `root-certificates` were provided but `insecure` is set to true");
    }
    let tls = match config.get("root-certificates") {
        _ if insecure => ClientTls::Insecure,
        Some(toml::Value::String(file)) => {
            ClientTls::ca_file(&format!("federation `{name}`: root-certificates"), &app_dir.join(file))?
        }
        Some(_) => bail!("federation `{name}`: `root-certificates` must be a string (a path relative to the app)"),
        // As `flwr`: TLS verified against the system's root certificates.
        None => ClientTls::SystemRoots,
    };
    let options = match config.get("options") {
        None => ConfigMap::new(),
        Some(toml::Value::Table(options)) => {
            sepal_fab::flatten_table(options).map_err(|e| anyhow!("federation `{name}`: options: {e}"))?
        }
        Some(_) => bail!("federation `{name}`: `options` must be a table"),
    };
    Ok(Federation { name: Some(name.to_string()), address: ExecTarget { address, tls }, options })
}

// === The connection ===

/// An Exec API client and the address it talks to (for messages).
pub struct Exec {
    /// The client, with Flower's message size limits.
    pub client: ExecClient<Channel>,
    /// `HOST:PORT`.
    pub address: String,
}

impl Exec {
    /// Connects to the Exec API at `target`: a federation's [`ExecTarget`], or a bare
    /// `HOST:PORT` (plaintext).
    pub async fn connect(target: impl Into<ExecTarget>) -> anyhow::Result<Exec> {
        let ExecTarget { address, tls } = target.into();
        let address = address.as_str();
        if address.contains("://") {
            bail!("{address:?} is not a valid SuperLink address: expected HOST:PORT, without a scheme");
        }
        let endpoint = tls
            .endpoint(address)
            .map_err(|e| {
                anyhow!("cannot set up the connection to the SuperLink at {address:?} (HOST:PORT): {}", error_chain(&e))
            })?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow!("cannot reach the SuperLink at {address}: {}", error_chain(&e)))?;
        let client = ExecClient::new(channel)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE);
        Ok(Exec { client, address: address.to_string() })
    }

    /// A readable error for a failed call; `what` says what was refused, e.g.
    /// "the SuperLink refused the run".
    pub fn error(&self, status: &Status, what: &str) -> anyhow::Error {
        rpc_error(status, &self.address, what)
    }
}

/// Maps a gRPC status to a message that says what to do about it.
pub fn rpc_error(status: &Status, address: &str, what: &str) -> anyhow::Error {
    let message = status.message();
    let detail = if message.is_empty() { status.code().description() } else { message };
    match status.code() {
        Code::Unavailable => anyhow!("cannot reach the SuperLink at {address}: {detail}"),
        Code::NotFound if message == RUN_ID_NOT_FOUND => anyhow!("{RUN_ID_NOT_FOUND}"),
        Code::Unauthenticated => anyhow!(
            "authentication failed at {address} ({detail}): the SuperLink requires user authentication, \
             which sepal's CLI does not support yet"
        ),
        Code::PermissionDenied => anyhow!("permission denied by the SuperLink at {address}: {detail}"),
        Code::Unimplemented => {
            anyhow!("the server at {address} does not implement this call of Flower's Exec API: {detail}")
        }
        Code::DeadlineExceeded => anyhow!("the SuperLink at {address} did not answer in time: {detail}"),
        code => anyhow!("{what}: {detail} ({})", code_name(code)),
    }
}

/// The gRPC name of a status code (`INVALID_ARGUMENT`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An error and its sources, joined with ": " (tonic's transport errors say little at the top).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        // Layers often repeat their source's text; say it once.
        let part = e.to_string();
        if !text.contains(&part) {
            let _ = write!(text, ": {part}");
        }
        source = e.source();
    }
    text
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

    const PYPROJECT_TEXT: &str = r#"
[project]
name = "app"
version = "1.0.0"

[tool.flwr.app]
publisher = "pub"

[tool.flwr.app.components]
serverapp = "app.server:app"
clientapp = "app.client:app"

[tool.flwr.federations]
default = "local"

[tool.flwr.federations.local]
address = "127.0.0.1:9093"
insecure = true
options.num-supernodes = 2
options.backend.cpus = 1.5

[tool.flwr.federations.remote]
address = "10.0.0.1:9093"
insecure = true

[tool.flwr.federations.tls]
address = "10.0.0.2:9093"
root-certificates = "ca.crt"

[tool.flwr.federations.sim]
options.num-supernodes = 10

[tool.flwr.federations.bad-insecure]
address = "10.0.0.3:9093"
insecure = "yes"
"#;

    fn document() -> toml::Table {
        toml::from_str(PYPROJECT_TEXT).unwrap()
    }

    fn resolve(name: Option<&str>, overrides: &[&str]) -> anyhow::Result<Federation> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        resolve_federation(&document(), Path::new("app/pyproject.toml"), name, &overrides)
    }

    fn err(name: Option<&str>, overrides: &[&str]) -> String {
        format!("{:#}", resolve(name, overrides).unwrap_err())
    }

    #[test]
    fn default_federation_is_the_default_key() {
        let fed = resolve(None, &[]).unwrap();
        assert_eq!(fed.name.as_deref(), Some("local"));
        assert_eq!(fed.address, ExecTarget::insecure("127.0.0.1:9093"));
        assert_eq!(fed.options.keys().collect::<Vec<_>>(), ["num-supernodes", "backend.cpus"]);
        assert_eq!(fed.options["num-supernodes"], ConfigValue::Int(2));
        assert_eq!(fed.options["backend.cpus"], ConfigValue::Float(1.5));
    }

    #[test]
    fn named_federation() {
        let fed = resolve(Some("remote"), &[]).unwrap();
        assert_eq!(fed.name.as_deref(), Some("remote"));
        assert_eq!(fed.address, ExecTarget::insecure("10.0.0.1:9093"));
        assert!(fed.options.is_empty());
    }

    #[test]
    fn missing_federation_lists_the_known_ones() {
        let e = err(Some("nope"), &[]);
        assert!(e.contains("no `nope` federation"), "{e}");
        assert!(e.contains("local, remote, tls, sim, bad-insecure"), "{e}");
        // `default` names a federation; it is not one.
        assert!(err(Some("default"), &[]).contains("no `default` federation"));
    }

    #[test]
    fn no_default_and_no_name() {
        let mut doc = document();
        doc["tool"]["flwr"]["federations"].as_table_mut().unwrap().remove("default");
        let e = resolve_federation(&doc, Path::new("pyproject.toml"), None, &[]).unwrap_err();
        assert!(e.to_string().contains("declares no default federation"), "{e}");
        let mut doc = document();
        doc["tool"]["flwr"].as_table_mut().unwrap().remove("federations");
        let e = resolve_federation(&doc, Path::new("pyproject.toml"), None, &[]).unwrap_err();
        assert!(e.to_string().contains("declares no [tool.flwr.federations]"), "{e}");
    }

    #[test]
    fn simulation_bad_insecure_and_missing_certificates_are_refused() {
        // `root-certificates` is relative to the app directory and read when resolving.
        let e = err(Some("tls"), &[]);
        assert!(e.contains("federation `tls`: root-certificates") && e.contains("app/ca.crt"), "{e}");
        assert!(err(Some("sim"), &[]).contains("has no `address`"));
        assert!(err(Some("bad-insecure"), &[]).contains("invalid type for `insecure`"));
    }

    #[test]
    fn federation_config_overrides_existing_keys_only() {
        let fed = resolve(None, &["address='127.0.0.1:9999' options.num-supernodes=5"]).unwrap();
        assert_eq!(fed.address, ExecTarget::insecure("127.0.0.1:9999"));
        assert_eq!(fed.options["num-supernodes"], ConfigValue::Int(5));
        // Merged, not replaced: the other option stays.
        assert_eq!(fed.options["backend.cpus"], ConfigValue::Float(1.5));
        let e = err(None, &["nope=1"]);
        assert!(e.contains("Key 'nope' is not present"), "{e}");
        let e = err(None, &["options.nope=1"]);
        assert!(e.contains("Key 'options.nope' is not present"), "{e}");
        // Overrides apply before the checks: `insecure=false` makes this federation use TLS
        // with the system's roots (it names no `root-certificates`).
        assert_eq!(resolve(Some("remote"), &["insecure=false"]).unwrap().address.tls, ClientTls::SystemRoots);
        let mut doc = document();
        doc["tool"]["flwr"]["federations"]["tls"].as_table_mut().unwrap().insert("insecure".into(), true.into());
        let e = resolve_federation(&doc, Path::new("pyproject.toml"), Some("tls"), &[]).unwrap_err().to_string();
        assert!(e.contains("`root-certificates` were provided but `insecure` is set to true"), "{e}");
    }

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
        let text = PYPROJECT_TEXT.replace("root-certificates = \"ca.crt\"", "root-certificates = \"certs/ca.crt\"");
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

    #[test]
    fn status_messages() {
        let addr = "127.0.0.1:1";
        let e = rpc_error(&Status::unavailable("connection refused"), addr, "x").to_string();
        assert_eq!(e, "cannot reach the SuperLink at 127.0.0.1:1: connection refused");
        let e = rpc_error(&Status::not_found("Run ID not found"), addr, "x").to_string();
        assert_eq!(e, "Run ID not found");
        let e = rpc_error(&Status::invalid_argument("FAB hash mismatch"), addr, "the SuperLink refused the run");
        assert_eq!(e.to_string(), "the SuperLink refused the run: FAB hash mismatch (INVALID_ARGUMENT)");
    }
}
