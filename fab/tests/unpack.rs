//! Unpacking FABs to disk.

mod common;

use common::*;
use sepal_fab::{Error, Fab, ReadLimits};

fn demo_fab() -> Fab {
    let bytes = fab_of(&[("demo/pkg/mod.py", b"x = 1\n"), ("README.md", b"# hi\n")]);
    Fab::read(&bytes, &ReadLimits::default()).unwrap()
}

#[test]
fn unpacks_files_without_info_dir() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("apps/acme.demo");
    demo_fab().unpack_to(&target).unwrap();
    assert_eq!(std::fs::read(target.join("demo/pkg/mod.py")).unwrap(), b"x = 1\n");
    assert_eq!(std::fs::read_to_string(target.join("pyproject.toml")).unwrap(), *PYPROJECT);
    assert!(!target.join(".info").exists());
    // Unpacking again overwrites regular files.
    std::fs::write(target.join("README.md"), "changed").unwrap();
    demo_fab().unpack_to(&target).unwrap();
    assert_eq!(std::fs::read(target.join("README.md")).unwrap(), b"# hi\n");
}

#[test]
fn refuses_a_symlink_in_place_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep").unwrap();
    let target = dir.path().join("app");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&victim, target.join("README.md")).unwrap();
    let err = demo_fab().unpack_to(&target).unwrap_err();
    assert!(matches!(err, Error::UnsafeTarget { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

#[test]
fn refuses_a_symlink_in_place_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = dir.path().join("app");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&elsewhere, target.join("demo")).unwrap();
    let err = demo_fab().unpack_to(&target).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}
