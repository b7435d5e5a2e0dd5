//! End-to-end and interop test harness: real Python Flower 1.20.0 against Sepal.
//!
//! A test starts a whole federation on fresh loopback ports and temp dirs, drives it with
//! the real `flwr` CLI, and everything it started is killed when the [`Federation`] guard
//! is dropped (also when the test panics). The log of every process is in the federation's
//! temp dir, and the tail of each is printed when the guard is dropped (libtest shows it
//! only for failing tests; set `SEPAL_TEST_KEEP=1` to keep the temp dir).
//!
//! ```no_run
//! use sepal_tests::{Federation, Isolation, RUN_TIMEOUT};
//!
//! let fed = Federation::sepal(2, Isolation::Subprocess).unwrap(); // or Federation::python(..)
//! let flwr = fed.flwr("numpy-fedavg").unwrap(); // example copied, federation "sepal-test" added
//! let run_id = flwr.run(&[]).unwrap(); // `flwr run <app> sepal-test --format json`
//! flwr.wait_for_status(run_id, |s| s == "finished:completed", RUN_TIMEOUT).unwrap();
//! let final_line = flwr.wait_for_final_line(run_id).unwrap();
//! assert_eq!(final_line, sepal_tests::python_reference_final().unwrap());
//! ```
//!
//! Needs the Python environment from `scripts/python-env.sh` and, for Sepal components, a
//! built `sepal` binary (`cargo build -p sepal-cli`).

pub mod federation;
pub mod flwr;
pub mod kit;
pub mod mlflow;
pub mod oidc;
pub mod postgres;
pub mod procs;
pub mod replicas;
pub mod scenarios;
pub mod scrape;
pub mod wasm_apps;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use federation::{Federation, FederationBuilder, Impl, Isolation, SuperLinkAddrs};
pub use flwr::{final_line, Flwr, RunInfo, SuperLinkWatch};
pub use procs::{pid_alive, Proc, STOP_GRACE};
/// Signals for [`Proc::signal_group`].
pub use rustix::process::Signal;

/// Upper bound for a 2-round run of the example (about 20-25 s alone on 2 cores).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Upper bound for a component to start listening on its ports.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The example app used by the interop tests.
pub const EXAMPLE: &str = "numpy-fedavg";

/// The `FINAL` line that `numpy-fedavg` prints with its default config (2 rounds, 2 nodes
/// with partition ids 0 and 1), as printed by all-Python Flower 1.20.0.
pub const EXPECTED_FINAL_2_ROUNDS: &str = concat!(
    r#"FINAL {"arrays":[[0.333333,0.333333,0.333333,0.333333,0.333333,0.333333],"#,
    r#"[0.333333,1.333333,2.333333,3.333333]],"counters":{"0":2,"1":2},"#,
    r#""eval-loss":9.333333,"rounds":2}"#
);

/// The workspace root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `<repo>/examples/<name>`.
pub fn example_dir(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// The Python venv with flwr 1.20.0: `$SEPAL_VENV`, else `<repo>/.venv`.
///
/// Panics with instructions when it (or its `flwr`) is missing.
pub fn venv() -> PathBuf {
    let venv = match std::env::var_os("SEPAL_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => repo_root().join(".venv"),
    };
    if !venv.join("bin").join("flwr").is_file() {
        panic!(
            "no Python environment with flwr at {} (from SEPAL_VENV or <repo>/.venv): \
             run scripts/python-env.sh first",
            venv.display()
        );
    }
    venv
}

/// `<venv>/bin/<program>`.
pub fn venv_bin(program: &str) -> PathBuf {
    venv().join("bin").join(program)
}

/// The `sepal` binary: `$SEPAL_BIN`, else `sepal` in the cargo profile directory the test
/// executable was built into (`target/debug/deps/<test>` -> `target/debug/sepal`).
///
/// Panics with instructions when it is missing.
pub fn sepal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SEPAL_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            panic!(
                "SEPAL_BIN={} does not exist (unset it to use the sepal binary of this \
                 cargo build: cargo build -p sepal-cli)",
                p.display()
            );
        }
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut candidates = Vec::new();
    // target/<profile>/deps/<test-exe>: the binary is in target/<profile>/.
    for dir in exe.ancestors().skip(1).take(2) {
        candidates.push(dir.join("sepal"));
    }
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "the sepal binary was not found (looked at {candidates:?}; set SEPAL_BIN to override): \
         run `cargo build -p sepal-cli` first (scripts/test.sh builds all binaries)"
    );
}

/// A loopback port that is free right now and was never returned before by this process.
///
/// The OS is asked by binding `127.0.0.1:<port>`. Candidates come from below the kernel's
/// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, usually from 32768), so
/// neither an outgoing connection's local port nor another program's `bind(0)` can take
/// the port in the second or two before the Python component binds it; if no such port
/// is found, the OS picks one (`bind 127.0.0.1:0`).
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
    let low = ephemeral_low().clamp(11_000, 65_535) as u64;
    for i in 0..200u64 {
        let port = (10_000 + random(i) % (low - 10_000)) as u16;
        if !given.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0 for a port");
        let port = listener.local_addr().expect("local_addr").port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no fresh free port after 300 tries");
}

fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A pseudo-random number, different per process, call and `salt` (no `rand` needed).
fn random(salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default(),
    );
    h.finish()
}

/// `127.0.0.1:<free_port()>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// Whether something accepts TCP connections on `addr` right now.
pub fn port_open(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(250)) {
        // A connect to a port in the ephemeral range with no listener can connect the
        // socket to itself (TCP simultaneous open); that is not a listener.
        Ok(s) => s.local_addr().ok() != s.peer_addr().ok(),
        Err(_) => false,
    }
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !port_open(addr) {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Polls `f` every `every` until it returns `Some`, for at most `timeout`; the error names
/// `what`.
pub fn poll<T>(what: &str, timeout: Duration, every: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(every);
    }
}

/// Runs the example app to completion on a fresh all-Python federation (Python SuperLink,
/// `nodes` Python SuperNodes) and returns its `FINAL` line.
pub fn python_final(nodes: usize, isolation: Isolation, run_config: &[&str]) -> Result<String> {
    let fed = Federation::python(nodes, isolation)?;
    let flwr = fed.flwr(EXAMPLE)?;
    let mut args = Vec::new();
    if !run_config.is_empty() {
        args.push("--run-config".to_string());
        args.push(run_config.join(" "));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run_id = flwr.run(&args)?;
    flwr.wait_for_status(run_id, |s| s == "finished:completed", RUN_TIMEOUT)?;
    flwr.wait_for_final_line(run_id).context("reading the FINAL line of the Python reference run")
}

/// The `FINAL` line of the example's default run (2 rounds, 2 nodes, subprocess
/// isolation) on all-Python Flower. Computed once per test process (concurrent callers
/// wait for the first), so call it from a thread alongside the run you compare with.
pub fn python_reference_final() -> Result<String> {
    static REF: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    REF.get_or_init(|| python_final(2, Isolation::Subprocess, &[]).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("Python reference run failed: {e}"))
}
