//! What one invocation may take of the host process's shared resources: descriptors
//! (sockets, files) and other host resources, and the size of one copy across the
//! boundary. Each limit is hit by the `hostile` test guest and must be named.

mod support;

use std::sync::{Arc, Mutex};

use sepal_guests::Tripwire;
use sepal_sandbox::{ClientComponent, Grants, GridFuture, GridHost, Limits, LogSource, SandboxError};

fn hostile() -> ClientComponent {
    support::sandbox().load_client(&support::guest("hostile")).expect("load the hostile guest")
}

async fn call(command: &str, limits: &Limits, grants: &Grants) -> (Result<Vec<u8>, SandboxError>, Vec<String>) {
    let log = support::log();
    let result = support::sandbox()
        .client_runner()
        .handle(&hostile(), command.as_bytes(), b"ctx", limits, grants, log.clone())
        .await
        .map(|(reply, _)| reply);
    (result, log.lines_from(LogSource::Sandbox))
}

fn text(result: Result<Vec<u8>, SandboxError>) -> String {
    String::from_utf8(result.expect("a reply")).expect("UTF-8")
}

#[tokio::test]
async fn sockets_past_the_limit_are_refused_to_the_app_which_carries_on() {
    let listener = Tripwire::new();
    let addr = listener.addr().to_string();
    let limits = Limits { sockets: 4, ..Limits::default() };
    let grants = Grants::none().allow_tcp(&addr).unwrap();

    let (result, notices) = call(&format!("hold-tcp:10:{addr}"), &limits, &grants).await;
    let reply = text(result);
    // WASI's `new-socket-limit` is EMFILE to Rust's std: "No file descriptors available".
    assert!(reply.starts_with("held 4; then "), "{reply}");
    assert!(reply.contains("No file descriptors available"), "{reply}");
    assert_eq!(notices.len(), 1, "one notice per invocation: {notices:?}");
    assert!(notices[0].contains("limit of 4 open sockets") && notices[0].contains("--wasm-max-sockets"), "{notices:?}");

    // The next invocation starts from nothing: the sockets went with the store.
    let (result, _) = call(&format!("hold-tcp:4:{addr}"), &limits, &grants).await;
    assert_eq!(text(result), "held 4");

    // Without a grant there is no socket at all, and no notice about the limit.
    let (result, notices) = call(&format!("hold-tcp:10:{addr}"), &limits, &Grants::none()).await;
    assert!(text(result).starts_with("held 0; then PermissionDenied"));
    assert!(notices.is_empty(), "{notices:?}");
}

#[tokio::test]
async fn holding_too_many_host_resources_ends_the_invocation_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    let grants = Grants::none().read_only_dir(dir.path(), "/data").unwrap();
    let limits = Limits { resources: 32, ..Limits::default() };

    // Each open file is a descriptor and a resource-table entry.
    let (result, _) = call("hold-files:1000:/data/f", &limits, &grants).await;
    match result {
        Err(e @ SandboxError::ResourceLimit { limit: 32, flag: "--wasm-max-resources", .. }) => {
            let text = e.to_string();
            assert!(text.contains("limit of 32 host resources") && text.contains("--wasm-max-resources"), "{text}");
        }
        other => panic!("expected ResourceLimit, got {other:?}"),
    }
    // Below the limit, the same app works.
    let (result, _) = call("hold-files:8:/data/f", &limits, &grants).await;
    assert_eq!(text(result), "held 8");
}

#[tokio::test]
async fn a_reply_past_wasmtimes_default_copy_limit_crosses_within_the_memory_limit() {
    // wasmtime's default hostcall fuel stops any copy from the guest at 128 MiB; the
    // sandbox allows the app's memory limit (1 GiB by default).
    let (result, _) = call("big:136", &Limits::default(), &Grants::none()).await;
    let reply = result.expect("a 136 MiB reply");
    assert_eq!(reply.len(), 136 << 20);
    assert!(reply.iter().all(|&b| b == 7));
}

/// A grid that takes every push and remembers the size of each message.
#[derive(Clone, Default)]
struct CountingGrid {
    pushed: Arc<Mutex<Vec<usize>>>,
}

impl GridHost for CountingGrid {
    fn node_ids(&mut self) -> GridFuture<'_, Vec<u64>> {
        Box::pin(async { Ok(vec![1]) })
    }

    fn push_messages(&mut self, messages: Vec<Vec<u8>>) -> GridFuture<'_, Vec<String>> {
        self.pushed.lock().unwrap().extend(messages.iter().map(Vec::len));
        Box::pin(async move { Ok((0..messages.len()).map(|i| format!("id-{i}")).collect()) })
    }

    fn pull_messages(&mut self, _ids: Vec<String>) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn send_and_receive(
        &mut self,
        _messages: Vec<Vec<u8>>,
        _timeout: std::time::Duration,
    ) -> GridFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

async fn push(command: &str, limits: &Limits) -> (Result<Vec<u8>, SandboxError>, Vec<usize>) {
    let server = support::sandbox().load_server(&support::guest("server")).expect("load the server guest");
    let grid = CountingGrid::default();
    let result = support::sandbox()
        .server_runner()
        .run(&server, command.as_bytes(), grid.clone(), limits, &Grants::none(), support::log())
        .await;
    let pushed = grid.pushed.lock().unwrap().clone();
    (result, pushed)
}

#[tokio::test]
async fn a_push_past_wasmtimes_default_copy_limit_reaches_the_grid() {
    // 9 x 16 MiB in one push: 144 MiB copied in one call, refused by wasmtime's default.
    let (result, pushed) = push("push-big:9:16", &Limits::default()).await;
    assert_eq!(text(result), "pushed 9");
    assert_eq!(pushed, vec![16 << 20; 9]);
}

#[tokio::test]
async fn a_copy_larger_than_the_memory_limit_ends_the_run_naming_the_flag() {
    // 4 Mi empty messages take the guest 20 bytes each (48 MiB of vectors and 32 MiB of
    // pointers to hand over), but the host's copy 24 bytes each (96 MiB): with 88 MiB of
    // memory the app holds them, and the copy passes its limit.
    let limits = Limits { memory_bytes: 88 << 20, ..Limits::default() };
    let (result, pushed) = push("push-empty:4194304", &limits).await;
    match result {
        Err(e @ SandboxError::ResourceLimit { limit, flag: "--wasm-memory-mb", .. }) => {
            assert_eq!(limit, 88 << 20);
            let text = e.to_string();
            assert!(
                text.contains("bytes copied to the host in one call") && text.contains("--wasm-memory-mb"),
                "{text}"
            );
        }
        other => panic!("expected the copy limit, got {other:?}"),
    }
    assert!(pushed.is_empty(), "nothing reached the grid");
    // Within the limit, the same push goes through.
    let (result, pushed) = push("push-empty:1024", &limits).await;
    assert_eq!(text(result), "pushed 1024");
    assert_eq!(pushed.len(), 1024);
}
