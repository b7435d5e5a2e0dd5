//! Writing a FAB's files to disk without ever leaving the target directory.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::read::Fab;

impl Fab {
    /// Writes the app's files below `dir` (created if missing), as `flwr install` leaves
    /// them: every file except the `.info/` metadata.
    ///
    /// Entry paths were checked when the FAB was read (relative, no `..`), and here no
    /// symlink is followed: an existing symlink where a directory or file is to be
    /// written is refused, and files are created with `create_new` (an existing regular
    /// file is removed first, so a symlink planted in between makes the write fail).
    /// `dir` itself is trusted.
    pub fn unpack_to(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        for (path, bytes) in self.files() {
            if !path.starts_with(".info/") {
                write_file(dir, path, bytes)?;
            }
        }
        Ok(())
    }
}

fn write_file(root: &Path, relative: &str, bytes: &[u8]) -> Result<()> {
    let mut target = root.to_path_buf();
    let mut components = relative.split('/').peekable();
    while let Some(component) = components.next() {
        target.push(component);
        if components.peek().is_some() {
            ensure_dir(&target)?;
        }
    }
    clear_file(&target)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|e| Error::io("creating", &target, e))?;
    file.write_all(bytes).map_err(|e| Error::io("writing", &target, e))
}

/// Makes sure `path` is a real directory (not a symlink), creating it if missing.
fn ensure_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(refuse(path, "it is a symbolic link")),
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(refuse(path, "it exists and is not a directory")),
        Err(e) if e.kind() == ErrorKind::NotFound => fs::create_dir(path).map_err(|e| Error::io("creating", path, e)),
        Err(e) => Err(Error::io("inspecting", path, e)),
    }
}

/// Removes an existing regular file at `path`; refuses symlinks and directories.
fn clear_file(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(refuse(path, "it is a symbolic link")),
        Ok(meta) if meta.is_dir() => Err(refuse(path, "it is a directory")),
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io("replacing", path, e)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("inspecting", path, e)),
    }
}

fn refuse(path: &Path, reason: &'static str) -> Error {
    Error::UnsafeTarget { path: PathBuf::from(path), reason }
}
