//! Flower App Bundles (FABs): read, verify, write, unpack.
//!
//! A FAB is the ZIP archive `flwr build` makes from a Flower app: `pyproject.toml`, the
//! app's files and `.info/CONTENT` (one `<path>,<sha256>,<bits>` line per file). Its id
//! is `"<publisher>/<name>"`, its hash the SHA-256 of the archive bytes ([`fab_hash`]).
//! Sepal also bundles `.wasm` components, named in `pyproject.toml` by path.
//!
//! - [`Fab::read`] parses a FAB from untrusted bytes under [`ReadLimits`] and checks it.
//! - [`Manifest`] is the validated `[project]` / `[tool.flwr.app]` part of `pyproject.toml`.
//! - [`parse_config_args`] and [`fuse_run_config`] handle `--run-config` / `--node-config`.
//! - [`build_fab`] builds a FAB from an app directory, deterministically, like `flwr build`.
//! - [`Fab::unpack_to`] writes a FAB's files to a directory without following symlinks.
//!
//! # Layout
//!
//! - `error.rs`: [`Error`], one variant per kind of failure, with context.
//! - `read.rs`: [`Fab`], [`ReadLimits`], container checks, CONTENT verification.
//! - `content.rs`: the `.info/CONTENT` format.
//! - `manifest.rs`: [`Manifest`], [`Component`].
//! - `config.rs`: [`ConfigValue`], flattening, override parsing, fusing.
//! - `write.rs`: [`build_fab`], file selection, a byte-exact stored-ZIP writer.
//! - `gitignore.rs`: the `.gitignore` subset used when selecting files.
//! - `tomlw.rs`: a TOML writer formatting like Python's tomli-w.
//! - `unpack.rs`: [`Fab::unpack_to`].
//! - [`testing`]: [`testing::PyProject`], a `pyproject.toml` built from a few settings.

mod config;
mod content;
mod error;
mod gitignore;
mod manifest;
mod read;
pub mod testing;
mod tomlw;
mod unpack;
mod wire;
mod write;

pub use config::{flatten_table, fuse_run_config, parse_config_args, parse_config_overrides, ConfigMap, ConfigValue};
pub use error::{excerpt, Error, Result};
pub use indexmap;
pub use manifest::{Component, Manifest};
pub use read::{Fab, ReadLimits};
pub use wire::{from_scalar, fuse_wire_run_config, to_scalar, to_scalars};
pub use write::{build_fab, build_fab_with_limit, BuiltFab, BUNDLED_EXTENSIONS};

/// Flower's FAB size limit (`FAB_MAX_SIZE`): 10 MiB.
pub const FAB_MAX_SIZE: u64 = 10 * 1024 * 1024;

/// The manifest file inside a FAB.
pub const FAB_CONFIG_FILE: &str = "pyproject.toml";

/// The file list inside a FAB.
pub const CONTENT_PATH: &str = ".info/CONTENT";

/// How many hex digits of the hash appear in FAB file and install directory names.
pub const FAB_HASH_TRUNCATION: usize = 8;

/// Flower's `fab_hash`: lowercase hex SHA-256 of the whole FAB.
pub fn fab_hash(bytes: &[u8]) -> String {
    content::sha256_hex(bytes)
}
