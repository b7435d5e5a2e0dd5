//! ServerApps against the sandbox: the grid import, deadlines that cut off host waits,
//! yielding to tokio during long runs, and ending a run from the host.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sepal_sandbox::{
    Grants, GridError, GridFuture, GridHost, Limits, LogLevel, LogSource, SandboxError, ServerComponent,
};

/// A federation of three nodes that answer every instruction at once, unless told to hang.
#[derive(Clone, Default)]
struct FakeGrid {
    timeouts: Arc<Mutex<Vec<Duration>>>,
    hang: bool,
    fail: Option<GridError>,
}

impl GridHost for FakeGrid {
    fn node_ids(&mut self) -> GridFuture<'_, Vec<u64>> {
        Box::pin(async move {
            match self.fail.clone() {
                Some(e) => Err(e),
                None => Ok(vec![1, 2, 3]),
            }
        })
    }

    fn push_messages(&mut self, messages: Vec<Vec<u8>>) -> GridFuture<'_, Vec<String>> {
        Box::pin(async move { Ok((0..messages.len()).map(|i| format!("id-{i}")).collect()) })
    }

    fn pull_messages(&mut self, message_ids: Vec<String>) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move { Ok(message_ids.iter().map(|id| format!("reply to {id}").into_bytes()).collect()) })
    }

    fn send_and_receive(&mut self, messages: Vec<Vec<u8>>, timeout: Duration) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move {
            self.timeouts.lock().unwrap().push(timeout);
            if self.hang {
                std::future::pending::<()>().await;
            }
            Ok(messages.into_iter().map(|m| [b"re: ".as_slice(), &m].concat()).collect())
        })
    }
}

fn server() -> ServerComponent {
    support::sandbox().load_server(&support::guest("server")).expect("load the server guest")
}

async fn run(
    command: &str,
    grid: FakeGrid,
    limits: &Limits,
) -> (Result<Vec<u8>, SandboxError>, Arc<sepal_sandbox::LogBuffer>) {
    let log = support::log();
    let result = support::sandbox()
        .server_runner()
        .run(&server(), command.as_bytes(), grid, limits, &Grants::none(), log.clone())
        .await;
    (result, log)
}

async fn assert_healthy() {
    let (result, log) = run("round", FakeGrid::default(), &Limits::default()).await;
    let summary = String::from_utf8(result.expect("a normal run")).unwrap();
    assert_eq!(summary, "nodes=3 replies=3 ids=id-0 pulled=1|re: train 1|re: train 2|re: train 3");
    assert_eq!(
        log.lines(),
        [(LogSource::App(LogLevel::Info), "3 nodes online".to_string()), (LogSource::Stdout, "round done".to_string()),]
    );
}

#[tokio::test]
async fn a_server_app_drives_the_grid() {
    let grid = FakeGrid::default();
    let (result, _) = run("round", grid.clone(), &Limits::default()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(*grid.timeouts.lock().unwrap(), [Duration::from_secs(5)]);
    assert_healthy().await;
    // Anything else: the context comes back unchanged.
    let (result, _) = run("plain", FakeGrid::default(), &Limits::default()).await;
    assert_eq!(result.unwrap(), b"plain");
}

#[tokio::test]
async fn the_apps_timeouts_are_made_finite_and_bounded_by_the_deadline() {
    let grid = FakeGrid::default();
    let limits = Limits::default().with_deadline_at_most(Duration::from_secs(30));
    let (result, _) = run("wait", grid.clone(), &limits).await;
    assert_eq!(result.unwrap(), b"replies=1");
    let (result, _) = run("nan", grid.clone(), &limits).await;
    assert_eq!(result.unwrap(), b"replies=1");
    let timeouts = grid.timeouts.lock().unwrap().clone();
    assert!(timeouts[0] <= Duration::from_secs(30) && timeouts[0] > Duration::from_secs(25), "{timeouts:?}");
    assert_eq!(timeouts[1], Duration::ZERO);
}

#[tokio::test]
async fn a_host_wait_is_cut_off_at_the_deadline() {
    let grid = FakeGrid { hang: true, ..Default::default() };
    let limits = Limits::default().with_deadline_at_most(Duration::from_millis(300));
    let started = Instant::now();
    let (result, _) = run("wait", grid, &limits).await;
    assert!(matches!(result, Err(SandboxError::DeadlineExceeded { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_healthy().await;
}

/// On a single-threaded runtime, a spinning ServerApp still lets other tasks run (it
/// yields every epoch tick), and is stopped at its deadline.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_server_app_yields_and_is_stopped_at_the_deadline() {
    let ticks = Arc::new(Mutex::new(0u32));
    let counter = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                *ticks.lock().unwrap() += 1;
            }
        })
    };
    let limits = Limits::default().with_deadline_at_most(Duration::from_millis(500));
    let (result, _) = run("loop", FakeGrid::default(), &limits).await;
    counter.abort();
    assert!(matches!(result, Err(SandboxError::DeadlineExceeded { .. })), "{result:?}");
    let ticks = *ticks.lock().unwrap();
    assert!(ticks >= 5, "other tasks ran {ticks} times during the run");
    assert_healthy().await;
}

#[tokio::test]
async fn the_host_can_end_a_run_from_a_grid_call() {
    let grid = FakeGrid { fail: Some(GridError::Abort("the run was stopped".into())), ..Default::default() };
    let (result, _) = run("round", grid, &Limits::default()).await;
    match result {
        Err(SandboxError::Aborted(reason)) => assert_eq!(reason, "the run was stopped"),
        other => panic!("expected Aborted, got {other:?}"),
    }
    assert_healthy().await;
}

#[tokio::test]
async fn a_grid_error_reaches_the_app_which_may_return_it() {
    let grid = FakeGrid { fail: Some(GridError::App { code: 3, message: "no nodes".into() }), ..Default::default() };
    let (result, _) = run("round", grid, &Limits::default()).await;
    match result {
        Err(SandboxError::AppError { code, message }) => {
            assert_eq!((code, message.as_str()), (3, "no nodes"))
        }
        other => panic!("expected AppError, got {other:?}"),
    }
    assert_healthy().await;
}

#[tokio::test]
async fn dropping_the_future_stops_a_run() {
    let stopped =
        tokio::time::timeout(Duration::from_millis(200), run("loop", FakeGrid::default(), &Limits::default())).await;
    assert!(stopped.is_err(), "the run should still have been going");
    assert_healthy().await;
}

#[tokio::test]
async fn precompiled_artifacts_are_persisted_verified_and_replaced_when_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("cwasm");
    let config =
        sepal_sandbox::SandboxConfig { concurrency: 2, artifact_dir: Some(artifacts.clone()), ..Default::default() };
    let bytes = support::guest("server");

    let first = sepal_sandbox::Sandbox::new(config.clone()).unwrap();
    first.load_server(&bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&artifacts).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let files: Vec<_> = std::fs::read_dir(&artifacts).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert!(file.file_name().unwrap().to_string_lossy().starts_with(&hex_digest(&bytes)));
    let original = std::fs::read(file).unwrap();
    let written_at = std::fs::metadata(file).unwrap().modified().unwrap();

    // A second process loads it from disk, and it runs.
    let second = sepal_sandbox::Sandbox::new(config.clone()).unwrap();
    let app = second.load_server(&bytes).unwrap();
    let result = second
        .server_runner()
        .run(&app, b"round", FakeGrid::default(), &Limits::default(), &Grants::none(), support::log())
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(std::fs::read(file).unwrap(), original);
    let modified = std::fs::metadata(file).unwrap().modified().unwrap();
    assert_eq!(modified, written_at, "loaded from disk, not compiled and written again");

    // One flipped byte in the native code: detected, discarded, compiled again.
    let mut corrupt = original.clone();
    let at = corrupt.len() - 100;
    corrupt[at] ^= 0x01;
    std::fs::write(file, &corrupt).unwrap();
    let third = sepal_sandbox::Sandbox::new(config).unwrap();
    let app = third.load_server(&bytes).unwrap();
    let result = third
        .server_runner()
        .run(&app, b"round", FakeGrid::default(), &Limits::default(), &Grants::none(), support::log())
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(std::fs::read(file).unwrap(), original, "rewritten from a fresh compile");
}

#[tokio::test]
async fn the_artifact_cache_stays_within_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("cwasm");
    let budget = sepal_sandbox::SandboxConfig {
        artifact_dir: Some(artifacts.clone()),
        // Room for one compiled component, not two.
        artifact_dir_max_bytes: 1,
        ..Default::default()
    };
    let sandbox = sepal_sandbox::Sandbox::new(budget).unwrap();
    sandbox.load_server(&support::guest("server")).unwrap();
    sandbox.load_client(&support::guest("echo")).unwrap();
    let files: Vec<_> = std::fs::read_dir(&artifacts).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.len() <= 1, "older artifacts are removed past the budget: {files:?}");
    // What is cached in memory still runs.
    let app = sandbox.load_server(&support::guest("server")).unwrap();
    let result = sandbox
        .server_runner()
        .run(&app, b"round", FakeGrid::default(), &Limits::default(), &Grants::none(), support::log())
        .await;
    assert!(result.is_ok(), "{result:?}");
}

fn hex_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
