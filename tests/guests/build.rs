//! Builds every Wasm guest of the repository with one cargo invocation
//! (`cargo build --profile guest --target wasm32-wasip2`) into `<target>/guests`, a
//! target dir of their own so that the build neither waits on nor invalidates the host
//! build, and assembles the apps (pyproject.toml + client.wasm + server.wasm) that
//! tests submit with `sepal run`. Hands the paths to the library as `SEPAL_GUESTS_DIR` and
//! `SEPAL_GUEST_APPS_DIR`.
//!
//! Needs the target: `rustup target add wasm32-wasip2` (scripts/test.sh adds it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every guest component crate, by package name.
const COMPONENTS: &[&str] = &[
    "quickstart-client",
    "quickstart-server",
    "clinic-client",
    "clinic-server",
    "hostile-client",
    "hostile-server",
    "mlflow-server",
    "sepal-test-guest-echo",
    "sepal-test-guest-hostile",
    "sepal-test-guest-server",
    "sepal-test-guest-http",
    "sandbox-client",
    "dispatch-client",
    "dispatch-server",
    "large-model-client",
    "large-model-server",
];

/// The apps: (name, the pyproject.toml, the ClientApp crate, the ServerApp crate).
const APPS: &[(&str, &str, &str, &str)] = &[
    ("quickstart", "examples/quickstart/pyproject.toml", "quickstart-client", "quickstart-server"),
    ("clinic", "examples/clinic/pyproject.toml", "clinic-client", "clinic-server"),
    ("hostile", "tests/apps/hostile/pyproject.toml", "hostile-client", "hostile-server"),
    ("mlflow", "tests/apps/mlflow/pyproject.toml", "quickstart-client", "mlflow-server"),
    ("dispatch", "bench/apps/dispatch-wasm/pyproject.toml", "dispatch-client", "dispatch-server"),
    ("large-model", "bench/apps/large-model-wasm/pyproject.toml", "large-model-client", "large-model-server"),
];

/// What the guests are built from; a change in any of these rebuilds them.
const SOURCES: &[&str] = &[
    "guest-sdk",
    "host/core/src",
    "host/core/Cargo.toml",
    "proto",
    "examples/quickstart/app",
    "examples/quickstart/client",
    "examples/quickstart/server",
    "examples/quickstart/pyproject.toml",
    "examples/clinic/app",
    "examples/clinic/client",
    "examples/clinic/server",
    "examples/clinic/pyproject.toml",
    "tests/apps/hostile",
    "tests/apps/mlflow",
    "host/sandbox/tests/guests",
    "bench/guests",
    "bench/apps/dispatch-wasm/pyproject.toml",
    "bench/apps/large-model-wasm/pyproject.toml",
    "Cargo.lock",
    ".cargo/config.toml",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().and_then(Path::parent).expect("tests/guests is two levels down").to_path_buf();
    for source in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(source).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let guest_target = target_dir.join("guests");
    build(&root, &guest_target);
    let built = guest_target.join("wasm32-wasip2").join("guest");

    let apps = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("apps");
    for (name, pyproject, client, server) in APPS {
        let dir = apps.join(name);
        std::fs::create_dir_all(&dir).expect("creating an app directory");
        copy(&root.join(pyproject), &dir.join("pyproject.toml"));
        copy(&built.join(wasm_name(client)), &dir.join("client.wasm"));
        copy(&built.join(wasm_name(server)), &dir.join("server.wasm"));
    }
    println!("cargo:rustc-env=SEPAL_GUESTS_DIR={}", built.display());
    println!("cargo:rustc-env=SEPAL_GUEST_APPS_DIR={}", apps.display());
}

fn build(root: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--profile", "guest", "--target", "wasm32-wasip2"]);
    for package in COMPONENTS {
        cmd.args(["-p", package]);
    }
    cmd.env("CARGO_TARGET_DIR", target_dir);
    // The enclosing build's flags are the host's, not the guests' (theirs come from
    // .cargo/config.toml).
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_BUILD_RUSTFLAGS"] {
        cmd.env_remove(var);
    }
    let output = cmd.output().expect("running cargo to build the Wasm guests");
    if !output.status.success() {
        panic!(
            "building the Wasm guests failed ({}; is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `quickstart-client` -> `quickstart_client.wasm`.
fn wasm_name(package: &str) -> String {
    format!("{}.wasm", package.replace('-', "_"))
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        panic!("copying {} to {}: {e}", from.display(), to.display());
    }
}
