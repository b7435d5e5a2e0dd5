//! A run's app as its FAB carries it: the FAB read and checked against the run's hash, the
//! component of each side (Wasm bytes, or the Python reference Flower's processes run) and
//! the run config (the FAB's defaults with the run's overrides).

use std::collections::HashMap;

use bytes::Bytes;
use sepal_fab::{Component, Fab};
use sepal_proto::pb;

use crate::AppFailure;

/// Which of a FAB's two components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The ServerApp (`[tool.flwr.app.components] serverapp`).
    Server,
    /// The ClientApp (`[tool.flwr.app.components] clientapp`).
    Client,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Server => "ServerApp",
            Side::Client => "ClientApp",
        }
    }
}

/// What runs one side of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppCode {
    /// A WebAssembly component: its bytes, taken from the FAB.
    Wasm(Bytes),
    /// A Python `module:attribute` reference, run by `flwr-serverapp` / `flwr-clientapp`.
    Python(String),
}

/// A run's FAB, read with the hostile-input limits and checked against its hash.
#[derive(Debug)]
pub struct RunApp {
    fab: Fab,
}

impl RunApp {
    /// Reads `content`, which must hash (sha256, hex) to `hash`.
    pub fn read(content: &[u8], hash: &str) -> Result<RunApp, AppFailure> {
        let fab = Fab::read_verified(content, hash, &sepal_fab::ReadLimits::default())
            .map_err(|e| AppFailure::Load(format!("invalid FAB: {e}")))?;
        Ok(RunApp { fab })
    }

    /// The code of one side.
    pub fn code(&self, side: Side) -> Result<AppCode, AppFailure> {
        let manifest = self.fab.manifest();
        let component = match side {
            Side::Server => manifest.serverapp(),
            Side::Client => manifest.clientapp(),
        };
        match component {
            Component::Python(attr) => Ok(AppCode::Python(attr.clone())),
            wasm @ Component::Wasm(path) => self
                .fab
                .wasm_component(wasm)
                .map(|bytes| AppCode::Wasm(Bytes::copy_from_slice(bytes)))
                .ok_or_else(|| AppFailure::Load(format!("the FAB has no {} component {path}", side.name()))),
        }
    }

    /// The Wasm component of one side; a Python side is refused with a message that says
    /// which Flower process runs it.
    pub fn wasm(&self, side: Side) -> Result<Bytes, AppFailure> {
        match self.code(side)? {
            AppCode::Wasm(bytes) => Ok(bytes),
            AppCode::Python(attr) => {
                let (process, sepal) = match side {
                    Side::Server => ("flwr-serverapp", "sepal serverapp"),
                    Side::Client => ("flwr-clientapp", "sepal clientapp"),
                };
                Err(AppFailure::Load(format!(
                    "this FAB's {} is Python (`{attr}`): run {process} for it ({sepal} runs Wasm apps)",
                    side.name()
                )))
            }
        }
    }

    /// The run config an app sees: the FAB's defaults with the run's `overrides`.
    pub fn run_config(
        &self,
        overrides: &HashMap<String, pb::Scalar>,
    ) -> Result<HashMap<String, pb::Scalar>, AppFailure> {
        sepal_fab::fuse_wire_run_config(self.fab.manifest().run_config(), overrides)
            .map_err(|e| AppFailure::Load(format!("run config: {e}")))
    }
}
