//! FABs for tests: built from a [`PyProject`] (and nothing else), or from an app directory.

use std::path::Path;

use sepal_fab::testing::PyProject;
use sepal_proto::pb;

/// The FAB of an app that is only its `pyproject.toml`.
pub fn fab(pyproject: &PyProject) -> pb::Fab {
    let dir = tempfile::tempdir().expect("a temp dir");
    pyproject.write_to(dir.path()).expect("writing pyproject.toml");
    fab_from_dir(dir.path())
}

/// The FAB `sepal build` makes of the app directory `dir`.
pub fn fab_from_dir(dir: &Path) -> pb::Fab {
    let (content, hash_str, _) =
        sepal_fab::build_fab(dir).unwrap_or_else(|e| panic!("building a FAB of {}: {e}", dir.display()));
    pb::Fab { hash_str, content }
}
