//! `sepal build/run/ls/log/stop` as a user runs them: the built binary against an
//! in-process SuperLink (process isolation, so no ServerApp is ever started).

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sepal_tests::kit::{PyProject, TestLink};
use serde_json::Value;

/// Upper bound for one CLI command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A SuperLink serving on loopback until dropped, in a runtime of its own (these tests
/// are synchronous: they run the CLI as a user would).
struct SuperLink {
    link: TestLink,
    runtime: tokio::runtime::Runtime,
}

impl SuperLink {
    fn start() -> SuperLink {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let link = runtime.block_on(TestLink::start());
        SuperLink { link, runtime }
    }
}

/// What a command printed.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(self, what: &str) -> Output {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    fn failed(self, what: &str) -> Output {
        assert_eq!(
            self.status.code(),
            Some(1),
            "{what} should fail:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// A `sepal` process still running.
struct Running {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    args: Vec<String>,
}

impl Running {
    /// Waits for the process, killing it after [`COMMAND_TIMEOUT`].
    fn wait(mut self) -> Output {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sepal {:?} did not finish within {COMMAND_TIMEOUT:?}", self.args);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output { status, stdout: self.stdout.join().unwrap(), stderr: self.stderr.join().unwrap() }
    }
}

/// Starts `sepal ARGS` in `dir`.
fn spawn_sepal(dir: &Path, args: &[&str]) -> Running {
    let mut child = Command::new(sepal_tests::sepal_bin())
        .args(args)
        .current_dir(dir)
        .env("SEPAL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    Running { child, stdout, stderr, args: args.iter().map(|a| a.to_string()).collect() }
}

/// Runs `sepal ARGS` in `dir` to the end.
fn sepal(dir: &Path, args: &[&str]) -> Output {
    spawn_sepal(dir, args).wait()
}

/// Writes a small Python app whose `local` federation (the default) is the SuperLink at
/// `exec`, plus a `tls` federation without `insecure` (TLS with the system's roots).
fn write_app(dir: &Path, exec: SocketAddr) {
    let federations = format!(
        "[tool.flwr.federations]\ndefault = \"local\"\n\n\
         [tool.flwr.federations.local]\naddress = \"{exec}\"\ninsecure = true\noptions.num-supernodes = 2\n\n\
         [tool.flwr.federations.tls]\naddress = \"{exec}\"\n"
    );
    let pyproject = PyProject::new("tinyapp")
        .publisher("sepaltest")
        .config("num-server-rounds", "2")
        .config("lr", "0.1")
        .extra(&federations);
    std::fs::create_dir_all(dir.join("tinyapp")).unwrap();
    pyproject.write_to(dir).unwrap();
    std::fs::write(dir.join("tinyapp/__init__.py"), "").unwrap();
    std::fs::write(dir.join("tinyapp/server.py"), "app = None\n").unwrap();
    std::fs::write(dir.join("tinyapp/client.py"), "app = None\n").unwrap();
    std::fs::write(dir.join("README.md"), "# tinyapp\n").unwrap();
}

fn runs_of(ls: &Value) -> &Vec<Value> {
    assert_eq!(ls["success"], Value::Bool(true), "{ls}");
    ls["runs"].as_array().unwrap()
}

#[test]
fn build_run_ls_stop_log() {
    let link = SuperLink::start();
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write_app(&app, link.link.exec);
    let app_arg = app.to_str().unwrap();

    // Two builds give the same bytes, named <publisher>.<name>.<version>.<hash8>.fab.
    let first = sepal(tmp.path(), &["build", app_arg, "-o", "out1"]).ok("build");
    let second = sepal(tmp.path(), &["build", app_arg, "--out-dir", "out2", "--format", "json"]).ok("build json");
    let built = second.json();
    let hash = built["fab-hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    let file_name = format!("sepaltest.tinyapp.1-0-0.{}.fab", &hash[..8]);
    assert_eq!(built["fab-filename"], file_name.as_str());
    assert_eq!(built["fab-id"], "sepaltest/tinyapp");
    assert!(first.stdout.contains(&file_name) && first.stdout.contains(&hash), "{}", first.stdout);
    let bytes1 = std::fs::read(tmp.path().join("out1").join(&file_name)).unwrap();
    let bytes2 = std::fs::read(tmp.path().join("out2").join(&file_name)).unwrap();
    assert_eq!(bytes1, bytes2);

    // Run: the in-memory build is the same FAB.
    let run = sepal(tmp.path(), &["run", app_arg, "--format", "json", "--run-config", "num-server-rounds=3"]).ok("run");
    let started = run.json();
    assert_eq!(started["success"], true);
    assert_eq!(started["fab-id"], "sepaltest/tinyapp");
    assert_eq!(started["fab-name"], "tinyapp");
    assert_eq!(started["fab-version"], "1.0.0");
    assert_eq!(started["fab-hash"], &hash[..8]);
    assert_eq!(started["fab-filename"], file_name.as_str());
    let run_id = started["run-id"].as_u64().unwrap();
    let id = run_id.to_string();

    // The default federation comes from the app dir given, or from the current directory.
    let ls = sepal(tmp.path(), &["ls", app_arg, "--format", "json"]).ok("ls").json();
    let run = runs_of(&ls).iter().find(|r| r["run-id"] == run_id).unwrap_or_else(|| panic!("{ls}"));
    assert_eq!(run["status"], "pending");
    assert_eq!(run["fab-id"], "sepaltest/tinyapp");
    assert_eq!(run["fab-hash"], &hash[..8]);
    assert_eq!(run["running-at"], "N/A");
    assert_eq!(run["elapsed"], "00:00:00");
    let table = sepal(&app, &["ls", ".", "local"]).ok("ls table").stdout;
    assert!(table.contains("Run ID") && table.contains(&id) && table.contains("pending"), "{table}");
    assert!(table.contains("sepaltest/tinyapp (v1.0.0)"), "{table}");

    // Stop, then the run is finished:stopped and a second stop fails clearly.
    let stopped = sepal(&app, &["stop", &id]).ok("stop");
    assert_eq!(stopped.stdout, format!("Run {id} successfully stopped.\n"));
    let ls = sepal(&app, &["ls", ".", "--run-id", &id, "--format", "json"]).ok("ls --run-id").json();
    assert_eq!(runs_of(&ls).len(), 1);
    assert_eq!(runs_of(&ls)[0]["status"], "finished:stopped");
    assert_ne!(runs_of(&ls)[0]["finished-at"], "N/A");
    let again = sepal(&app, &["stop", &id]).failed("second stop");
    assert!(
        again.stderr.contains(&format!("cannot stop run {id}: Run ID {id} is already finished")),
        "{}",
        again.stderr
    );
    let again = sepal(&app, &["stop", &id, "--format", "json"]).failed("second stop, json").json();
    assert_eq!(again["success"], false);
    assert!(again["error-message"].as_str().unwrap().contains("already finished"), "{again}");

    // The log of a finished run: --show and the stream both end at once.
    sepal(&app, &["log", &id, "--show"]).ok("log --show");
    sepal(&app, &["log", &id]).ok("log --stream");

    // Unknown runs.
    for args in [&["log", "12345", "--show"][..], &["log", "12345"], &["stop", "12345"], &["ls", "--run-id", "12345"]] {
        let out = sepal(&app, args).failed("unknown run");
        assert!(out.stderr.contains("Run ID not found"), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn fab_file_with_superlink_flag() {
    let link = SuperLink::start();
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write_app(&app, link.link.exec);
    sepal(tmp.path(), &["build", "app"]).ok("build");
    let fab = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "fab"))
        .unwrap();
    let addr = link.link.exec.to_string();

    // No pyproject.toml in the working directory: --superlink says where to go.
    let fab_arg = fab.to_str().unwrap();
    let out = sepal(tmp.path(), &["run", fab_arg]).failed("run a .fab without a federation");
    assert!(out.stderr.contains("--superlink"), "{}", out.stderr);
    let out = sepal(tmp.path(), &["run", fab_arg, "--superlink", &addr]).ok("run .fab");
    let id = out.stdout.trim().strip_prefix("Started run ").unwrap_or_else(|| panic!("{}", out.stdout)).to_string();
    let ls = sepal(tmp.path(), &["ls", "--superlink", &addr, "--run-id", &id, "--format", "json"]).ok("ls").json();
    assert_eq!(runs_of(&ls)[0]["status"], "pending");
    // A .fab takes its federation from the current directory's project.
    let out = sepal(&app, &["run", fab_arg, "local", "--format", "json"]).ok("run .fab on a federation");
    assert_eq!(out.json()["fab-id"], "sepaltest/tinyapp");
}

#[test]
fn errors_are_clear() {
    let link = SuperLink::start();
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write_app(&app, link.link.exec);

    // The SuperLink's refusal is shown with its reason.
    let out = sepal(&app, &["run", ".", "-c", "nope=1"]).failed("unknown run-config key");
    assert!(out.stderr.contains("Run not started: ") && out.stderr.contains("nope"), "{}", out.stderr);
    let out = sepal(&app, &["run", ".", "-c", "lr=abc"]).failed("unquoted string");
    assert!(out.stderr.contains("--run-config"), "{}", out.stderr);

    // Federation problems.
    // A federation without `insecure` uses TLS (system roots): this SuperLink is plaintext.
    let out = sepal(&app, &["run", ".", "tls"]).failed("TLS federation against a plaintext SuperLink");
    assert!(out.stderr.contains("SuperLink at"), "{}", out.stderr);
    let out = sepal(&app, &["ls", ".", "elsewhere"]).failed("unknown federation");
    assert!(out.stderr.contains("no `elsewhere` federation") && out.stderr.contains("local, tls"), "{}", out.stderr);
    let out = sepal(tmp.path(), &["ls"]).failed("no pyproject");
    assert!(out.stderr.contains("pyproject.toml does not exist"), "{}", out.stderr);
    let out = sepal(&app, &["ls", "local"]).failed("federation name in the app's place");
    assert!(out.stderr.contains("local is not an app directory"), "{}", out.stderr);

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = sepal(&app, &["ls", "--superlink", &closed]).failed("closed port");
    assert!(out.stderr.contains(&format!("cannot reach the SuperLink at {closed}")), "{}", out.stderr);
    let out = sepal(&app, &["ls", "--superlink", &closed, "--format", "json"]).failed("closed port, json");
    assert_eq!(out.json()["success"], false);

    // A Wasm component that is not there.
    let pyproject = std::fs::read_to_string(app.join("pyproject.toml")).unwrap();
    std::fs::write(app.join("pyproject.toml"), pyproject.replace("tinyapp.server:app", "server.wasm")).unwrap();
    let out = sepal(tmp.path(), &["build", "app"]).failed("missing component");
    assert!(out.stderr.contains("\"server.wasm\"") && out.stderr.contains("Wasm component"), "{}", out.stderr);
    std::fs::write(app.join("server.wasm"), b"\0asm").unwrap();
    sepal(tmp.path(), &["build", "app"]).ok("build with the component");
}

/// Plays the ServerApp over ServerAppIo: takes the pending run, logs two lines and finishes it,
/// while `sepal run --stream` follows the log.
#[test]
fn run_stream_follows_the_log_until_the_run_finishes() {
    use sepal_proto::pb;
    use sepal_proto::pb::server_app_io_client::ServerAppIoClient;

    let link = SuperLink::start();
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write_app(&app, link.link.exec);
    let streaming = spawn_sepal(&app, &["run", "--stream"]);

    let status = |status: &str, sub_status: &str| pb::RunStatus {
        status: status.into(),
        sub_status: sub_status.into(),
        details: String::new(),
    };
    let (mut serverapp, run_id) = link.runtime.block_on(async {
        let mut serverapp = ServerAppIoClient::connect(format!("http://{}", link.link.serverappio)).await.unwrap();
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let run = loop {
            let inputs = serverapp.pull_app_inputs(pb::PullAppInputsRequest::default()).await.unwrap().into_inner();
            if let Some(run) = inputs.run {
                break run;
            }
            assert!(Instant::now() < deadline, "sepal run --stream submitted no run");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let request = pb::UpdateRunStatusRequest { run_id: run.run_id, run_status: Some(status("running", "")) };
        serverapp.update_run_status(request).await.unwrap();
        let logs = vec!["hello from the ServerApp\n".to_string()];
        serverapp.push_logs(pb::PushLogsRequest { node: None, run_id: run.run_id, logs }).await.unwrap();
        (serverapp, run.run_id)
    });
    let id = run_id.to_string();

    // While it runs: ls shows it running, log --show prints what is there so far.
    let ls = sepal(&app, &["ls", ".", "--run-id", &id, "--format", "json"]).ok("ls").json();
    assert_eq!(runs_of(&ls)[0]["status"], "running");
    assert_ne!(runs_of(&ls)[0]["running-at"], "N/A");
    let shown = sepal(&app, &["log", &id, "--show"]).ok("log --show");
    assert_eq!(shown.stdout, "hello from the ServerApp\n");

    link.runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let logs = vec!["second line\n".to_string()];
        serverapp.push_logs(pb::PushLogsRequest { node: None, run_id, logs }).await.unwrap();
        let request = pb::UpdateRunStatusRequest { run_id, run_status: Some(status("finished", "completed")) };
        serverapp.update_run_status(request).await.unwrap();
    });
    let out = streaming.wait().ok("run --stream");
    assert_eq!(out.stdout, format!("Started run {id}\nhello from the ServerApp\nsecond line\n"));

    // Following the log of the finished run prints it all and ends.
    let out = sepal(&app, &["log", &id]).ok("log");
    assert_eq!(out.stdout, "hello from the ServerApp\nsecond line\n");
    let ls = sepal(&app, &["ls", "--format", "json"]).ok("ls").json();
    assert_eq!(runs_of(&ls)[0]["status"], "finished:completed");
}
