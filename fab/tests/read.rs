//! Reading FABs: the real `flwr build` output, and hostile or broken archives.

mod common;

use common::*;
use sepal_fab::{Component, ConfigValue, Error, Fab, ReadLimits};
use zip::CompressionMethod;

fn read(bytes: &[u8]) -> Result<Fab, Error> {
    Fab::read(bytes, &ReadLimits::default())
}

#[test]
fn real_flwr_fab_reads_and_verifies() {
    let bytes = std::fs::read(data(FLWR_FAB)).unwrap();
    let fab = read(&bytes).unwrap();
    assert_eq!(fab.hash(), sha256(&bytes));
    assert!(FLWR_FAB.contains(&fab.hash()[..8]));
    Fab::verify_hash(&bytes, fab.hash()).unwrap();
    let m = fab.manifest();
    assert_eq!(m.fab_id(), "research/tinyapp");
    assert_eq!(m.version(), "1.0.0");
    assert_eq!(m.fab_file_name(fab.hash()), FLWR_FAB);
    assert_eq!(m.serverapp(), &Component::Python("tinyapp.server_app:app".into()));
    assert_eq!(m.run_config()["lr"], ConfigValue::Float(0.1));
    assert_eq!(m.run_config()["num-server-rounds"], ConfigValue::Int(2));
    let paths: Vec<&str> = fab.files().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        ["pyproject.toml", "tinyapp/__init__.py", "tinyapp/client_app.py", "tinyapp/server_app.py", ".info/CONTENT"]
    );
    let source = std::fs::read(data("tinyapp/tinyapp/client_app.py")).unwrap();
    assert_eq!(fab.file("tinyapp/client_app.py"), Some(source.as_slice()));
}

#[test]
fn hash_mismatch_is_reported_with_both_hashes() {
    let bytes = std::fs::read(data(FLWR_FAB)).unwrap();
    let wrong = "0".repeat(64);
    let err = Fab::read_verified(&bytes, &wrong, &ReadLimits::default()).unwrap_err();
    match err {
        Error::HashMismatch { expected, actual } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, sha256(&bytes));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_minimal_hand_made_fab_reads() {
    let fab = read(&fab_of(&[("demo/server.py", b"x = 1\n")])).unwrap();
    assert_eq!(fab.manifest().fab_id(), "acme/demo");
}

#[test]
fn deflated_entries_are_read() {
    let files: [(&str, &[u8]); 1] = [("demo/a.py", b"print('hi')\n")];
    let mut entries: Vec<(&str, &[u8])> = vec![("pyproject.toml", PYPROJECT.as_bytes())];
    entries.extend_from_slice(&files);
    let listing = content(&files);
    entries.push((".info/CONTENT", listing.as_bytes()));
    let fab = read(&zip_of(&entries, CompressionMethod::Deflated)).unwrap();
    assert_eq!(fab.file("demo/a.py"), Some(&b"print('hi')\n"[..]));
}

#[test]
fn path_traversal_entry_is_refused() {
    let err = read(&fab_of(&[("../evil.py", b"boom")])).unwrap_err();
    assert!(matches!(err, Error::UnsafePath { ref name, .. } if name == "../evil.py"), "{err}");
    let err = read(&fab_of(&[("a/../../evil.py", b"boom")])).unwrap_err();
    assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
}

#[test]
fn absolute_path_entry_is_refused() {
    let err = read(&fab_of(&[("/etc/evil.py", b"boom")])).unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
}

#[test]
fn backslash_entry_is_refused() {
    let err = read(&fab_of(&[("..\\evil.py", b"boom")])).unwrap_err();
    assert!(err.to_string().contains("backslash"), "{err}");
}

#[test]
fn symlink_entry_is_refused() {
    use std::io::Cursor;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    writer.add_symlink("link.py", "/etc/passwd", options).unwrap();
    let bytes = writer.finish().unwrap().into_inner();
    let err = read(&bytes).unwrap_err();
    assert!(matches!(err, Error::Symlink { ref name } if name == "link.py"), "{err}");
}

#[test]
fn oversized_archive_is_refused_before_parsing() {
    let bytes = vec![0u8; 10_485_760 + 1];
    let err = read(&bytes).unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 10_485_761, limit: 10_485_760 }), "{err}");
    let small = ReadLimits::for_fab_size(100);
    let err = Fab::read(&std::fs::read(data(FLWR_FAB)).unwrap(), &small).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn too_many_entries_are_refused() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}.py")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let limits = ReadLimits { max_entries: 10, ..ReadLimits::default() };
    let err = Fab::read(&fab_of(&files), &limits).unwrap_err();
    assert!(matches!(err, Error::TooManyEntries { limit: 10 }), "{err}");
}

#[test]
fn zip_bomb_entry_is_refused() {
    // 8 MiB of zeros deflate to a few KiB.
    let zeros = vec![0u8; 8 << 20];
    let listing = content(&[("bomb.py", &zeros)]);
    let entries: [(&str, &[u8]); 3] =
        [("pyproject.toml", PYPROJECT.as_bytes()), ("bomb.py", &zeros), (".info/CONTENT", listing.as_bytes())];
    let bytes = zip_of(&entries, CompressionMethod::Deflated);
    assert!(bytes.len() < 100 << 10, "{}", bytes.len());
    let limits = ReadLimits { max_unpacked_size: 1 << 20, ..ReadLimits::default() };
    let err = Fab::read(&bytes, &limits).unwrap_err();
    assert!(matches!(err, Error::EntryTooLarge { ref name, .. } if name == "bomb.py"), "{err}");
}

#[test]
fn zip_bomb_with_lying_size_headers_is_refused() {
    let zeros = vec![0u8; 4 << 20];
    let entries: [(&str, &[u8]); 1] = [("bomb.py", &zeros)];
    let mut bytes = zip_of(&entries, CompressionMethod::Deflated);
    // Claim an uncompressed size of 16 bytes in both headers.
    let real = (zeros.len() as u32).to_le_bytes();
    assert_eq!(patch(&mut bytes, &real, &16u32.to_le_bytes()), 2);
    let limits = ReadLimits { max_unpacked_size: 1 << 20, ..ReadLimits::default() };
    let err = Fab::read(&bytes, &limits).unwrap_err();
    assert!(matches!(err, Error::EntryTooLarge { .. } | Error::Entry { .. }), "{err}");
}

#[test]
fn duplicate_entry_names_are_refused() {
    let mut bytes = fab_of(&[("demo/a.py", b"1"), ("demo/b.py", b"2")]);
    assert_eq!(patch(&mut bytes, b"demo/b.py", b"demo/a.py"), 3); // local, central, CONTENT
    let err = read(&bytes).unwrap_err();
    assert!(matches!(err, Error::DuplicateEntry { ref name } if name == "demo/a.py"), "{err}");
}

#[test]
fn content_hash_mismatch_is_refused() {
    let listing = content(&[("demo/a.py", b"original")]);
    let err = read(&fab_with(&[("demo/a.py", b"modified")], &listing)).unwrap_err();
    assert!(matches!(err, Error::ContentMismatch { ref path, .. } if path == "demo/a.py"), "{err}");
}

#[test]
fn content_size_mismatch_is_refused() {
    let hash = sha256(b"abc");
    let err = read(&fab_with(&[("a.py", b"abc")], &format!("a.py,{hash},3\n"))).unwrap_err();
    assert!(err.to_string().contains("size is 24 bits, CONTENT says 3"), "{err}");
}

#[test]
fn unlisted_file_is_refused() {
    let listing = content(&[("a.py", b"a")]);
    let err = read(&fab_with(&[("a.py", b"a"), ("extra.py", b"x")], &listing)).unwrap_err();
    assert!(matches!(err, Error::NotListed { ref path } if path == "extra.py"), "{err}");
}

#[test]
fn listed_but_missing_file_is_refused() {
    let listing = content(&[("a.py", b"a"), ("gone.py", b"g")]);
    let err = read(&fab_with(&[("a.py", b"a")], &listing)).unwrap_err();
    assert!(err.to_string().contains("listed but not in the FAB"), "{err}");
}

#[test]
fn missing_pyproject_is_refused() {
    let listing = content(&[("a.py", b"a")]);
    let entries: [(&str, &[u8]); 2] = [("a.py", b"a"), (".info/CONTENT", listing.as_bytes())];
    let err = read(&zip_of(&entries, CompressionMethod::Stored)).unwrap_err();
    assert!(matches!(err, Error::MissingFile { name: "pyproject.toml" }), "{err}");
}

#[test]
fn missing_content_is_refused() {
    let entries: [(&str, &[u8]); 1] = [("pyproject.toml", PYPROJECT.as_bytes())];
    let err = read(&zip_of(&entries, CompressionMethod::Stored)).unwrap_err();
    assert!(matches!(err, Error::MissingFile { name: ".info/CONTENT" }), "{err}");
}

#[test]
fn invalid_manifest_is_refused() {
    let text = PYPROJECT.replace("publisher = \"acme\"", "");
    let entries: [(&str, &[u8]); 2] = [("pyproject.toml", text.as_bytes()), (".info/CONTENT", b"")];
    let err = read(&zip_of(&entries, CompressionMethod::Stored)).unwrap_err();
    assert_eq!(err.to_string(), "pyproject.toml: [tool.flwr.app] publisher is missing");
}

#[test]
fn missing_wasm_component_is_refused() {
    let text = PYPROJECT.replace("demo.server:app", "server.wasm");
    let entries: [(&str, &[u8]); 2] = [("pyproject.toml", text.as_bytes()), (".info/CONTENT", b"")];
    let err = read(&zip_of(&entries, CompressionMethod::Stored)).unwrap_err();
    assert!(matches!(err, Error::MissingComponent { component: "serverapp", .. }), "{err}");
}

#[test]
fn file_and_directory_with_the_same_path_are_refused() {
    let err = read(&fab_of(&[("a", b"1"), ("a/b.py", b"2")])).unwrap_err();
    assert!(err.to_string().contains("both a file and a directory"), "{err}");
}

#[test]
fn garbage_is_not_a_zip() {
    let err = read(b"definitely not a zip archive").unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}
