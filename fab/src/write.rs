//! Building a FAB from an app directory, deterministically, as `flwr build` does.

use std::fs;
use std::path::{Path, PathBuf};

use crate::content;
use crate::error::{Error, Result};
use crate::gitignore::GitIgnore;
use crate::manifest::{Component, Manifest};
use crate::{tomlw, CONTENT_PATH, FAB_CONFIG_FILE, FAB_MAX_SIZE};

/// File extensions bundled into a FAB: Flower's `.py`, `.toml`, `.md`, plus Sepal's `.wasm`.
pub const BUNDLED_EXTENSIONS: [&str; 4] = ["py", "toml", "md", "wasm"];

/// Patterns ignored before the app's own `.gitignore` (Flower's built-in default).
const DEFAULT_IGNORES: [&str; 1] = ["__pycache__/"];

/// A FAB built in memory.
#[derive(Clone)]
pub struct BuiltFab {
    /// The archive bytes.
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub hash: String,
    /// `<publisher>.<name>.<version '.'→'-'>.<hash[:8]>.fab`.
    pub file_name: String,
    /// The app's manifest (with `[tool.flwr.federations]` removed from its document).
    pub manifest: Manifest,
}

impl std::fmt::Debug for BuiltFab {
    /// Shows the file name, hash and size (not the bytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltFab")
            .field("file_name", &self.file_name)
            .field("hash", &self.hash)
            .field("size", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Builds a FAB from `app_dir` with Flower's 10 MiB limit; returns (bytes, hash, file name).
///
/// See [`build_fab_with_limit`].
pub fn build_fab(app_dir: &Path) -> Result<(Vec<u8>, String, String)> {
    let built = build_fab_with_limit(app_dir, FAB_MAX_SIZE)?;
    Ok((built.bytes, built.hash, built.file_name))
}

/// Builds a FAB from `app_dir`, refusing a result over `max_size` bytes.
///
/// As `flwr build`: a ZIP whose entries are all stored (no compression), dated
/// 2024-10-01 00:00:00, Unix mode 0o600; `pyproject.toml` first (re-serialized like
/// tomli-w, without `[tool.flwr.federations]`), then the bundled files in path order, then
/// `.info/CONTENT`. Bundled: every regular file below `app_dir` (hidden directories
/// included, symlinks skipped) ending in `.py`, `.toml`, `.md` or `.wasm` (the last is
/// Sepal's addition), except files named `pyproject.toml` and paths ignored by
/// `__pycache__/` or the app's `.gitignore`. The same input gives the same bytes.
pub fn build_fab_with_limit(app_dir: &Path, max_size: u64) -> Result<BuiltFab> {
    let (manifest, pyproject) = load_manifest(app_dir)?;
    let files = select_files(app_dir)?;
    check_components(&manifest, &files)?;
    let bytes = write_archive(&pyproject, &files)?;
    let size = bytes.len() as u64;
    if size > max_size {
        return Err(Error::TooLarge { size, limit: max_size });
    }
    let hash = crate::fab_hash(&bytes);
    let file_name = manifest.fab_file_name(&hash);
    Ok(BuiltFab { bytes, hash, file_name, manifest })
}

/// Reads and validates `pyproject.toml`; returns the manifest and the bytes to bundle.
fn load_manifest(app_dir: &Path) -> Result<(Manifest, String)> {
    let path = app_dir.join(FAB_CONFIG_FILE);
    let text = fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
    let mut document: toml::Table =
        toml::from_str(&text).map_err(|cause| Error::Toml { what: path.display().to_string(), cause })?;
    if let Some(toml::Value::Table(flwr)) = document.get_mut("tool").and_then(|t| t.get_mut("flwr")) {
        flwr.remove("federations");
    }
    let serialized = tomlw::dumps(&document);
    Ok((Manifest::from_document(document)?, serialized))
}

/// A file to bundle: its archive path and where it is on disk.
struct Selected {
    components: Vec<String>,
    path: PathBuf,
}

impl Selected {
    fn archive_path(&self) -> String {
        self.components.join("/")
    }
}

/// Lists the files to bundle, sorted by path components (like Python's `sorted(paths)`).
fn select_files(app_dir: &Path) -> Result<Vec<Selected>> {
    let ignore = load_gitignore(app_dir)?;
    let mut files = Vec::new();
    walk(app_dir, &mut Vec::new(), &mut files)?;
    files.retain(|f| is_bundled(&f.components) && !ignore.is_ignored(&f.components));
    files.sort_by(|a, b| a.components.cmp(&b.components));
    Ok(files)
}

fn load_gitignore(app_dir: &Path) -> Result<GitIgnore> {
    let path = app_dir.join(".gitignore");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    Ok(GitIgnore::new(DEFAULT_IGNORES.into_iter().chain(text.lines())))
}

fn is_bundled(components: &[String]) -> bool {
    let name = Path::new(components.last().map_or("", String::as_str));
    let extension = name.extension().and_then(|e| e.to_str()).unwrap_or("");
    name != Path::new(FAB_CONFIG_FILE) && BUNDLED_EXTENSIONS.contains(&extension)
}

/// Collects every regular file below `dir` (symlinks are not followed nor collected).
fn walk(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<Selected>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io("inspecting", &path, e))?;
        if !(kind.is_dir() || kind.is_file()) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(Error::UnsafeTarget { path, reason: "the file name is not valid UTF-8" });
        };
        prefix.push(name);
        if kind.is_dir() {
            walk(&path, prefix, out)?;
        } else {
            out.push(Selected { components: prefix.clone(), path });
        }
        prefix.pop();
    }
    Ok(())
}

fn check_components(manifest: &Manifest, files: &[Selected]) -> Result<()> {
    for (component, reference) in [("serverapp", manifest.serverapp()), ("clientapp", manifest.clientapp())] {
        if let Component::Wasm(path) = reference {
            if !files.iter().any(|f| &f.archive_path() == path) {
                return Err(Error::MissingComponent { component, path: path.clone() });
            }
        }
    }
    Ok(())
}

fn write_archive(pyproject: &str, files: &[Selected]) -> Result<Vec<u8>> {
    let mut zip = StoredZip::default();
    zip.add(FAB_CONFIG_FILE, pyproject.as_bytes())?;
    let mut listing = String::new();
    for file in files {
        let bytes = fs::read(&file.path).map_err(|e| Error::io("reading", &file.path, e))?;
        let archive_path = file.archive_path();
        zip.add(&archive_path, &bytes)?;
        listing.push_str(&content::line(&archive_path, &bytes));
    }
    zip.add(CONTENT_PATH, listing.as_bytes())?;
    zip.finish()
}

/// A minimal ZIP writer laid out byte for byte like Python's `zipfile.writestr` with a
/// `ZipInfo` (stored, version 2.0, Unix, mode 0o600, fixed date, no extra fields).
#[derive(Default)]
struct StoredZip {
    out: Vec<u8>,
    central: Vec<u8>,
    count: u16,
}

/// MS-DOS date of 2024-10-01 (Flower's `FAB_DATE`); the time 00:00:00 is 0.
const DOS_DATE: u16 = ((2024 - 1980) << 9) | (10 << 5) | 1;
const DOS_TIME: u16 = 0;
const VERSION: u8 = 20;
const SYSTEM_UNIX: u8 = 3;
const EXTERNAL_ATTR: u32 = 0o600 << 16;
const UTF8_FLAG: u16 = 0x800;

impl StoredZip {
    fn add(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let too_big =
            |what: &str| Error::Build { reason: format!("{what} does not fit a classic ZIP archive (entry {name:?})") };
        let offset = u32::try_from(self.out.len()).map_err(|_| too_big("the archive"))?;
        let size = u32::try_from(data.len()).map_err(|_| too_big("the entry"))?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_big("the name"))?;
        self.count = self.count.checked_add(1).ok_or_else(|| too_big("the entry count"))?;
        let flags = if name.is_ascii() { 0 } else { UTF8_FLAG };
        let crc = crc32fast::hash(data);
        // Local file header.
        self.out.extend_from_slice(b"PK\x03\x04");
        self.out.extend_from_slice(&[VERSION, 0]);
        common_fields(&mut self.out, flags, crc, size, name_len);
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(data);
        // Central directory record.
        self.central.extend_from_slice(b"PK\x01\x02");
        self.central.extend_from_slice(&[VERSION, SYSTEM_UNIX, VERSION, 0]);
        common_fields(&mut self.central, flags, crc, size, name_len);
        self.central.extend_from_slice(&[0; 6]); // comment length, disk number, internal attributes
        self.central.extend_from_slice(&EXTERNAL_ATTR.to_le_bytes());
        self.central.extend_from_slice(&offset.to_le_bytes());
        self.central.extend_from_slice(name.as_bytes());
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<u8>> {
        let too_big = || Error::Build { reason: "the archive does not fit a classic ZIP archive".into() };
        let central_offset = u32::try_from(self.out.len()).map_err(|_| too_big())?;
        let central_size = u32::try_from(self.central.len()).map_err(|_| too_big())?;
        self.out.append(&mut self.central);
        self.out.extend_from_slice(b"PK\x05\x06");
        self.out.extend_from_slice(&[0; 4]); // disk numbers
        self.out.extend_from_slice(&self.count.to_le_bytes());
        self.out.extend_from_slice(&self.count.to_le_bytes());
        self.out.extend_from_slice(&central_size.to_le_bytes());
        self.out.extend_from_slice(&central_offset.to_le_bytes());
        self.out.extend_from_slice(&[0; 2]); // comment length
        Ok(self.out)
    }
}

/// Flags, method (stored), time, date, CRC, sizes, name length, extra length (0).
fn common_fields(out: &mut Vec<u8>, flags: u16, crc: u32, size: u32, name_len: u16) {
    for half in [flags, 0, DOS_TIME, DOS_DATE] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    for word in [crc, size, size] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_extensions() {
        let yes = |p: &str| is_bundled(&p.split('/').map(str::to_string).collect::<Vec<_>>());
        assert!(yes("a.py") && yes("b/c.toml") && yes("README.md") && yes("app.wasm"));
        assert!(!yes("pyproject.toml") && !yes("sub/pyproject.toml"));
        assert!(!yes("data.json") && !yes("LICENSE") && !yes(".md") && !yes("x.PY"));
    }

    #[test]
    fn zip_writer_output_is_readable() {
        let mut zip = StoredZip::default();
        zip.add("a.txt", b"hello").unwrap();
        zip.add("d/é.md", b"").unwrap();
        let bytes = zip.finish().unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        let mut entry = archive.by_index(1).unwrap();
        assert_eq!(entry.name(), "d/é.md");
        assert_eq!(entry.unix_mode(), Some(0o600));
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        assert!(data.is_empty());
    }
}
