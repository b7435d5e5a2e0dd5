//! Wasm apps under process isolation, end to end in one test process: a Sepal SuperLink
//! and two SuperNodes in process isolation (they run no app code), `serverapp::run` and
//! one `clientapp::run` per SuperNode, the quickstart FAB submitted over Exec.
//!
//! The quickstart's components are built once per test run with its `build.sh` (cargo,
//! `wasm32-wasip2`, its own target dir); needs `rustup target add wasm32-wasip2`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sepal_appio::{clientapp, serverapp};
use sepal_core::records::{Message, Metadata, RecordDict};
use sepal_core::{message_from_objects, message_to_objects};
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_client::ClientAppIoClient;
use sepal_proto::pb::exec_client::ExecClient;
use sepal_proto::pb::server_app_io_client::ServerAppIoClient;
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::{Isolation as LinkIsolation, Listeners};
use sepal_supernode::retry::RetryPolicy;
use sepal_supernode::{Config as NodeConfig, Isolation as NodeIsolation};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Channel;

/// How long any one wait of these tests may take.
const WAIT: Duration = Duration::from_secs(180);

fn quickstart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart")
}

/// The quickstart FAB, its components built once per test run with `build.sh`.
fn quickstart_fab() -> pb::Fab {
    static FAB: OnceLock<pb::Fab> = OnceLock::new();
    FAB.get_or_init(|| {
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(quickstart_dir().join("build.sh"))
            .arg("--quiet")
            // The script builds into the example's own target dir, with the example's flags.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .output()
            .expect("run examples/quickstart/build.sh");
        assert!(
            output.status.success(),
            "building the quickstart failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("quickstart components built in {:?}", started.elapsed());
        let (content, hash_str, _) = sepal_fab::build_fab(&quickstart_dir()).expect("quickstart FAB");
        pb::Fab { hash_str, content }
    })
    .clone()
}

/// A FAB whose ServerApp and ClientApp are Python.
fn python_fab() -> pb::Fab {
    let dir = tempfile_dir();
    let manifest = "[project]\nname = \"pyapp\"\nversion = \"1.0.0\"\n\n[tool.flwr.app]\npublisher = \"sepal\"\n\n\
                    [tool.flwr.app.components]\nserverapp = \"pyapp.server:app\"\nclientapp = \"pyapp.client:app\"\n";
    std::fs::write(dir.join("pyproject.toml"), manifest).unwrap();
    let (content, hash_str, _) = sepal_fab::build_fab(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    pb::Fab { hash_str, content }
}

fn tempfile_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("sepal-appio-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A SuperLink and SuperNodes in process isolation, stopped when dropped.
struct Federation {
    serverappio: SocketAddr,
    exec: SocketAddr,
    clientappio: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
}

impl Drop for Federation {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Federation {
    async fn start(nodes: usize) -> Self {
        // Shown when a test fails (or with --nocapture).
        let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners::bind(any, any, any).await.unwrap();
        let (serverappio, fleet, exec) = (
            listeners.serverappio.local_addr().unwrap(),
            listeners.fleet.local_addr().unwrap(),
            listeners.exec.local_addr().unwrap(),
        );
        let (stop, _) = watch::channel(false);
        let config = sepal_superlink::Config::new(LinkIsolation::Process);
        let state = Arc::new(MemoryState::new());
        tokio::spawn(sepal_superlink::serve(config, listeners, state, stopped(&stop)));
        let mut clientappio = Vec::new();
        for partition in 0..nodes {
            let listener = TcpListener::bind(any).await.unwrap();
            clientappio.push(listener.local_addr().unwrap());
            let config = node_config(fleet, listener.local_addr().unwrap(), partition, nodes);
            tokio::spawn(sepal_supernode::serve(config, listener, stopped(&stop)));
        }
        Federation { serverappio, exec, clientappio, stop }
    }

    /// Starts `sepal serverapp` (looping) against the SuperLink.
    fn serverapp(&self) -> tokio::task::JoinHandle<Result<(), sepal_appio::Error>> {
        let (address, shutdown) = (self.serverappio.to_string(), stopped(&self.stop));
        tokio::spawn(async move { serverapp::run(&address, serverapp::Options::default(), shutdown).await })
    }

    /// Starts one `sepal clientapp` (looping) per SuperNode.
    fn clientapps(&self) {
        for addr in &self.clientappio {
            let (address, shutdown) = (addr.to_string(), stopped(&self.stop));
            tokio::spawn(async move { clientapp::run(&address, clientapp::Options::default(), shutdown).await });
        }
    }

    async fn exec(&self) -> ExecClient<Channel> {
        ExecClient::new(channel(self.exec).await)
    }

    async fn start_run(&self, fab: pb::Fab) -> u64 {
        let req = pb::StartRunRequest { fab: Some(fab), ..Default::default() };
        self.exec().await.start_run(req).await.unwrap().into_inner().run_id.expect("run id")
    }

    async fn status(&self, run_id: u64) -> pb::RunStatus {
        let res = self.exec().await.list_runs(pb::ListRunsRequest { run_id: Some(run_id) }).await.unwrap();
        res.into_inner().run_dict.remove(&run_id).and_then(|r| r.status).unwrap_or_default()
    }

    /// Waits until the run's status is `status`.
    async fn wait_for(&self, run_id: u64, status: &str) -> pb::RunStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let current = self.status(run_id).await;
            if current.status == status {
                return current;
            }
            assert!(Instant::now() < deadline, "run {run_id} never became {status}: {current:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The run's whole log (the run must be finished: the stream then ends).
    async fn log(&self, run_id: u64) -> String {
        let req = pb::StreamLogsRequest { run_id, after_timestamp: 0.0 };
        let mut stream = self.exec().await.stream_logs(req).await.unwrap().into_inner();
        let mut log = String::new();
        while let Some(part) = bounded(stream.message()).await.unwrap() {
            log.push_str(&part.log_output);
        }
        log
    }
}

fn node_config(fleet: SocketAddr, clientappio: SocketAddr, partition: usize, nodes: usize) -> NodeConfig {
    let config = format!("partition-id={partition} num-partitions={nodes}");
    let node_config = sepal_fab::parse_config_overrides(&config).unwrap();
    NodeConfig {
        superlink: fleet.to_string(),
        tls: sepal_supernode::ClientTls::Insecure,
        node_config: sepal_fab::to_scalars(&node_config),
        clientappio,
        isolation: NodeIsolation::Process,
        clientapp_bin: "unused".into(),
        flwr_dir: None,
        retry: RetryPolicy::default(),
        clientapp_timeout: None,
        wasm_limits: sepal_sandbox::Limits::default(),
        wasm_grants: sepal_sandbox::Grants::none(),
    }
}

fn stopped(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("bounded wait")
}

async fn channel(addr: SocketAddr) -> Channel {
    bounded(Channel::from_shared(format!("http://{addr}")).unwrap().connect()).await.unwrap()
}

/// The accuracies in "quickstart finished: 3 rounds, accuracy 0.5080 -> 0.9300".
fn accuracy_change(log: &str) -> (f64, f64) {
    let line = log.lines().find(|l| l.contains("quickstart finished")).expect("the quickstart's summary line");
    let change = line.split("accuracy ").nth(1).expect("accuracy in the summary");
    let mut parts = change.split(" -> ");
    let first = parts.next().unwrap().trim().parse().unwrap();
    let last = parts.next().unwrap().split(',').next().unwrap().trim().parse().unwrap();
    (first, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_quickstart_runs_with_external_wasm_apps() {
    let fab = tokio::task::spawn_blocking(quickstart_fab).await.unwrap();
    let fed = Federation::start(2).await;
    fed.serverapp();
    fed.clientapps();
    let started = Instant::now();
    let run_id = fed.start_run(fab).await;
    let status = fed.wait_for(run_id, "finished").await;
    eprintln!("quickstart run took {:?}", started.elapsed());
    let log = fed.log(run_id).await;
    assert_eq!(status.sub_status, "completed", "{status:?}\n{log}");
    assert!(log.contains("round 3: federated evaluation loss"), "{log}");
    assert!(!log.contains("Left out the reply"), "every reply was aggregated\n{log}");
    let (first, last) = accuracy_change(&log);
    assert!(last > first + 0.2 && last > 0.8, "accuracy {first} -> {last}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_run_lets_serverapp_move_on() {
    let fab = tokio::task::spawn_blocking(quickstart_fab).await.unwrap();
    let fed = Federation::start(2).await;
    let serverapp = fed.serverapp();
    // No ClientApps yet: the first round's instructions wait at the SuperNodes.
    let run_id = fed.start_run(fab.clone()).await;
    fed.wait_for(run_id, "running").await;
    wait_for_pending_instruction(fed.clientappio[0]).await;
    let stop = fed.exec().await.stop_run(pb::StopRunRequest { run_id }).await.unwrap().into_inner();
    assert!(stop.success);

    // The next run is served: a Python FAB fails clearly...
    let python = fed.start_run(python_fab()).await;
    let status = fed.wait_for(python, "finished").await;
    assert_eq!(status.sub_status, "failed");
    assert!(status.details.contains("ServerApp is Python") && status.details.contains("flwr-serverapp"), "{status:?}");
    assert!(fed.log(python).await.contains("run flwr-serverapp for it"));
    // ...and the stopped run stays stopped (no final status from the app).
    let stopped = fed.status(run_id).await;
    assert_eq!((stopped.status.as_str(), stopped.sub_status.as_str()), ("finished", "stopped"));

    // With ClientApps, a Wasm run completes (the stale instruction is answered and dropped).
    fed.clientapps();
    let next = fed.start_run(fab).await;
    let status = fed.wait_for(next, "finished").await;
    assert_eq!(status.sub_status, "completed", "{status:?}");
    assert!(!serverapp.is_finished());
}

async fn wait_for_pending_instruction(clientappio: SocketAddr) {
    let mut io = ClientAppIoClient::new(channel(clientappio).await);
    let deadline = Instant::now() + WAIT;
    loop {
        let req = pb::GetRunIdsWithPendingMessagesRequest {};
        if !io.get_run_ids_with_pending_messages(req).await.unwrap().into_inner().run_ids.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "no instruction reached the SuperNode");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_fails_a_python_serverapp_clearly_and_returns() {
    let fed = Federation::start(0).await;
    let run_id = fed.start_run(python_fab()).await;
    let options = serverapp::Options { run_once: true, ..Default::default() };
    bounded(serverapp::run(&fed.serverappio.to_string(), options, std::future::pending())).await.unwrap();
    let status = fed.status(run_id).await;
    assert_eq!((status.status.as_str(), status.sub_status.as_str()), ("finished", "failed"));
    assert!(status.details.contains("this FAB's ServerApp is Python (`pyapp.server:app`)"), "{status:?}");
}

/// The test plays the ServerApp of a Python FAB; `sepal clientapp` answers its
/// instruction with Flower's "cannot load the ClientApp" error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_clientapp_gets_an_error_reply() {
    let fed = Federation::start(1).await;
    let run_id = fed.start_run(python_fab()).await;
    let mut sio = ServerAppIoClient::new(channel(fed.serverappio).await);
    sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await.unwrap();
    let running = pb::RunStatus { status: "running".into(), ..Default::default() };
    sio.update_run_status(pb::UpdateRunStatusRequest { run_id, run_status: Some(running) }).await.unwrap();
    let node_id = wait_for_node(&mut sio, run_id).await;
    let id = push_instruction(&mut sio, run_id, node_id).await;

    let options = clientapp::Options { run_once: true, ..Default::default() };
    bounded(clientapp::run(&fed.clientappio[0].to_string(), options, std::future::pending())).await.unwrap();

    let reply = pull_reply(&mut sio, run_id, &id).await;
    let error = reply.error.expect("an error reply");
    assert_eq!(error.code, sepal_core::Error::LOAD_CLIENT_APP_EXCEPTION);
    assert!(error.reason.starts_with("Python ClientApp: use flwr-clientapp"), "{}", error.reason);
    assert_eq!((reply.metadata.src_node_id, reply.metadata.reply_to_message_id.as_str()), (node_id, id.as_str()));
}

async fn wait_for_node(sio: &mut ServerAppIoClient<Channel>, run_id: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let nodes = sio.get_nodes(pb::GetNodesRequest { run_id }).await.unwrap().into_inner().nodes;
        if let Some(node) = nodes.first() {
            return node.node_id;
        }
        assert!(Instant::now() < deadline, "no node came online");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn push_instruction(sio: &mut ServerAppIoClient<Channel>, run_id: u64, dst: u64) -> String {
    let meta = Metadata {
        run_id,
        src_node_id: 1,
        dst_node_id: dst,
        group_id: "1".into(),
        ttl: 600.0,
        message_type: "train".into(),
        created_at: sepal_core::routing::now_secs(),
        ..Default::default()
    };
    let msg = Message::with_content(meta, RecordDict::new());
    let (tree, objects, id) = message_to_objects(&msg);
    let mut wire = msg.to_wire_pb();
    wire.metadata.as_mut().unwrap().message_id = id.clone();
    let req = pb::PushAppMessagesRequest {
        run_id,
        messages_list: vec![wire],
        message_object_trees: vec![tree],
        ..Default::default()
    };
    let res = sio.push_messages(req).await.unwrap().into_inner();
    for (object_id, content) in objects.into_iter().filter(|(id, _)| res.objects_to_push.contains(id)) {
        let node = Some(pb::Node { node_id: 1 });
        let req = pb::PushObjectRequest { node, run_id, object_id, object_content: content.to_vec() };
        assert!(sio.push_object(req).await.unwrap().into_inner().stored);
    }
    id
}

async fn pull_reply(sio: &mut ServerAppIoClient<Channel>, run_id: u64, id: &str) -> Message {
    let deadline = Instant::now() + WAIT;
    loop {
        let req = pb::PullAppMessagesRequest { run_id, message_ids: vec![id.into()], ..Default::default() };
        let res = sio.pull_messages(req).await.unwrap().into_inner();
        if let (Some(wire), Some(tree)) = (res.messages_list.first(), res.message_object_trees.first()) {
            let mut objects = HashMap::new();
            let mut stack = vec![tree];
            while let Some(t) = stack.pop() {
                let node = Some(pb::Node { node_id: 1 });
                let req = pb::PullObjectRequest { node, run_id, object_id: t.object_id.clone() };
                let mut obj = sio.pull_object(req.clone()).await.unwrap().into_inner();
                // The SuperNode pushes the reply before its objects: wait for them, as Flower does.
                while obj.object_found && !obj.object_available && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    obj = sio.pull_object(req.clone()).await.unwrap().into_inner();
                }
                assert!(obj.object_available, "reply object {} never arrived", t.object_id);
                objects.insert(t.object_id.clone(), Bytes::from(obj.object_content));
                stack.extend(t.children.iter());
            }
            return message_from_objects(wire, tree, &objects).unwrap();
        }
        assert!(Instant::now() < deadline, "no reply to {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
