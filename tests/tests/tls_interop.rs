//! TLS on Fleet and Exec with Python Flower 1.20.0 (spec README "C. TLS"): a throwaway CA
//! and a server certificate with SANs `IP:127.0.0.1` and `DNS:localhost`, made here with
//! rcgen (no openssl, no committed keys).
//!
//! * `sepal superlink --ssl-*` (no `--insecure`) with two Python `flower-supernode
//!   --root-certificates`, driven by the real `flwr` CLI through a federation with
//!   `root-certificates`; `sepal ls` reads the same federation over TLS.
//! * Sepal SuperNodes (`--root-certificates`) under Python's `flower-superlink --ssl-*`.
//!
//! Needs `cargo build -p sepal-cli` and the venv from scripts/python-env.sh (scripts/test.sh
//! does both).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sepal_tests::federation::{Impl, TlsFiles};
use sepal_tests::flwr::FEDERATION;
use sepal_tests::{scenarios, sepal_bin, Federation};

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
fn make_certs(dir: &Path) -> TlsFiles {
    sepal_tests::kit::make_certs(dir).files
}

#[test]
fn sepal_superlink_with_tls_serves_python_supernodes_and_flwr() {
    let started = Instant::now();
    let certs = tempfile::tempdir().unwrap();
    let fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernode(Impl::Python)
        .tls(make_certs(certs.path()))
        .start()
        .unwrap();
    let fin = scenarios::two_rounds(&fed).unwrap();
    assert!(fin.contains("FINAL"), "{fin}");

    // Sepal's CLI reads the same federation (`root-certificates`, relative to the app).
    let flwr = fed.flwr(sepal_tests::EXAMPLE).unwrap();
    let out = Command::new(sepal_bin())
        .args(["ls"])
        .arg(flwr.app_dir())
        .args([FEDERATION, "--format", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sepal ls failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("finished:completed"), "sepal ls over TLS: {stdout}");
    // Its --superlink is plaintext unless --root-certificates: plaintext is refused here.
    let out = Command::new(sepal_bin()).args(["ls", "--superlink", &fed.exec_addr().to_string()]).output().unwrap();
    assert!(!out.status.success(), "a plaintext sepal ls reached the TLS Exec API");
    let out = Command::new(sepal_bin())
        .args(["ls", "--superlink", &fed.exec_addr().to_string(), "--root-certificates"])
        .arg(&fed.tls().unwrap().ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "sepal ls --root-certificates: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("TLS: Sepal SuperLink + Python SuperNodes + flwr: {:?}", started.elapsed());
}

#[test]
fn sepal_supernodes_under_python_superlink_with_tls() {
    let started = Instant::now();
    let certs = tempfile::tempdir().unwrap();
    let fed = Federation::builder()
        .superlink(Impl::Python)
        .supernode(Impl::Sepal)
        .tls(make_certs(certs.path()))
        .start()
        .unwrap();
    scenarios::two_rounds(&fed).unwrap();
    eprintln!("TLS: Python SuperLink + Sepal SuperNodes: {:?}", started.elapsed());
}
