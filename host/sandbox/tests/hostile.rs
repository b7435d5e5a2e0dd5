//! Hostile ClientApps against the sandbox. Each test asserts the exact cause of the
//! failure, and that a normal call succeeds afterwards on the same engine and cache.

mod support;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use sepal_guests::Tripwire;
use sepal_proto::pb;
use sepal_sandbox::{
    decode_reply, ClientComponent, Grants, Limits, LogBuffer, LogLevel, LogSource, SandboxError, TrapKind,
};

fn hostile() -> ClientComponent {
    support::sandbox().load_client(&support::guest("hostile")).expect("load the hostile guest")
}

fn echo() -> ClientComponent {
    support::sandbox().load_client(&support::guest("echo")).expect("load the echo guest")
}

async fn call_with(
    app: &ClientComponent,
    command: &str,
    limits: &Limits,
    grants: &Grants,
) -> (Result<(Vec<u8>, Vec<u8>), SandboxError>, Arc<LogBuffer>) {
    let log = support::log();
    let result =
        support::sandbox().client_runner().handle(app, command.as_bytes(), b"ctx", limits, grants, log.clone()).await;
    (result, log)
}

async fn call(command: &str) -> Result<(Vec<u8>, Vec<u8>), SandboxError> {
    call_with(&hostile(), command, &Limits::default(), &Grants::none()).await.0
}

fn app_error(result: Result<(Vec<u8>, Vec<u8>), SandboxError>) -> (u32, String) {
    match result {
        Err(SandboxError::AppError { code, message }) => (code, message),
        other => panic!("expected an app error, got {other:?}"),
    }
}

/// A normal message still works, on the same engine and cache, with both components.
async fn assert_healthy() {
    let message = pb::Message {
        metadata: Some(pb::Metadata { run_id: 7, message_type: "train".into(), ..Default::default() }),
        ..Default::default()
    }
    .encode_to_vec();
    let log = support::log();
    let (reply, context) = support::sandbox()
        .client_runner()
        .handle(&echo(), &message, b"context", &Limits::default(), &Grants::none(), log.clone())
        .await
        .expect("a normal call after a hostile one");
    let reply: pb::Message = decode_reply(&reply[..]).expect("a valid reply");
    assert_eq!(reply.metadata.unwrap().run_id, 7);
    assert_eq!(context, b"context");
    assert_eq!(log.lines_from(LogSource::App(LogLevel::Info)), [format!("echo: {} message bytes", message.len())]);
    let (reply, _) = call("plain echo").await.expect("the hostile guest's echo path");
    assert_eq!(reply, b"plain echo");
}

#[tokio::test]
async fn a_normal_call_succeeds_and_its_output_reaches_the_log() {
    assert_healthy().await;
    let (result, log) = call_with(&hostile(), "log", &Limits::default(), &Grants::none()).await;
    assert_eq!(result.unwrap().0, b"logged");
    assert_eq!(
        log.lines(),
        [
            (LogSource::App(LogLevel::Info), "hello through the log import".to_string()),
            (LogSource::App(LogLevel::Warn), "a warning".to_string()),
            (LogSource::Stdout, "hello on stdout".to_string()),
            (LogSource::Stderr, "hello on stderr".to_string()),
        ]
    );
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let limits = Limits::default().with_deadline_at_most(Duration::from_millis(200));
    let started = Instant::now();
    let (result, _) = call_with(&hostile(), "loop", &limits, &Grants::none()).await;
    let took = started.elapsed();
    match result {
        Err(SandboxError::DeadlineExceeded { deadline }) => {
            assert_eq!(deadline, Duration::from_millis(200))
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_healthy().await;
}

#[tokio::test]
async fn sleeping_in_the_host_is_stopped_at_the_deadline_too() {
    let limits = Limits::default().with_deadline_at_most(Duration::from_millis(200));
    let started = Instant::now();
    let (result, _) = call_with(&hostile(), "sleep", &limits, &Grants::none()).await;
    assert!(matches!(result, Err(SandboxError::DeadlineExceeded { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_healthy().await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let cap = 64 << 20;
    let limits = Limits::default().with_memory(cap);
    let (result, _) = call_with(&hostile(), "bomb", &limits, &Grants::none()).await;
    match result {
        Err(SandboxError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, cap as u64);
            assert!(requested.unwrap() > cap as u64);
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_healthy().await;
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let result = call("recurse:100000000").await;
    assert!(matches!(result, Err(SandboxError::StackOverflow)), "{result:?}");
    // Modest recursion is fine.
    assert!(call("recurse:1000").await.is_ok());
    assert_healthy().await;
}

#[tokio::test]
async fn etc_passwd_does_not_exist_for_the_guest() {
    let (code, message) = app_error(call("read:/etc/passwd").await);
    assert_eq!(code, 2);
    assert!(message.starts_with("NotFound"), "{message}");
    assert!(!message.contains("root:"), "{message}");
    let (_, message) = app_error(call("list:/").await);
    assert!(message.starts_with("NotFound"), "{message}");
    let (_, message) = app_error(call("write:/tmp/sepal-sandbox-escape").await);
    assert!(message.starts_with("NotFound"), "{message}");
    assert!(!std::path::Path::new("/tmp/sepal-sandbox-escape").exists());
    assert_healthy().await;
}

#[tokio::test]
async fn the_host_environment_is_invisible() {
    assert!(std::env::vars().next().is_some(), "the test process has an environment");
    let (reply, _) = call("env").await.unwrap();
    assert_eq!(String::from_utf8(reply).unwrap(), "vars=\nargs=");
    // What the operator grants is visible, and only that.
    let grants = Grants::none().env("SEPAL_GRANTED", "yes");
    let (result, _) = call_with(&hostile(), "env", &Limits::default(), &grants).await;
    assert_eq!(String::from_utf8(result.unwrap().0).unwrap(), "vars=SEPAL_GRANTED=yes\nargs=");
    assert_healthy().await;
}

#[tokio::test]
async fn tcp_is_denied_unless_granted_for_that_address() {
    let tripwire = Tripwire::new();
    let addr = tripwire.addr().to_string();
    let (_, message) = app_error(call(&format!("tcp:{addr}")).await);
    assert!(message.starts_with("PermissionDenied"), "{message}");
    tripwire.assert_untouched();

    // A grant for another address does not open this one.
    let other = Tripwire::new();
    let grants = Grants::none().allow_tcp(other.addr()).unwrap();
    let (result, _) = call_with(&hostile(), &format!("tcp:{addr}"), &Limits::default(), &grants).await;
    let (_, message) = app_error(result);
    assert!(message.starts_with("PermissionDenied"), "{message}");
    tripwire.assert_untouched();

    // The grant for this address works: the grant is explicit and opt-in.
    let grants = Grants::none().allow_tcp(&addr).unwrap();
    let (result, _) = call_with(&hostile(), &format!("tcp:{addr}"), &Limits::default(), &grants).await;
    assert_eq!(result.unwrap().0, b"connected");
    let mut stream = tripwire.accept().expect("the granted connection");
    stream.set_nonblocking(false).unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello from the guest");
    assert_healthy().await;
}

#[tokio::test]
async fn printing_without_end_is_truncated_and_the_call_ends_cleanly() {
    let limits = Limits::default();
    let started = Instant::now();
    let (result, log) = call_with(&hostile(), "flood:50000", &limits, &Grants::none()).await;
    assert_eq!(result.expect("a flood is not fatal").0, b"flooded");
    let took = started.elapsed();
    let kept: usize = log.lines_from(LogSource::Stdout).iter().map(|l| l.len() + 1).sum();
    // (+1: the line cut at the cap has no newline.)
    assert!(kept <= limits.stdout_bytes + 1, "{kept}");
    assert!(kept > limits.stdout_bytes - 200, "{kept}");
    let notes = log.lines_from(LogSource::Sandbox);
    assert!(notes.iter().any(|n| n.starts_with("stdout truncated: kept the first 262144 bytes")), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("stderr truncated")), "{notes:?}");
    eprintln!("50,000 lines on each stream took {took:?}");
    assert_healthy().await;
}

#[tokio::test]
async fn a_panic_is_a_trap_carrying_the_panic_message() {
    let (result, log) = call_with(&hostile(), "panic", &Limits::default(), &Grants::none()).await;
    match result {
        Err(SandboxError::Trap { kind: TrapKind::Unreachable, message }) => {
            assert!(message.contains("sepal-test-panic: the guest gave up"), "{message}")
        }
        other => panic!("expected an unreachable trap, got {other:?}"),
    }
    // The panic message is in the run's log as well.
    assert!(log.text().contains("sepal-test-panic"));
    assert_healthy().await;
}

#[tokio::test]
async fn garbage_output_reaches_the_caller_and_decode_reply_rejects_it() {
    let (reply, context) = call("garbage").await.expect("the bytes come back");
    assert_eq!(reply, vec![0xff; 64]);
    match decode_reply::<pb::Message>(&reply[..]) {
        Err(SandboxError::InvalidOutput(why)) => assert!(why.contains("Message"), "{why}"),
        other => panic!("expected InvalidOutput, got {other:?}"),
    }
    assert!(matches!(decode_reply::<pb::Context>(&context[..]), Err(SandboxError::InvalidOutput(_))));
    assert_healthy().await;
}

#[tokio::test]
async fn an_app_error_is_reported_as_such() {
    let (code, message) = app_error(call("app-error").await);
    assert_eq!((code, message.as_str()), (7, "the app said no"));
    assert_healthy().await;
}

#[tokio::test]
async fn a_read_only_data_dir_can_be_read_but_not_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.csv"), "x,y\n1,2\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd-link")).unwrap();
    let grants = Grants::none().read_only_dir(dir.path(), "/data").unwrap();
    let app = hostile();
    let run = |command: String| {
        let (app, grants) = (app.clone(), grants.clone());
        async move { call_with(&app, &command, &Limits::default(), &grants).await.0 }
    };

    let (data, _) = run("read:/data/train.csv".into()).await.unwrap();
    assert_eq!(data, b"x,y\n1,2\n");
    let (listing, _) = run("list:/data".into()).await.unwrap();
    assert!(String::from_utf8(listing).unwrap().contains("train.csv"));

    let (_, message) = app_error(run("write:/data/new.txt".into()).await);
    assert!(message.starts_with("PermissionDenied"), "{message}");
    assert!(!dir.path().join("new.txt").exists());
    let (_, message) = app_error(run("write:/data/train.csv".into()).await);
    assert!(message.starts_with("PermissionDenied"), "{message}");
    assert_eq!(std::fs::read_to_string(dir.path().join("train.csv")).unwrap(), "x,y\n1,2\n");

    // No way out of the mount.
    for escape in ["read:/data/../etc/passwd", "read:/data/passwd-link"] {
        let (_, message) = app_error(run(escape.into()).await);
        assert!(!message.contains("root:"), "{escape}: {message}");
        assert!(message.starts_with("PermissionDenied") || message.starts_with("NotFound"), "{escape}: {message}");
    }
    assert_healthy().await;
}

#[tokio::test]
async fn components_that_are_not_client_apps_are_refused_with_the_reason() {
    let sandbox = support::sandbox();
    let refuse = |bytes: &[u8]| match sandbox.load_client(bytes) {
        Err(SandboxError::BadComponent(why)) => why,
        other => panic!("expected BadComponent, got {other:?}"),
    };
    assert!(refuse(b"not wasm at all").contains("not a WebAssembly component"));
    // A core module (preamble with layer 0), as `--target wasm32-unknown-unknown` makes.
    assert!(refuse(b"\0asm\x01\0\0\0").contains("not a WebAssembly component"));
    // A truncated component.
    let echo = support::guest("echo");
    assert!(refuse(&echo[..echo.len() / 2]).contains("does not compile"));
    // A ServerApp is not a ClientApp, and the other way round.
    let why = refuse(&support::guest("server"));
    assert!(why.contains("it is a ServerApp"), "{why}");
    assert!(why.contains("sepal:app/client-app@0.1.0"), "{why}");
    match sandbox.load_server(&echo) {
        Err(SandboxError::BadComponent(why)) => assert!(why.contains("it is a ClientApp"), "{why}"),
        other => panic!("expected BadComponent, got {other:?}"),
    }
    assert_healthy().await;
}

#[tokio::test]
async fn components_are_compiled_once_and_cached_by_digest() {
    let sandbox = support::sandbox();
    let bytes = support::guest("echo");
    let first = sandbox.load_client(&bytes).unwrap();
    let started = Instant::now();
    let again = sandbox.load_client(&bytes).unwrap();
    let cached_load = started.elapsed();
    assert_eq!(first.digest(), again.digest());
    assert!(cached_load < Duration::from_millis(50), "{cached_load:?}");
    assert!(sandbox.cached_components() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_all_succeed() {
    let app = echo();
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let message = i.to_le_bytes();
            let (reply, _) = support::sandbox()
                .client_runner()
                .handle(&app, &message, b"", &Limits::default(), &Grants::none(), Arc::new(|_: LogSource, _: &str| {}))
                .await
                .unwrap();
            assert_eq!(reply, message);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
