//! [`TestLink`]: a SuperLink in the test's runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sepal_proto::pb;
use sepal_proto::pb::exec_client::ExecClient;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_proto::pb::server_app_io_client::ServerAppIoClient;
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::state::LinkState;
use sepal_superlink::{Config, Isolation, Listeners, ServeError};
use sepal_wire::auth::Signer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{any_port, channel};

/// A Fleet client that signs like a Flower SuperNode.
pub type SignedFleet = FleetClient<InterceptedService<Channel, Signer>>;

/// A SuperLink serving ServerAppIo, Fleet and Exec on loopback, in the runtime of the test
/// that started it. Dropping it stops it.
pub struct TestLink {
    /// Where ServerAppIo listens.
    pub serverappio: SocketAddr,
    /// Where Fleet listens.
    pub fleet: SocketAddr,
    /// Where Exec listens.
    pub exec: SocketAddr,
    /// The link state it serves (shared: tests may look inside).
    pub state: Arc<dyn LinkState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestLink {
    /// A SuperLink in process isolation (it runs no ServerApp itself) with in-memory state.
    pub async fn start() -> TestLink {
        Self::with(Config::new(Isolation::Process)).await
    }

    /// A SuperLink with `config` and in-memory state.
    pub async fn with(config: Config) -> TestLink {
        Self::serve(config, Arc::new(MemoryState::new()), [any_port(); 3]).await
    }

    /// A SuperLink with `config` and `state`, on `addrs` (ServerAppIo, Fleet, Exec; port 0
    /// for any), e.g. the addresses of a SuperLink that was stopped, to restart it.
    pub async fn serve(config: Config, state: Arc<dyn LinkState>, addrs: [SocketAddr; 3]) -> TestLink {
        let listeners = Listeners::bind(addrs[0], addrs[1], addrs[2])
            .await
            .unwrap_or_else(|e| panic!("binding a SuperLink's listeners on {addrs:?}: {e}"));
        let local = |l: &tokio::net::TcpListener| l.local_addr().expect("a bound listener has an address");
        let (serverappio, fleet, exec) =
            (local(&listeners.serverappio), local(&listeners.fleet), local(&listeners.exec));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sepal_superlink::serve(config, listeners, state.clone(), async {
            let _ = stopped.await;
        }));
        TestLink { serverappio, fleet, exec, state, stop: Some(stop), task: Some(task) }
    }

    /// The three addresses, as [`TestLink::serve`] takes them.
    pub fn addrs(&self) -> [SocketAddr; 3] {
        [self.serverappio, self.fleet, self.exec]
    }

    /// Stops serving and waits until it has; what `serve` returned.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        let _ = self.stop.take().map(|stop| stop.send(()));
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| panic!("the SuperLink task failed: {e}")),
            None => Ok(()),
        }
    }

    /// An Exec client (plaintext).
    pub async fn exec_client(&self) -> ExecClient<Channel> {
        ExecClient::new(channel(self.exec).await)
    }

    /// A ServerAppIo client.
    pub async fn serverappio_client(&self) -> ServerAppIoClient<Channel> {
        ServerAppIoClient::new(channel(self.serverappio).await)
    }

    /// A Fleet client that signs every request with `signer`, as a Flower SuperNode does.
    pub async fn fleet_client(&self, signer: Signer) -> SignedFleet {
        FleetClient::with_interceptor(channel(self.fleet).await, signer)
    }

    /// A node registered as a Flower SuperNode registers (a fresh key, CreateNode): its
    /// signed Fleet client and its id.
    pub async fn register_node(&self) -> (SignedFleet, u64) {
        let mut fleet = self.fleet_client(Signer::fresh()).await;
        let created = fleet.create_node(pb::CreateNodeRequest { heartbeat_interval: 30.0 }).await;
        let node = created.unwrap_or_else(|e| panic!("CreateNode: {e}")).into_inner().node;
        (fleet, node.expect("CreateNode answers with the node").node_id)
    }

    /// Submits `fab` over Exec; the run id.
    pub async fn start_run(&self, fab: pb::Fab) -> u64 {
        let req = pb::StartRunRequest { fab: Some(fab), ..Default::default() };
        let res = self.exec_client().await.start_run(req).await.unwrap_or_else(|e| panic!("StartRun: {e}"));
        res.into_inner().run_id.expect("StartRun answered with a run id")
    }

    /// Waits until the run's status is `status` (`pending`, `starting`, `running` or
    /// `finished`); the whole status. Panics after `timeout`.
    pub async fn wait_for_status(&self, run_id: u64, status: &str, timeout: Duration) -> pb::RunStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.run_status(run_id).await;
            if current.status == status {
                return current;
            }
            assert!(Instant::now() < deadline, "run {run_id} is still {current:?} after {timeout:?}, not {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The run's whole log, as `flwr log` shows it (Exec StreamLogs, which ends once the
    /// run is finished). Panics if it does not end within `timeout`.
    pub async fn run_log(&self, run_id: u64, timeout: Duration) -> String {
        let req = pb::StreamLogsRequest { run_id, after_timestamp: 0.0 };
        let mut stream = self.exec_client().await.stream_logs(req).await.expect("StreamLogs").into_inner();
        let mut log = String::new();
        let follow = async {
            while let Some(part) = stream.message().await.expect("a log stream frame") {
                log.push_str(&part.log_output);
            }
        };
        tokio::time::timeout(timeout, follow).await.unwrap_or_else(|_| panic!("run {run_id}'s log did not end"));
        log
    }

    /// The run's status, as Exec's ListRuns has it.
    pub async fn run_status(&self, run_id: u64) -> pb::RunStatus {
        let res = self.exec_client().await.list_runs(pb::ListRunsRequest { run_id: Some(run_id) }).await;
        let mut runs = res.unwrap_or_else(|e| panic!("ListRuns: {e}")).into_inner().run_dict;
        runs.remove(&run_id).and_then(|r| r.status).unwrap_or_default()
    }
}

impl Drop for TestLink {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
