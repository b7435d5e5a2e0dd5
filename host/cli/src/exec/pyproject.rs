//! A federation of an app's parsed `pyproject.toml`, picked and checked as the `flwr` CLI
//! does: `[tool.flwr.federations]` holds the federations, its `default` key names the one
//! used when none is given, `--federation-config` patches existing keys, and a federation
//! connects with TLS unless it says `insecure = true`: verified against its
//! `root-certificates` (a CA file, relative to the app directory) or else the system's
//! root certificates.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use sepal_fab::{ConfigMap, ConfigValue};
use sepal_wire::ClientTls;

use super::connection::ExecTarget;
use super::federation::Federation;

/// Picks and checks a federation of a parsed `pyproject.toml` (at `path`, for messages), as
/// `flwr` does: `name`, else `[tool.flwr.federations] default`; `overrides` patch existing
/// keys only.
pub fn resolve_federation(
    document: &toml::Table,
    path: &Path,
    name: Option<&str>,
    overrides: &[String],
) -> anyhow::Result<Federation> {
    let federations = federations_of(document, path)?;
    let name = match name {
        Some(name) => name.to_string(),
        None => default_name(federations, path)?,
    };
    let mut config = federation_config(federations, &name, path)?;
    if !overrides.is_empty() {
        let parsed = sepal_fab::parse_config_args(overrides).map_err(|e| anyhow!("--federation-config: {e}"))?;
        apply_overrides(&mut config, &parsed).with_context(|| format!("--federation-config for `{name}`"))?;
    }
    let app_dir = path.parent().unwrap_or(Path::new("."));
    check_federation(&name, config, app_dir)
}

/// `[tool.flwr.federations]`.
fn federations_of<'a>(document: &'a toml::Table, path: &Path) -> anyhow::Result<&'a toml::Table> {
    document
        .get("tool")
        .and_then(|t| t.get("flwr"))
        .and_then(|t| t.get("federations"))
        .and_then(toml::Value::as_table)
        .ok_or_else(|| {
            anyhow!(
                "{} declares no [tool.flwr.federations]: add one, or pass the SuperLink with --superlink HOST:PORT",
                path.display()
            )
        })
}

/// The federation `[tool.flwr.federations] default` names.
fn default_name(federations: &toml::Table, path: &Path) -> anyhow::Result<String> {
    match federations.get("default") {
        Some(toml::Value::String(name)) => Ok(name.clone()),
        Some(_) => bail!("{}: [tool.flwr.federations] default must be a string", path.display()),
        None => bail!(
            "no federation name was given and {} declares no default federation \
             ([tool.flwr.federations] default = \"...\")",
            path.display()
        ),
    }
}

/// The table of federation `name`; the error lists the federations there are.
fn federation_config(federations: &toml::Table, name: &str, path: &Path) -> anyhow::Result<toml::Table> {
    match federations.get(name) {
        Some(toml::Value::Table(table)) if name != "default" => Ok(table.clone()),
        _ => {
            let known: Vec<&str> = federations
                .iter()
                .filter(|(key, value)| *key != "default" && value.is_table())
                .map(|(key, _)| key.as_str())
                .collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            bail!("there is no `{name}` federation declared in {}; the federations found are: {known}", path.display());
        }
    }
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

/// The checks `flwr` makes before connecting. `root-certificates` is relative to
/// `app_dir` and read now; with `enable-user-auth = true`, the login's tokens are kept
/// under `app_dir` as `flwr` keeps them.
fn check_federation(name: &str, config: toml::Table, app_dir: &Path) -> anyhow::Result<Federation> {
    let user_auth = match config.get("enable-user-auth") {
        None => false,
        Some(toml::Value::Boolean(on)) => *on,
        Some(_) => bail!("federation `{name}`: `enable-user-auth` must be true or false"),
    };
    let address = match config.get("address") {
        Some(toml::Value::String(address)) => address.clone(),
        Some(_) => bail!("federation `{name}`: `address` must be a string (HOST:PORT of the SuperLink's Exec API)"),
        None => bail!(
            "federation `{name}` has no `address`: it describes a local simulation, which sepal does not run; \
             give it the SuperLink's Exec API address (address = \"HOST:PORT\")"
        ),
    };
    let tls = tls_of(name, &config, app_dir)?;
    if user_auth && tls == ClientTls::Insecure {
        bail!("federation `{name}`: user authentication (enable-user-auth) needs TLS; remove `insecure = true`");
    }
    let credentials = user_auth.then(|| super::credentials::credentials_path(app_dir, name));
    let options = match config.get("options") {
        None => ConfigMap::new(),
        Some(toml::Value::Table(options)) => {
            sepal_fab::flatten_table(options).map_err(|e| anyhow!("federation `{name}`: options: {e}"))?
        }
        Some(_) => bail!("federation `{name}`: `options` must be a table"),
    };
    Ok(Federation { name: Some(name.to_string()), address: ExecTarget { address, tls, credentials }, options })
}

/// The connection's security from `insecure` and `root-certificates` (read now, relative to
/// `app_dir`).
fn tls_of(name: &str, config: &toml::Table, app_dir: &Path) -> anyhow::Result<ClientTls> {
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
    Ok(match config.get("root-certificates") {
        _ if insecure => ClientTls::Insecure,
        Some(toml::Value::String(file)) => {
            ClientTls::ca_file(&format!("federation `{name}`: root-certificates"), &app_dir.join(file))?
        }
        Some(_) => bail!("federation `{name}`: `root-certificates` must be a string (a path relative to the app)"),
        // As `flwr`: TLS verified against the system's root certificates.
        None => ClientTls::SystemRoots,
    })
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
}
