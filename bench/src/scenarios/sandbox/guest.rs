//! Builds the benchmark's guest component (bench/guests, its own cargo workspace) once per
//! process: `cargo build --release --target wasm32-wasip2` into `<repo>/target/bench-guests`,
//! a target dir of its own, so the build neither waits on nor invalidates the host build.
//! Needs the target installed: `rustup target add wasm32-wasip2`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sepal_tests::flwr::run_with_timeout;

/// Upper bound for building the guest (a cold build of the guest SDK included).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

fn guests_dir() -> PathBuf {
    sepal_tests::repo_root().join("bench").join("guests")
}

fn target_dir() -> PathBuf {
    sepal_tests::repo_root().join("target").join("bench-guests")
}

fn build() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(guests_dir())
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet", "-p", "sandbox-client"])
        .env("CARGO_TARGET_DIR", target_dir());
    // The guest's own flags come from bench/guests/.cargo.
    sepal_tests::wasm_apps::without_host_build_env(&mut cmd);
    let started = Instant::now();
    let done = run_with_timeout(cmd, BUILD_TIMEOUT)?;
    if !done.status.success() {
        bail!(
            "building bench/guests failed ({}; is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            done.status,
            done.stderr
        );
    }
    eprintln!("built the sandbox benchmark's guest in {:.1?}", started.elapsed());
    Ok(target_dir().join("wasm32-wasip2/release/sandbox_client.wasm"))
}

/// The bytes of the guest component (`sandbox_client.wasm`), built on first use.
pub fn component() -> Result<Vec<u8>> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let path = BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))).as_ref().map_err(|e| anyhow!("{e}"))?;
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
