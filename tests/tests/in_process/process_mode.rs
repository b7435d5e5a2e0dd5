//! Wasm apps under process isolation, end to end in one test process: a Sepal SuperLink
//! and two SuperNodes in process isolation (they run no app code), `serverapp::run` and
//! one `clientapp::run` per SuperNode, the quickstart FAB submitted over Exec.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sepal_appio::{clientapp, serverapp};
use sepal_core::records::RecordDict;
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_client::ClientAppIoClient;
use sepal_tests::kit::{self, channel, PlayedServerApp, PyProject, TestLink, TestNode};
use tokio::sync::watch;

/// How long any one wait of these tests may take.
const WAIT: Duration = Duration::from_secs(180);

/// The quickstart FAB (its components built once per test run by `sepal-guests`).
fn quickstart_fab() -> pb::Fab {
    kit::fab_from_dir(&sepal_guests::app_dir("quickstart"))
}

/// A FAB whose ServerApp and ClientApp are Python.
fn python_fab() -> pb::Fab {
    kit::fab(&PyProject::new("pyapp"))
}

/// A SuperLink and SuperNodes in process isolation, and the app processes started for
/// them; all stopped when dropped.
struct Federation {
    link: TestLink,
    nodes: Vec<TestNode>,
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
        let link = TestLink::start().await;
        let mut started = Vec::new();
        for partition in 0..nodes {
            started.push(TestNode::start(TestNode::partition(&link, partition, nodes)).await);
        }
        let (stop, _) = watch::channel(false);
        Federation { link, nodes: started, stop }
    }

    fn clientappio(&self, i: usize) -> SocketAddr {
        self.nodes[i].clientappio
    }

    /// Starts `sepal serverapp` (looping) against the SuperLink.
    fn serverapp(&self) -> tokio::task::JoinHandle<Result<(), sepal_appio::Error>> {
        let (address, shutdown) = (self.link.serverappio.to_string(), stopped(&self.stop));
        tokio::spawn(async move { serverapp::run(&address, serverapp::Options::default(), shutdown).await })
    }

    /// Starts one `sepal clientapp` (looping) per SuperNode.
    fn clientapps(&self) {
        for node in &self.nodes {
            let (address, shutdown) = (node.clientappio.to_string(), stopped(&self.stop));
            tokio::spawn(async move { clientapp::run(&address, clientapp::Options::default(), shutdown).await });
        }
    }

    async fn start_run(&self, fab: pb::Fab) -> u64 {
        self.link.start_run(fab).await
    }

    async fn status(&self, run_id: u64) -> pb::RunStatus {
        self.link.run_status(run_id).await
    }

    async fn wait_for(&self, run_id: u64, status: &str) -> pb::RunStatus {
        self.link.wait_for_status(run_id, status, WAIT).await
    }

    /// The run's whole log (the run must be finished: the stream then ends).
    async fn log(&self, run_id: u64) -> String {
        self.link.run_log(run_id, WAIT).await
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
    let fab = quickstart_fab();
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
    let fab = quickstart_fab();
    let fed = Federation::start(2).await;
    let serverapp = fed.serverapp();
    // No ClientApps yet: the first round's instructions wait at the SuperNodes.
    let run_id = fed.start_run(fab.clone()).await;
    fed.wait_for(run_id, "running").await;
    wait_for_pending_instruction(fed.clientappio(0)).await;
    let stop = fed.link.exec_client().await.stop_run(pb::StopRunRequest { run_id }).await.unwrap().into_inner();
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
    bounded(serverapp::run(&fed.link.serverappio.to_string(), options, std::future::pending())).await.unwrap();
    let status = fed.status(run_id).await;
    assert_eq!((status.status.as_str(), status.sub_status.as_str()), ("finished", "failed"));
    assert!(status.details.contains("this FAB's ServerApp is Python (`pyapp.server:app`)"), "{status:?}");
}

/// The test plays the ServerApp of a Python FAB; `sepal clientapp` answers its
/// instruction with Flower's "cannot load the ClientApp" error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_clientapp_gets_an_error_reply() {
    let fed = Federation::start(1).await;
    let mut server = PlayedServerApp::start(&fed.link, python_fab(), Default::default()).await;
    let node_id = server.wait_for_nodes(1).await[0];
    let id = server.send(node_id, RecordDict::new(), 600.0).await;

    let options = clientapp::Options { run_once: true, ..Default::default() };
    bounded(clientapp::run(&fed.clientappio(0).to_string(), options, std::future::pending())).await.unwrap();

    let reply = server.receive(&id).await;
    let error = reply.error.expect("an error reply");
    assert_eq!(error.code, sepal_core::Error::LOAD_CLIENT_APP_EXCEPTION);
    assert!(
        error.reason.contains("ClientApp is Python") && error.reason.contains("flwr-clientapp"),
        "{}",
        error.reason
    );
    assert_eq!((reply.metadata.src_node_id, reply.metadata.reply_to_message_id.as_str()), (node_id, id.as_str()));
}
