//! Reading and checking a FAB from memory.

use std::collections::HashSet;
use std::io::{Cursor, Read};

use indexmap::IndexMap;
use zip::ZipArchive;

use crate::content;
use crate::error::{Error, Result};
use crate::manifest::{Component, Manifest};
use crate::{CONTENT_PATH, FAB_CONFIG_FILE, FAB_MAX_SIZE};

/// Size and count limits applied while reading a FAB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest accepted archive, in bytes (Flower: 10 MiB).
    pub max_fab_size: u64,
    /// Largest number of entries in the central directory.
    pub max_entries: usize,
    /// Largest total of decompressed entry sizes, in bytes (zip bomb guard).
    pub max_unpacked_size: u64,
}

impl Default for ReadLimits {
    /// Flower's 10 MiB archive limit, 10 000 entries, 40 MiB unpacked.
    fn default() -> Self {
        ReadLimits::for_fab_size(FAB_MAX_SIZE)
    }
}

impl ReadLimits {
    /// ReadLimits for archives up to `max_fab_size` bytes: unpacked data may be 4 times that
    /// (room for deflated entries of FABs not made by `flwr build`), 10 000 entries.
    pub fn for_fab_size(max_fab_size: u64) -> Self {
        ReadLimits { max_fab_size, max_entries: 10_000, max_unpacked_size: max_fab_size.saturating_mul(4) }
    }
}

/// A FAB read into memory and checked: safe paths, `.info/CONTENT` verified, manifest valid.
#[derive(Clone)]
pub struct Fab {
    files: IndexMap<String, Vec<u8>>,
    manifest: Manifest,
    hash: String,
}

impl Fab {
    /// Parses and checks a FAB.
    ///
    /// Refuses archives over `limits.max_fab_size`, more than `limits.max_entries`
    /// entries, entries that are not safe relative paths (absolute, `..`, `.`, empty
    /// components, NUL, backslash), symlinks, encrypted entries, duplicate names, data
    /// expanding past `limits.max_unpacked_size` (sizes in headers are not trusted), a
    /// missing or invalid `pyproject.toml`, a missing `.info/CONTENT`, any mismatch
    /// between CONTENT and the files (each listed file must exist with that SHA-256 and
    /// size; every file but `pyproject.toml` and `.info/CONTENT` must be listed), and a
    /// `.wasm` component named in `pyproject.toml` that is not in the archive.
    pub fn read(bytes: &[u8], limits: &ReadLimits) -> Result<Fab> {
        let size = bytes.len() as u64;
        if size > limits.max_fab_size {
            return Err(Error::TooLarge { size, limit: limits.max_fab_size });
        }
        let files = read_entries(bytes, limits)?;
        let manifest = parse_manifest(&files)?;
        verify_content(&files)?;
        check_components(&manifest, &files)?;
        Ok(Fab { files, manifest, hash: crate::fab_hash(bytes) })
    }

    /// Checks that `bytes` hash to `expected_hex` (case-insensitive hex SHA-256).
    pub fn verify_hash(bytes: &[u8], expected_hex: &str) -> Result<()> {
        let actual = crate::fab_hash(bytes);
        if actual.eq_ignore_ascii_case(expected_hex) {
            Ok(())
        } else {
            Err(Error::HashMismatch { expected: expected_hex.into(), actual })
        }
    }

    /// [`Fab::read`], then a check that the bytes hash to `expected_hex`.
    pub fn read_verified(bytes: &[u8], expected_hex: &str, limits: &ReadLimits) -> Result<Fab> {
        Self::verify_hash(bytes, expected_hex)?;
        Self::read(bytes, limits)
    }

    /// The FAB hash (lowercase hex SHA-256 of the archive bytes).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The parsed `pyproject.toml`.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// All files, in archive order, including `pyproject.toml` and `.info/CONTENT`.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// One file by its path in the archive.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// The bytes of a Wasm component; `None` for a Python component.
    pub fn wasm_component(&self, component: &Component) -> Option<&[u8]> {
        match component {
            Component::Wasm(path) => self.file(path),
            Component::Python(_) => None,
        }
    }
}

impl std::fmt::Debug for Fab {
    /// Shows the hash, the FAB id and each file's size (not the bytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<(&str, usize)> = self.files.iter().map(|(p, b)| (p.as_str(), b.len())).collect();
        f.debug_struct("Fab")
            .field("hash", &self.hash)
            .field("fab_id", &self.manifest.fab_id())
            .field("version", &self.manifest.version())
            .field("files", &sizes)
            .finish()
    }
}

/// Checks that an entry name is a safe relative path (a trailing `/` marks a directory).
pub(crate) fn check_entry_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.contains('\0') {
        return Err("the name contains NUL");
    }
    if name.contains('\\') {
        return Err("the name contains a backslash");
    }
    if name.starts_with('/') {
        return Err("the path is absolute");
    }
    let body = name.strip_suffix('/').unwrap_or(name);
    for component in body.split('/') {
        match component {
            "" => return Err("the path has an empty component"),
            "." => return Err("the path has a '.' component"),
            ".." => return Err("the path has a '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Reads every file entry into memory, enforcing the container rules and limits.
fn read_entries(bytes: &[u8], limits: &ReadLimits) -> Result<IndexMap<String, Vec<u8>>> {
    let malformed = |e: zip::result::ZipError| Error::Malformed { reason: e.to_string() };
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(malformed)?;
    check_central_directory(bytes, &archive, limits)?;
    let mut files = IndexMap::with_capacity(archive.len());
    let mut budget = limits.max_unpacked_size;
    for index in 0..archive.len() {
        let Some(name) = check_entry(&mut archive, index)? else {
            continue; // a directory entry
        };
        let data = read_data(&mut archive, index, &name, &mut budget, limits)?;
        if files.insert(name.clone(), data).is_some() {
            return Err(Error::DuplicateEntry { name });
        }
    }
    check_no_file_dir_clash(&files)?;
    Ok(files)
}

/// Checks one entry's metadata; returns its name, or `None` for a directory entry.
fn check_entry(archive: &mut ZipArchive<Cursor<&[u8]>>, index: usize) -> Result<Option<String>> {
    let entry = archive.by_index_raw(index).map_err(|e| Error::Malformed { reason: format!("entry #{index}: {e}") })?;
    let name = entry.name().to_string();
    check_entry_name(&name).map_err(|reason| Error::UnsafePath { name: name.clone(), reason })?;
    if entry.enclosed_name().is_none() {
        return Err(Error::UnsafePath { name, reason: "the path leaves the archive" });
    }
    if entry.is_symlink() {
        return Err(Error::Symlink { name });
    }
    if entry.encrypted() {
        return Err(Error::Encrypted { name });
    }
    Ok((!entry.is_dir()).then_some(name))
}

/// Decompresses one entry, never past the remaining unpacked-size budget.
fn read_data(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    index: usize,
    name: &str,
    budget: &mut u64,
    limits: &ReadLimits,
) -> Result<Vec<u8>> {
    let entry_error = |cause| Error::Entry { name: name.into(), cause };
    let entry = archive.by_index(index).map_err(entry_error)?;
    let hint = entry.size().min(*budget).min(PREALLOCATE_CAP) as usize;
    let mut data = Vec::with_capacity(hint);
    entry.take(budget.saturating_add(1)).read_to_end(&mut data).map_err(|e| entry_error(e.into()))?;
    let len = data.len() as u64;
    if len > *budget {
        return Err(Error::EntryTooLarge { name: name.into(), limit: limits.max_unpacked_size });
    }
    *budget -= len;
    Ok(data)
}

/// Upper bound for pre-allocation from an (untrusted) header size.
const PREALLOCATE_CAP: u64 = 1 << 20;

/// Walks the raw central directory: the zip crate collapses duplicate names, so count and
/// compare them here. Also refuses data before the archive and too many entries.
fn check_central_directory(bytes: &[u8], archive: &ZipArchive<Cursor<&[u8]>>, limits: &ReadLimits) -> Result<()> {
    if archive.offset() != 0 {
        return Err(Error::Malformed { reason: format!("{} bytes of data before the first entry", archive.offset()) });
    }
    let names = central_directory_names(bytes, archive.central_directory_start(), limits.max_entries)?;
    let mut seen = HashSet::with_capacity(names.len());
    for name in &names {
        if !seen.insert(*name) {
            let name = String::from_utf8_lossy(name).into_owned();
            return Err(Error::DuplicateEntry { name });
        }
    }
    if names.len() != archive.len() {
        return Err(Error::Malformed {
            reason: format!("central directory has {} records but the archive lists {}", names.len(), archive.len()),
        });
    }
    Ok(())
}

/// Raw names of the contiguous central directory records starting at `start`.
fn central_directory_names(bytes: &[u8], start: u64, max_entries: usize) -> Result<Vec<&[u8]>> {
    const SIGNATURE: &[u8] = b"PK\x01\x02";
    const FIXED: usize = 46;
    let record_at = |pos: usize| bytes.get(pos..).filter(|rest| rest.len() >= FIXED && rest.starts_with(SIGNATURE));
    let mut pos = usize::try_from(start).unwrap_or(usize::MAX);
    let mut names = Vec::new();
    while let Some(record) = record_at(pos) {
        if names.len() == max_entries {
            return Err(Error::TooManyEntries { limit: max_entries });
        }
        let u16_at = |at: usize| u16::from_le_bytes([record[at], record[at + 1]]) as usize;
        let name_end = FIXED + u16_at(28);
        let name = record
            .get(FIXED..name_end)
            .ok_or_else(|| Error::Malformed { reason: "truncated central directory".into() })?;
        names.push(name);
        pos += name_end + u16_at(30) + u16_at(32);
    }
    Ok(names)
}

/// Refuses a path that is both a file and a parent directory of another file.
fn check_no_file_dir_clash(files: &IndexMap<String, Vec<u8>>) -> Result<()> {
    for path in files.keys() {
        let mut parent = path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            if files.contains_key(dir) {
                return Err(Error::UnsafePath { name: dir.into(), reason: "the path is both a file and a directory" });
            }
            parent = dir;
        }
    }
    Ok(())
}

fn utf8<'a>(files: &'a IndexMap<String, Vec<u8>>, name: &'static str) -> Result<&'a str> {
    let bytes = files.get(name).ok_or(Error::MissingFile { name })?;
    std::str::from_utf8(bytes).map_err(|_| Error::NotUtf8 { what: name.into() })
}

fn parse_manifest(files: &IndexMap<String, Vec<u8>>) -> Result<Manifest> {
    Manifest::parse(utf8(files, FAB_CONFIG_FILE)?)
}

/// Checks `.info/CONTENT` against the files, both ways.
fn verify_content(files: &IndexMap<String, Vec<u8>>) -> Result<()> {
    let listings = content::parse(utf8(files, CONTENT_PATH)?)?;
    for (path, listing) in &listings {
        let bytes = files
            .get(path)
            .ok_or_else(|| Error::ContentMismatch { path: path.clone(), reason: "listed but not in the FAB".into() })?;
        content::check(path, bytes, listing)?;
    }
    let unlisted = files.keys().find(|p| *p != FAB_CONFIG_FILE && *p != CONTENT_PATH && !listings.contains_key(*p));
    match unlisted {
        Some(path) => Err(Error::NotListed { path: path.clone() }),
        None => Ok(()),
    }
}

fn check_components(manifest: &Manifest, files: &IndexMap<String, Vec<u8>>) -> Result<()> {
    let components = [("serverapp", manifest.serverapp()), ("clientapp", manifest.clientapp())];
    for (component, reference) in components {
        if let Component::Wasm(path) = reference {
            if !files.contains_key(path) {
                return Err(Error::MissingComponent { component, path: path.clone() });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        for good in ["a.py", "pkg/mod.py", ".info/CONTENT", "dir/", "a..b/c"] {
            assert!(check_entry_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/x", "../x", "a/../b", "a//b", "./a", "a\\b", "a\0b", "a/./b"] {
            assert!(check_entry_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_limits_are_flowers() {
        let limits = ReadLimits::default();
        assert_eq!(limits.max_fab_size, 10_485_760);
        assert_eq!(limits.max_unpacked_size, 4 * 10_485_760);
    }
}
