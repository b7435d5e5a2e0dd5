//! `sepal build`: bundle an app directory into a FAB, like `flwr build` but keeping `.wasm`
//! components.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use sepal_fab::{Fab, Manifest, ReadLimits, FAB_MAX_SIZE};
use serde::Serialize;

use crate::output::{out, out_json, report, OutputFormat};

/// `sepal build` arguments.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Path of the Flower app to bundle into a FAB.
    #[arg(value_name = "APP_DIR", default_value = ".")]
    app_dir: PathBuf,
    /// The same as APP_DIR (`flwr build --app` spelling).
    #[arg(long = "app", value_name = "APP_DIR", conflicts_with = "app_dir", hide = true)]
    app: Option<PathBuf>,
    /// Directory to write the FAB to (created if missing).
    #[arg(short = 'o', long = "out-dir", value_name = "OUT_DIR", default_value = ".")]
    out_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    format: OutputFormat,
}

/// A FAB in memory, built from an app directory or read from a `.fab` file.
pub struct LoadedFab {
    /// The archive.
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub hash: String,
    /// `<publisher>.<name>.<version>.<hash8>.fab`.
    pub file_name: String,
    /// The app's manifest.
    pub manifest: Manifest,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct BuildJson<'a> {
    success: bool,
    fab_path: String,
    fab_filename: &'a str,
    fab_id: String,
    fab_name: &'a str,
    fab_version: &'a str,
    fab_hash: &'a str,
}

impl BuildArgs {
    /// Builds the FAB and writes it to the output directory.
    pub async fn run(self) -> anyhow::Result<()> {
        let format = self.format;
        report(format, self.build())
    }

    fn build(self) -> anyhow::Result<()> {
        let app_dir = self.app.unwrap_or(self.app_dir);
        if !app_dir.is_dir() {
            bail!("{} is not an app directory", app_dir.display());
        }
        let fab = build_dir(&app_dir)?;
        std::fs::create_dir_all(&self.out_dir)
            .with_context(|| format!("cannot create the output directory {}", self.out_dir.display()))?;
        let path = self.out_dir.join(&fab.file_name);
        write_atomically(&path, &fab.bytes)?;
        match self.format {
            OutputFormat::Json => out_json(&BuildJson {
                success: true,
                fab_path: path.display().to_string(),
                fab_filename: &fab.file_name,
                fab_id: fab.manifest.fab_id(),
                fab_name: fab.manifest.name(),
                fab_version: fab.manifest.version(),
                fab_hash: &fab.hash,
            }),
            OutputFormat::Default => {
                out(&format!("Successfully built {}\nFAB hash (sha256): {}\n", path.display(), fab.hash))
            }
        }
    }
}

/// Builds a FAB from an app directory in memory, with Flower's 10 MiB limit.
pub fn build_dir(app_dir: &Path) -> anyhow::Result<LoadedFab> {
    let built = sepal_fab::build_fab_with_limit(app_dir, FAB_MAX_SIZE).map_err(|e| build_error(app_dir, e))?;
    Ok(LoadedFab { bytes: built.bytes, hash: built.hash, file_name: built.file_name, manifest: built.manifest })
}

/// Reads and checks a `.fab` file (the same checks as the SuperLink makes).
pub fn read_fab_file(path: &Path) -> anyhow::Result<LoadedFab> {
    let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if size > FAB_MAX_SIZE {
        bail!("{} is {size} bytes; a FAB may be at most {FAB_MAX_SIZE} bytes", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let fab =
        Fab::read(&bytes, &ReadLimits::default()).map_err(|e| anyhow!("{} is not a valid FAB: {e}", path.display()))?;
    let hash = fab.hash().to_string();
    let manifest = fab.manifest().clone();
    let file_name = manifest.fab_file_name(&hash);
    Ok(LoadedFab { bytes, hash, file_name, manifest })
}

/// A build error with what to do about it.
fn build_error(app_dir: &Path, error: sepal_fab::Error) -> anyhow::Error {
    match &error {
        sepal_fab::Error::MissingComponent { path, .. } => anyhow!(
            "cannot build a FAB from {dir}: {error}. Build the Wasm component first (for example \
             `cargo build --release --target wasm32-wasip2`) and put it at {dir}/{path}; \
             a file the app's .gitignore ignores is left out too",
            dir = app_dir.display()
        ),
        _ => anyhow!("cannot build a FAB from {}: {error}", app_dir.display()),
    }
}

/// Writes through a temporary file in the same directory, so a reader never sees half a FAB.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("fab");
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("cannot write {}: {e}", path.display())
    })
}
