//! Helpers shared by the integration tests: fixtures and hand-made archives.

#![allow(dead_code)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use sepal_fab::testing::PyProject;

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// The FAB `flwr build` (1.20.0) made from `tests/data/tinyapp`.
pub const FLWR_FAB: &str = "research.tinyapp.1-0-0.3e044736.fab";

/// Path of a file under `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Lowercase hex SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A minimal valid manifest with Python components.
pub static PYPROJECT: LazyLock<String> =
    LazyLock::new(|| PyProject::new("demo").version("0.1.0").publisher("acme").config("rounds", "3").to_toml());

/// The CONTENT text for `files`.
pub fn content(files: &[(&str, &[u8])]) -> String {
    files.iter().map(|(path, bytes)| format!("{path},{},{}\n", sha256(bytes), bytes.len() * 8)).collect()
}

/// A ZIP with the given entries, all with `method`.
pub fn zip_of(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A valid FAB: `pyproject` (PYPROJECT), the files, and a matching CONTENT.
pub fn fab_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    fab_with(files, &content(files))
}

/// A FAB with the given files and CONTENT text (matching or not).
pub fn fab_with(files: &[(&str, &[u8])], content: &str) -> Vec<u8> {
    let mut entries: Vec<(&str, &[u8])> = vec![("pyproject.toml", PYPROJECT.as_bytes())];
    entries.extend_from_slice(files);
    entries.push((".info/CONTENT", content.as_bytes()));
    zip_of(&entries, CompressionMethod::Stored)
}

/// Replaces every occurrence of `from` by `to` (same length) in `bytes`.
pub fn patch(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    count
}

/// Writes `files` (path, text) below `dir`, creating parent directories.
pub fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
}
