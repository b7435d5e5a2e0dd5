//! The README's main job: `sepal demo` runs the Wasm quickstart on a local federation,
//! with no Python anywhere on the path, and accuracy clearly improves.

use std::process::Command;
use std::sync::OnceLock;

use sepal_tests::{repo_root, sepal_bin};

/// Builds the quickstart's components once per test binary.
fn quickstart_dir() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = repo_root().join("examples/quickstart");
            let status = Command::new(dir.join("build.sh")).env_remove("RUSTFLAGS").status().expect("run build.sh");
            assert!(status.success(), "examples/quickstart/build.sh failed");
            dir
        })
        .clone()
}

/// The first and last accuracy from the quickstart's summary line
/// ("quickstart finished: 3 rounds, accuracy 0.5080 -> 0.9300, ...").
fn accuracies(log: &str) -> (f64, f64) {
    let line = log.lines().find(|l| l.contains("quickstart finished")).expect("the summary line");
    let tail = line.split("accuracy ").nth(1).expect("accuracy in the summary");
    let mut parts = tail.split(|c: char| c == ' ' || c == ',').filter(|s| !s.is_empty() && *s != "->");
    let first: f64 = parts.next().unwrap().parse().unwrap();
    let last: f64 = parts.next().unwrap().parse().unwrap();
    (first, last)
}

#[test]
fn demo_runs_the_wasm_quickstart_without_python() {
    let app = quickstart_dir();
    let empty_path = tempfile::tempdir().unwrap();
    let out = Command::new(sepal_bin())
        .args(["demo"])
        .arg(&app)
        .args(["--nodes", "3", "--run-config", "num-server-rounds=3"])
        .env("PATH", empty_path.path())
        .output()
        .expect("run sepal demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sepal demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("finished:completed"), "{stdout}");
    for round in 1..=3 {
        assert!(stdout.contains(&format!("round {round}: federated evaluation")), "round {round} missing:\n{stdout}");
    }
    let (first, last) = accuracies(&stdout);
    assert!(last > first + 0.2 && last > 0.85, "accuracy should clearly improve: {first} -> {last}");
}

#[test]
fn demo_reports_an_app_without_components_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\nversion = \"1.0.0\"\n[tool.flwr.app]\npublisher = \"p\"\n\
         [tool.flwr.app.components]\nserverapp = \"server.wasm\"\nclientapp = \"client.wasm\"\n",
    )
    .unwrap();
    let out = Command::new(sepal_bin()).arg("demo").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.wasm") || stderr.contains("client.wasm"), "names the missing component: {stderr}");
}
