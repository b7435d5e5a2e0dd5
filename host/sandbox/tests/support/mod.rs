//! Test support: builds the test guests (tests/guests, its own workspace) once per test
//! binary, and shares one sandbox per test binary.
//!
//! The guests are built with `cargo build --release --target wasm32-wasip2` into
//! `<target>/wasm-guests`, a target dir of their own, so the build neither waits on nor
//! invalidates the host build. Needs the target installed: `rustup target add wasm32-wasip2`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use sepal_sandbox::{LogBuffer, Sandbox, SandboxConfig};

const GUESTS: &[&str] = &["echo", "hostile", "server"];

fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests")
}

fn guest_target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp for integration tests.
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("wasm-guests")
}

/// Builds every test guest (one cargo invocation), once per test binary; returns the
/// directory holding `sepal_test_guest_<name>.wasm`.
fn built_guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target_dir = guest_target_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let started = std::time::Instant::now();
        let output = Command::new(cargo)
            .current_dir(guests_dir())
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .env("CARGO_TARGET_DIR", &target_dir)
            // The host build's flags are not the guests'.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .output()
            .expect("run cargo to build the test guests");
        assert!(
            output.status.success(),
            "building the test guests failed (is the target installed? \
             `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("test guests built in {:?}", started.elapsed());
        target_dir.join("wasm32-wasip2/release")
    })
}

/// The bytes of a test guest component.
pub fn guest(name: &str) -> Vec<u8> {
    assert!(GUESTS.contains(&name), "unknown test guest {name}");
    let path = built_guests().join(format!("sepal_test_guest_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One sandbox (engine, cache, ticker) shared by all tests of a binary, as in a SuperNode.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).expect("sandbox"))
}

/// A fresh log buffer.
pub fn log() -> Arc<LogBuffer> {
    Arc::new(LogBuffer::new())
}
