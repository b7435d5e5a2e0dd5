//! The persisted precompiled-component cache ([`SandboxConfig::artifact_dir`]).
//!
//! A precompiled component (`.cwasm`) is native code that wasmtime maps executable without
//! any integrity check (a flipped byte was accepted in the research), so:
//!
//! - the directory is created with mode 0700 (and set to it if it exists): only the host
//!   user can write there;
//! - each file is named by the component's sha256 and the engine's compatibility hash
//!   (`Engine::precompile_compatibility_hash`: the wasmtime version and every setting that
//!   affects code), so a different engine never
//!   picks up another engine's code;
//! - each file records the sha256 of the artifact it carries, and the bytes are checked
//!   against it *in memory*, then deserialized from those same bytes (no window between
//!   the check and the use);
//! - files are written to a temporary name and renamed into place.
//!
//! A file that fails any check is removed and the component is compiled again.
//!
//! [`SandboxConfig::artifact_dir`]: crate::SandboxConfig::artifact_dir

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::SandboxError;

const MAGIC: &[u8] = b"SEPAL-CWASM-1\n";
const HEADER: usize = MAGIC.len() + 64 + 1;

/// Feeds `Hash` output into sha256 (stable across processes, unlike `DefaultHasher`).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(crate) struct ArtifactDir {
    dir: PathBuf,
    engine_key: String,
    max_bytes: u64,
}

impl ArtifactDir {
    /// Creates (or adopts) the directory and restricts it to the host user.
    pub(crate) fn open(dir: &Path, max_bytes: u64, engine: &Engine) -> Result<Self, SandboxError> {
        let config_err = |what: &str, e: std::io::Error| {
            SandboxError::Config(format!("artifact dir {}: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| config_err("create", e))?;
        let meta = std::fs::symlink_metadata(dir).map_err(|e| config_err("stat", e))?;
        if !meta.is_dir() {
            return Err(SandboxError::Config(format!(
                "artifact dir {} is not a directory (or is a symlink)",
                dir.display()
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Succeeds only for the owner (or root): so the host user owns it afterwards.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| config_err("restrict to mode 0700", e))?;
        }
        let mut hasher = ShaHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Ok(ArtifactDir { dir: dir.to_path_buf(), engine_key, max_bytes })
    }

    fn path(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}-{}.cwasm", hex::encode(digest), self.engine_key))
    }

    /// The component from its verified artifact, or `None` (absent, corrupt, or
    /// incompatible; a bad file is removed).
    pub(crate) fn load(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let path = self.path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read a precompiled component: {e}");
                return None;
            }
        };
        match self.deserialize_verified(engine, &bytes) {
            Ok(component) => Some(component),
            Err(reason) => {
                tracing::warn!(
                    path = %path.display(),
                    "discarding a precompiled component: {reason}"
                );
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Checks a file's recorded sha256 against its artifact and loads the artifact.
    /// Also accepts a bare artifact straight from `precompile_component` (no header), which
    /// never left memory.
    pub(crate) fn deserialize_verified(&self, engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
        let artifact = if bytes.starts_with(MAGIC) {
            if bytes.len() < HEADER || bytes[HEADER - 1] != b'\n' {
                return Err("truncated header".into());
            }
            let recorded = &bytes[MAGIC.len()..HEADER - 1];
            let artifact = &bytes[HEADER..];
            let actual = hex::encode(Sha256::digest(artifact));
            if actual.as_bytes() != recorded {
                return Err(format!("sha256 mismatch: recorded {}, found {actual}", String::from_utf8_lossy(recorded)));
            }
            artifact
        } else {
            bytes
        };
        deserialize(engine, artifact).map_err(|e| format!("wasmtime refused it: {e}"))
    }

    /// Writes the artifact with its sha256, atomically. Failures are logged, not fatal.
    pub(crate) fn store(&self, digest: &[u8; 32], artifact: &[u8]) {
        let path = self.path(digest);
        let tmp = self.dir.join(format!(
            ".{}.tmp-{}-{:?}",
            hex::encode(&digest[..8]),
            std::process::id(),
            std::thread::current().id()
        ));
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(hex::encode(Sha256::digest(artifact)).as_bytes())?;
            file.write_all(b"\n")?;
            file.write_all(artifact)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), "cannot persist a precompiled component: {e}");
        }
        self.prune();
    }

    /// Keeps the directory under its byte budget: the artifacts written longest ago go
    /// first (every new component adds one, and FABs come from strangers).
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), "removed a precompiled component to stay within the cache's size");
                total = total.saturating_sub(len);
            }
        }
    }
}

/// The one unsafe operation in the crate.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be a precompiled component made
    // by a compatible wasmtime (it is native code). `artifact` either came straight from
    // `Engine::precompile_component` in this process, or from a file in the host-only (0700)
    // artifact directory whose sha256 was just checked against the value recorded when this
    // process family wrote it; wasmtime itself checks the version and engine settings.
    unsafe { Component::deserialize(engine, artifact) }
}
