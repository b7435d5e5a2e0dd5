//! The app manifest: the `[project]` and `[tool.flwr.app]` parts of `pyproject.toml`.

use crate::config::{flatten_table, ConfigMap};
use crate::error::{Error, Result};

/// Where an app component (ServerApp or ClientApp) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// A WebAssembly component inside the FAB (a value ending in `.wasm`), by its path.
    Wasm(String),
    /// A Python object reference `module:attribute`, as in Flower.
    Python(String),
}

impl Component {
    /// Classifies and checks one `[tool.flwr.app.components]` value.
    fn parse(component: &'static str, value: &str) -> Result<Self> {
        let bad = |reason| Error::Component { component, value: value.into(), reason };
        if value.ends_with(".wasm") {
            if crate::read::check_entry_name(value).is_err() || value.ends_with('/') {
                return Err(bad("a .wasm component must be a relative path inside the FAB"));
            }
            return Ok(Component::Wasm(value.into()));
        }
        // Flower's object_ref.validate: partition on the first ':'; both sides non-empty.
        match value.split_once(':') {
            None | Some((_, "")) => Err(bad("missing attribute; expected \"module:attribute\" or a .wasm path")),
            Some(("", _)) => Err(bad("missing module; expected \"module:attribute\" or a .wasm path")),
            Some(_) => Ok(Component::Python(value.into())),
        }
    }
}

/// The parsed and validated manifest of a Flower app.
///
/// Required, as in Flower: `[project] name, version`, `[tool.flwr.app] publisher`,
/// `[tool.flwr.app.components] serverapp, clientapp`. Optional: `[tool.flwr.app.config]`.
#[derive(Debug, Clone)]
pub struct Manifest {
    name: String,
    version: String,
    publisher: String,
    serverapp: Component,
    clientapp: Component,
    run_config: ConfigMap,
    document: toml::Table,
}

impl Manifest {
    /// Parses and validates `pyproject.toml` text.
    pub fn parse(text: &str) -> Result<Self> {
        let document: toml::Table =
            toml::from_str(text).map_err(|cause| Error::Toml { what: "pyproject.toml".into(), cause })?;
        Self::from_document(document)
    }

    /// Validates an already parsed `pyproject.toml` document.
    pub fn from_document(document: toml::Table) -> Result<Self> {
        let project = section(&document, &["project"], "[project]")?;
        let name = string(project, "name", "[project] name")?;
        let version = string(project, "version", "[project] version")?;
        let app = section(&document, &["tool", "flwr", "app"], "[tool.flwr.app]")?;
        let publisher = string(app, "publisher", "[tool.flwr.app] publisher")?;
        let components = section(app, &["components"], "[tool.flwr.app.components]")?;
        let serverapp = component(components, "serverapp", "[tool.flwr.app.components] serverapp")?;
        let clientapp = component(components, "clientapp", "[tool.flwr.app.components] clientapp")?;
        let run_config = match app.get("config") {
            None => ConfigMap::new(),
            Some(toml::Value::Table(t)) => flatten_table(t)?,
            Some(_) => return Err(not_a_table("[tool.flwr.app.config]")),
        };
        Ok(Manifest { name, version, publisher, serverapp, clientapp, run_config, document })
    }

    /// `"<publisher>/<name>"`, Flower's FAB id.
    pub fn fab_id(&self) -> String {
        format!("{}/{}", self.publisher, self.name)
    }

    /// `[project] name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `[project] version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `[tool.flwr.app] publisher`.
    pub fn publisher(&self) -> &str {
        &self.publisher
    }

    /// The ServerApp component.
    pub fn serverapp(&self) -> &Component {
        &self.serverapp
    }

    /// The ClientApp component.
    pub fn clientapp(&self) -> &Component {
        &self.clientapp
    }

    /// The default run config: `[tool.flwr.app.config]` flattened with `.`, in file order.
    pub fn run_config(&self) -> &ConfigMap {
        &self.run_config
    }

    /// The whole parsed `pyproject.toml`.
    pub fn document(&self) -> &toml::Table {
        &self.document
    }

    /// The FAB file name `flwr build` uses: `<publisher>.<name>.<version, '.'→'-'>.<hash[:8]>.fab`.
    pub fn fab_file_name(&self, fab_hash: &str) -> String {
        let short = short_hash(fab_hash);
        let version = self.version.replace('.', "-");
        format!("{}.{}.{version}.{short}.fab", self.publisher, self.name)
    }

    /// The install directory name Flower uses under `$FLWR_HOME/apps`:
    /// `<publisher>.<name>.<version>.<hash[:8]>` (version not rewritten).
    pub fn install_dir_name(&self, fab_hash: &str) -> String {
        let short = short_hash(fab_hash);
        format!("{}.{}.{}.{short}", self.publisher, self.name, self.version)
    }
}

/// The first [`crate::FAB_HASH_TRUNCATION`] characters of a hash (all of a shorter one).
fn short_hash(fab_hash: &str) -> &str {
    fab_hash.get(..crate::FAB_HASH_TRUNCATION).unwrap_or(fab_hash)
}

fn section<'a>(table: &'a toml::Table, path: &[&str], field: &'static str) -> Result<&'a toml::Table> {
    let mut current = table;
    for key in path {
        current = match current.get(*key) {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(not_a_table(field)),
            None => return Err(missing(field)),
        };
    }
    Ok(current)
}

fn string(table: &toml::Table, key: &str, field: &'static str) -> Result<String> {
    match table.get(key) {
        Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(toml::Value::String(_)) => Err(Error::Manifest { field, problem: "must not be empty".into() }),
        Some(other) => Err(Error::Manifest { field, problem: format!("must be a string, found {}", other.type_str()) }),
        None => Err(missing(field)),
    }
}

fn component(table: &toml::Table, key: &'static str, field: &'static str) -> Result<Component> {
    Component::parse(key, &string(table, key, field)?)
}

fn missing(field: &'static str) -> Error {
    Error::Manifest { field, problem: "is missing".into() }
}

fn not_a_table(field: &'static str) -> Error {
    Error::Manifest { field, problem: "must be a table".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigValue;

    const GOOD: &str = r#"
[project]
name = "demo"
version = "1.2.3"

[tool.flwr.app]
publisher = "acme"

[tool.flwr.app.components]
serverapp = "server.wasm"
clientapp = "demo.client:app"

[tool.flwr.app.config]
num-server-rounds = 3
lr = 0.1
name = "x"
[tool.flwr.app.config.optim]
momentum = 0.9
nested.deep = true
"#;

    #[test]
    fn parses_a_complete_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.fab_id(), "acme/demo");
        assert_eq!(m.version(), "1.2.3");
        assert_eq!(m.serverapp(), &Component::Wasm("server.wasm".into()));
        assert_eq!(m.clientapp(), &Component::Python("demo.client:app".into()));
        assert_eq!(m.fab_file_name("0123456789abcdef"), "acme.demo.1-2-3.01234567.fab");
        assert_eq!(m.install_dir_name("0123456789abcdef"), "acme.demo.1.2.3.01234567");
    }

    #[test]
    fn flattens_nested_config_in_order() {
        let m = Manifest::parse(GOOD).unwrap();
        let keys: Vec<&str> = m.run_config().keys().map(String::as_str).collect();
        assert_eq!(keys, ["num-server-rounds", "lr", "name", "optim.momentum", "optim.nested.deep"]);
        assert_eq!(m.run_config()["optim.nested.deep"], ConfigValue::Bool(true));
        assert_eq!(m.run_config()["num-server-rounds"], ConfigValue::Int(3));
    }

    #[test]
    fn missing_publisher_is_a_clear_error() {
        let text = GOOD.replace("publisher = \"acme\"", "");
        let err = Manifest::parse(&text).unwrap_err();
        assert_eq!(err.to_string(), "pyproject.toml: [tool.flwr.app] publisher is missing");
    }

    #[test]
    fn missing_sections_and_components() {
        let err = Manifest::parse("[project]\nname='a'\nversion='1'\n").unwrap_err();
        assert!(err.to_string().contains("[tool.flwr.app] is missing"), "{err}");
        let text = GOOD.replace("clientapp = \"demo.client:app\"", "");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.to_string().contains("clientapp is missing"), "{err}");
        let text = GOOD.replace("version = \"1.2.3\"", "version = 1");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.to_string().contains("must be a string, found integer"), "{err}");
    }

    #[test]
    fn bad_component_references() {
        for bad in ["demo.client", ":app", "demo:", "../x.wasm", "/abs.wasm"] {
            let text = GOOD.replace("demo.client:app", bad);
            let err = Manifest::parse(&text).unwrap_err();
            assert!(matches!(err, Error::Component { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn arrays_in_config_are_refused() {
        let text = GOOD.replace("lr = 0.1", "lr = [0.1, 0.2]");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.to_string().contains("config key \"lr\""), "{err}");
    }

    #[test]
    fn invalid_toml_says_which_file() {
        let err = Manifest::parse("[project\n").unwrap_err();
        assert!(err.to_string().starts_with("pyproject.toml is not valid TOML"), "{err}");
    }
}
