//! Building FABs: determinism, Flower compatibility, file selection.

mod common;

use std::path::Path;

use common::*;
use sepal_fab::testing::PyProject;
use sepal_fab::{build_fab, build_fab_with_limit, Component, Error, Fab, ReadLimits};

fn wasm_pyproject() -> String {
    PyProject::new("wasmapp")
        .version("2.0.1")
        .components("server.wasm", "bin/client.wasm")
        .config("rounds", "3")
        .extra("[tool.flwr.federations]\ndefault = \"local\"\n\n[tool.flwr.federations.local]\naddress = \"127.0.0.1:9093\"\ninsecure = true\n")
        .to_toml()
}

fn wasm_app(dir: &Path) {
    write_tree(
        dir,
        &[
            ("pyproject.toml", &wasm_pyproject()),
            ("server.wasm", "\0asm server"),
            ("bin/client.wasm", "\0asm client"),
            ("README.md", "# wasm app\n"),
            ("notes.txt", "not bundled\n"),
        ],
    );
}

fn paths(fab: &Fab) -> Vec<String> {
    fab.files().map(|(p, _)| p.to_string()).collect()
}

#[test]
fn tinyapp_builds_byte_identical_to_flwr_build() {
    let (bytes, hash, file_name) = build_fab(&data("tinyapp")).unwrap();
    let flwr = std::fs::read(data(FLWR_FAB)).unwrap();
    assert_eq!(file_name, FLWR_FAB);
    assert_eq!(hash, sha256(&flwr));
    assert!(bytes == flwr, "built FAB differs from flwr build's");
}

#[test]
fn rich_pyproject_builds_byte_identical_to_flwr_build() {
    // Nested arrays, inline tables, arrays of tables, floats in exponent form, quoted
    // keys, dotted keys, non-ASCII and escaped strings, a datetime.
    let (bytes, _, file_name) = build_fab(&data("richapp")).unwrap();
    let flwr = std::fs::read(data(&file_name)).unwrap();
    assert!(bytes == flwr, "built FAB differs from flwr build's");
}

#[test]
fn build_is_deterministic() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    wasm_app(one.path());
    wasm_app(two.path());
    let first = build_fab(one.path()).unwrap();
    let again = build_fab(one.path()).unwrap();
    let elsewhere = build_fab(two.path()).unwrap();
    assert_eq!(first, again);
    assert_eq!(first, elsewhere);
    assert_eq!(first.1, sha256(&first.0));
    assert_eq!(first.2, format!("sepal.wasmapp.2-0-1.{}.fab", &first.1[..8]));
}

#[test]
fn build_then_read_round_trips_with_wasm_components() {
    let dir = tempfile::tempdir().unwrap();
    wasm_app(dir.path());
    let (bytes, hash, _) = build_fab(dir.path()).unwrap();
    let fab = Fab::read_verified(&bytes, &hash, &ReadLimits::default()).unwrap();
    assert_eq!(paths(&fab), ["pyproject.toml", "README.md", "bin/client.wasm", "server.wasm", ".info/CONTENT"]);
    let m = fab.manifest();
    assert_eq!(m.fab_id(), "sepal/wasmapp");
    assert_eq!(m.clientapp(), &Component::Wasm("bin/client.wasm".into()));
    assert_eq!(fab.wasm_component(m.serverapp()), Some(&b"\0asm server"[..]));
    let pyproject = std::str::from_utf8(fab.file("pyproject.toml").unwrap()).unwrap();
    assert!(!pyproject.contains("federations"), "{pyproject}");
    assert!(pyproject.contains("[tool.flwr.app.config]\nrounds = 3\n"), "{pyproject}");
}

#[test]
fn gitignore_pycache_hidden_dirs_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("pyproject.toml", PYPROJECT.as_str()),
            (".gitignore", "# comment\nsecret.py\n/build/\ndocs/*.md\n!docs/KEEP.md\n"),
            ("demo/server.py", "s"),
            ("demo/secret.py", "x"),
            ("demo/__pycache__/server.py", "cached"),
            ("build/gen.py", "generated"),
            ("nested/build/kept.py", "k"),
            ("docs/a.md", "a"),
            ("docs/KEEP.md", "keep"),
            (".hidden/h.py", "h"),
            ("sub/pyproject.toml", "[x]\n"),
            ("data.json", "{}"),
        ],
    );
    std::os::unix::fs::symlink(dir.path().join("demo/server.py"), dir.path().join("link.py")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    write_tree(outside.path(), &[("leak.py", "secret")]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();

    let (bytes, _, _) = build_fab(dir.path()).unwrap();
    let fab = Fab::read(&bytes, &ReadLimits::default()).unwrap();
    assert_eq!(
        paths(&fab),
        ["pyproject.toml", ".hidden/h.py", "demo/server.py", "docs/KEEP.md", "nested/build/kept.py", ".info/CONTENT"]
    );
}

#[test]
fn files_are_sorted_by_path_components() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("pyproject.toml", PYPROJECT.as_str()), ("a.py", ""), ("a/b.py", ""), ("a-b.py", ""), ("B.py", "")],
    );
    let (bytes, _, _) = build_fab(dir.path()).unwrap();
    let fab = Fab::read(&bytes, &ReadLimits::default()).unwrap();
    // Python sorts Path objects part by part: "a" < "a-b.py" < "a.py".
    assert_eq!(paths(&fab)[1..5], ["B.py", "a/b.py", "a-b.py", "a.py"]);
}

#[test]
fn missing_wasm_component_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    wasm_app(dir.path());
    std::fs::write(dir.path().join(".gitignore"), "*.wasm\n").unwrap();
    let err = build_fab(dir.path()).unwrap_err();
    assert!(matches!(err, Error::MissingComponent { component: "serverapp", .. }), "{err}");
}

#[test]
fn build_size_limit_is_a_parameter() {
    let dir = tempfile::tempdir().unwrap();
    wasm_app(dir.path());
    let big = vec![7u8; 11 << 20];
    std::fs::write(dir.path().join("server.wasm"), &big).unwrap();
    let err = build_fab(dir.path()).unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 10_485_760, .. }), "{err}");
    let built = build_fab_with_limit(dir.path(), 64 << 20).unwrap();
    let fab = Fab::read(&built.bytes, &ReadLimits::for_fab_size(64 << 20)).unwrap();
    assert_eq!(fab.wasm_component(fab.manifest().serverapp()).map(<[u8]>::len), Some(big.len()));
}

#[test]
fn invalid_manifest_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("pyproject.toml", "[project]\nname = \"x\"\n")]);
    let err = build_fab(dir.path()).unwrap_err();
    assert!(err.to_string().contains("[project] version is missing"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = build_fab(empty.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}
