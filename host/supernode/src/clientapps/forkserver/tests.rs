//! The fork server against a stand-in entry point (`fakeapp.run`), with the Python on PATH.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

/// A stand-in for Flower's entry point: writes what it saw to `<dir>/<name>.json`, then
/// exits with `mode` as code, sleeps for `mode == "sleep"`, or kills itself for
/// `mode == "kill"`; called as `<name> <mode>`, or with `flwr-clientapp`'s arguments
/// (name: the token's first 32 characters, mode: the content of `<dir>/token-mode`, else
/// 0). `CALLS` is a module global: a child that shared its module with another would count
/// past 1. At exit it writes `<dir>/<name>.atexit`, as an app's atexit handler would.
const FAKE_APP: &str = r#"
import atexit, gc, json, os, signal, sys, time
CALLS = 0
def run():
    global CALLS
    CALLS += 1
    args = sys.argv[1:]
    here = os.path.dirname(sys.argv[0])
    if "--token" in args:
        name = args[args.index("--token") + 1][:32]
        try:
            mode = open(os.path.join(here, "token-mode")).read().strip()
        except FileNotFoundError:
            mode = "0"
    else:
        name, mode = args
    atexit.register(lambda: open(os.path.join(here, name + ".atexit"), "w").close())
    seen = {"argv": sys.argv, "pid": os.getpid(), "ppid": os.getppid(), "calls": CALLS,
            "stdin": os.read(0, 10).decode(), "preloaded": "fakehelper" in sys.modules,
            "frozen": gc.get_freeze_count()}
    with open(os.path.join(os.path.dirname(sys.argv[0]), name + ".json"), "w") as f:
        json.dump(seen, f)
    if mode == "sleep":
        time.sleep(120)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return int(mode)
"#;

pub(crate) const ENTRY: Entry =
    Entry { module: "fakeapp", function: "run", preload: &["fakehelper", "no_such_module"] };

/// A Python interpreter: the one on PATH.
pub(crate) fn python() -> PathBuf {
    on_path(Path::new("python3")).expect("these tests need python3 on PATH")
}

/// A directory with `fakeapp.py` and the console script `fake-clientapp` calling it.
pub(crate) fn fake_program(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("fakeapp.py"), FAKE_APP).unwrap();
    std::fs::write(dir.join("fakehelper.py"), "").unwrap();
    let program = dir.join("fake-clientapp");
    let script = format!(
        "#!{}\nimport sys\nfrom fakeapp import run\nif __name__ == '__main__':\n    sys.exit(run())\n",
        python().display()
    );
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    program
}

/// What the fake app wrote as `name`, once it has.
pub(crate) async fn seen(dir: &Path, name: &str) -> Value {
    let path = dir.join(format!("{name}.json"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(value) = serde_json::from_str(&text) {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "the fake app never wrote {}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process exists (a reaped one does not).
pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) async fn gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn server(dir: &Path) -> ForkServer {
    let script = Script::find(&fake_program(dir), ENTRY).unwrap();
    ForkServer::start(&script).await.unwrap()
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

#[test]
fn a_python_console_script_is_found_and_other_programs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_program(dir.path());
    let script = Script::find(&program, ENTRY).unwrap();
    assert_eq!((script.program, script.interpreter), (program.clone(), python()));

    let not_python = |text: &str| {
        let path = dir.path().join("other");
        std::fs::write(&path, text).unwrap();
        Script::find(&path, ENTRY).unwrap_err()
    };
    for text in
        ["#!/bin/sh\nexec fakeapp \"$@\"\n", "\x7fELF\x02\x01", "#!/usr/bin/python3 -E\nfrom fakeapp import run\n"]
    {
        assert!(matches!(not_python(text), ForkServerError::NotPython { .. }), "{text:?}");
    }
    let other = not_python(&format!("#!{}\nprint('hello')\n", python().display()));
    assert!(other.to_string().contains("does not import the entry point"), "{other}");
    let missing = Script::find(Path::new("no-such-sepal-program"), ENTRY).unwrap_err();
    assert!(matches!(missing, ForkServerError::Read { .. }), "{missing}");

    let env = dir.path().join("env-script");
    std::fs::write(&env, "#!/usr/bin/env python3\nfrom fakeapp import run\n").unwrap();
    assert_eq!(Script::find(&env, ENTRY).unwrap().interpreter, python());
}

#[tokio::test]
async fn a_forked_child_runs_the_entry_with_its_argv_and_its_exit_status_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut first = server.spawn(&args(&["first", "3"])).await.unwrap();
    let mut second = server.spawn(&args(&["second", "0"])).await.unwrap();
    assert_eq!(first.wait().await.unwrap().code(), Some(3));
    assert!(second.wait().await.unwrap().success());
    assert!(second.try_wait().unwrap().is_some_and(|s| s.success()), "the status stays known");

    let first = seen(dir.path(), "first").await;
    assert!(dir.path().join("first.atexit").exists(), "the child ends as an interpreter does: atexit handlers ran");
    let program = dir.path().join("fake-clientapp");
    assert_eq!(first["argv"], serde_json::json!([program, "first", "3"]));
    assert_eq!(first["ppid"], server.pid());
    assert_eq!(first["stdin"], "", "stdin is /dev/null, not the control socket");
    assert_eq!(first["preloaded"], true, "the server imported the preload list (a missing module skipped)");
    assert!(first["frozen"].as_u64() > Some(0), "what the server imported is kept out of the collector's way");
    // Each child is a new process: the module global starts afresh.
    let second = seen(dir.path(), "second").await;
    assert_eq!((first["calls"].as_u64(), second["calls"].as_u64()), (Some(1), Some(1)));
    assert_ne!(first["pid"], second["pid"]);
}

#[tokio::test]
async fn a_dropped_child_is_killed_and_a_dropped_server_ends_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let dropped = server.spawn(&args(&["dropped", "sleep"])).await.unwrap();
    let pid = dropped.id();
    seen(dir.path(), "dropped").await;
    assert!(alive(pid));
    drop(dropped);
    gone(pid).await;

    let mut orphan = server.spawn(&args(&["orphan", "sleep"])).await.unwrap();
    seen(dir.path(), "orphan").await;
    let server_pid = server.pid();
    drop(server);
    let status = tokio::time::timeout(Duration::from_secs(30), orphan.wait()).await.expect("told, not left waiting");
    assert!(status.is_err(), "the server ended before reporting: {status:?}");
    gone(orphan.id()).await;
    gone(server_pid).await;
}

#[tokio::test]
async fn a_server_that_cannot_import_its_entry_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        program: fake_program(dir.path()),
        interpreter: python(),
        entry: Entry { module: "no_such_module_here", function: "run", preload: &[] },
    };
    let err = ForkServer::start(&script).await.unwrap_err();
    assert!(matches!(err, ForkServerError::NotReady(_)), "{err}");
}

#[tokio::test]
async fn a_child_killed_by_a_signal_is_reported_so_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut killed = server.spawn(&args(&["killed", "kill"])).await.unwrap();
    let status = killed.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    let mut next = server.spawn(&args(&["next", "0"])).await.unwrap();
    assert!(next.wait().await.unwrap().success());
    assert!(!server.has_ended());
}

#[tokio::test]
async fn a_killed_server_is_noticed_and_its_waiting_children_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut child = server.spawn(&args(&["child", "sleep"])).await.unwrap();
    seen(dir.path(), "child").await;
    std::process::Command::new("kill").args(["-9", &server.pid().to_string()]).status().unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("told, not left waiting");
    assert!(waited.is_err(), "{waited:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.has_ended() {
        assert!(Instant::now() < deadline, "the server's end was not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(server.spawn(&args(&["late", "0"])).await, Err(ForkServerError::Gone)));
    // The orphan is not the fake app's to outlive: real `flwr-clientapp`s watch their
    // parent (--parent-pid); this one is killed here.
    let _ = std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status();
}
