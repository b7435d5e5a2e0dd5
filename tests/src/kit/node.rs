//! [`TestNode`]: a SuperNode in the test's runtime.

use std::net::SocketAddr;

use sepal_supernode::{Config, Isolation};
use sepal_wire::ClientTls;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{any_port, TestLink};

/// A SuperNode connected to a SuperLink, with ClientAppIo on a free loopback port, in the
/// runtime of the test that started it. Dropping it stops it.
pub struct TestNode {
    /// Where ClientAppIo listens.
    pub clientappio: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sepal_supernode::Error>>>,
}

impl TestNode {
    /// The usual test settings: `link`'s Fleet, plaintext, process isolation (an external
    /// ClientApp, the test or `sepal clientapp`, serves its instructions).
    pub fn config(link: &TestLink) -> Config {
        Config { isolation: Isolation::Process, ..Config::new(link.fleet.to_string(), ClientTls::Insecure) }
    }

    /// The same as [`TestNode::config`], with node config `partition-id=<partition>
    /// num-partitions=<of>`.
    pub fn partition(link: &TestLink, partition: usize, of: usize) -> Config {
        let text = format!("partition-id={partition} num-partitions={of}");
        let node_config = sepal_fab::parse_config_overrides(&text).expect("a valid node config");
        Config { node_config: sepal_fab::to_scalars(&node_config), ..Self::config(link) }
    }

    /// Starts a SuperNode with `config` (its `clientappio` is replaced by a free port).
    pub async fn start(config: Config) -> TestNode {
        let listener = TcpListener::bind(any_port()).await.expect("binding ClientAppIo on loopback");
        let clientappio = listener.local_addr().expect("a bound listener has an address");
        let config = Config { clientappio, ..config };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sepal_supernode::serve(config, listener, async {
            let _ = stopped.await;
        }));
        TestNode { clientappio, stop: Some(stop), task: Some(task) }
    }

    /// Stops the SuperNode (it unregisters) and waits until it has; what it returned.
    pub async fn stop(mut self) -> Result<(), sepal_supernode::Error> {
        let _ = self.stop.take().map(|stop| stop.send(()));
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| panic!("the SuperNode task failed: {e}")),
            None => Ok(()),
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
