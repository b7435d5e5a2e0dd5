//! Small apps for tests and tools: a `pyproject.toml` written from a few settings, so that a
//! test says what its app is (a name, its components, a config value) instead of spelling
//! the whole file.
//!
//! ```
//! let toml = sepal_fab::testing::PyProject::new("probe").config("lr", "0.1").to_toml();
//! let manifest = sepal_fab::Manifest::parse(&toml).unwrap();
//! assert_eq!(manifest.fab_id(), "sepal/probe");
//! ```

use std::path::Path;

/// A `pyproject.toml` for an app. [`PyProject::new`] makes a valid Python app; the methods
/// change one part each.
#[derive(Debug, Clone)]
pub struct PyProject {
    name: String,
    version: String,
    publisher: String,
    serverapp: String,
    clientapp: String,
    /// `[tool.flwr.app.config]` entries: key and TOML value, in order.
    config: Vec<(String, String)>,
    /// Raw TOML appended at the end (federations, odd tables).
    extra: String,
}

impl PyProject {
    /// App `name` 1.0.0 by publisher `sepal`, with Python components `name.server:app` and
    /// `name.client:app` and no config.
    pub fn new(name: &str) -> Self {
        PyProject {
            name: name.into(),
            version: "1.0.0".into(),
            publisher: "sepal".into(),
            serverapp: format!("{name}.server:app"),
            clientapp: format!("{name}.client:app"),
            config: Vec::new(),
            extra: String::new(),
        }
    }

    /// The same app with Wasm components `server.wasm` and `client.wasm`.
    pub fn wasm(self) -> Self {
        self.components("server.wasm", "client.wasm")
    }

    /// Sets the `serverapp` and `clientapp` values (a `.wasm` path or `module:attr`).
    pub fn components(mut self, serverapp: &str, clientapp: &str) -> Self {
        (self.serverapp, self.clientapp) = (serverapp.into(), clientapp.into());
        self
    }

    /// Sets the version.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the publisher.
    pub fn publisher(mut self, publisher: &str) -> Self {
        self.publisher = publisher.into();
        self
    }

    /// Adds `key = value` to `[tool.flwr.app.config]`; `value` is TOML (`"0.1"`, `"\"x\""`).
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Appends raw TOML (e.g. a `[tool.flwr.federations]` table).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "[project]\nname = \"{}\"\nversion = \"{}\"\n\n[tool.flwr.app]\npublisher = \"{}\"\n\n\
             [tool.flwr.app.components]\nserverapp = \"{}\"\nclientapp = \"{}\"\n",
            self.name, self.version, self.publisher, self.serverapp, self.clientapp
        );
        if !self.config.is_empty() {
            s.push_str("\n[tool.flwr.app.config]\n");
            for (key, value) in &self.config {
                s.push_str(&format!("{key} = {value}\n"));
            }
        }
        if !self.extra.is_empty() {
            s.push('\n');
            s.push_str(&self.extra);
        }
        s
    }

    /// Writes `pyproject.toml` into `dir`.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("pyproject.toml"), self.to_toml())
    }
}
