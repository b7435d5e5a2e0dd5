//! The in-process test kit: a SuperLink ([`TestLink`]) and SuperNodes ([`TestNode`]) that
//! start in the test's own tokio runtime on free loopback ports and stop when dropped, and
//! the FABs tests submit ([`fab`]), TLS certificates ([`make_certs`]) and SuperNode keys
//! ([`ssh_keygen`]). Tests talk to them over real gRPC, as Flower's
//! components would.
//!
//! ```no_run
//! # async fn demo() {
//! use sepal_tests::kit::{self, TestLink, TestNode};
//! let link = TestLink::start().await; // process isolation: it runs no app itself
//! let _node = TestNode::start(TestNode::config(&link)).await;
//! let run_id = link.start_run(kit::fab(&kit::PyProject::new("probe"))).await;
//! # }
//! ```

mod certs;
mod fab;
mod keys;
mod link;
mod node;
mod serverapp;

use std::net::SocketAddr;

pub use certs::{make_certs, stranger_ca_pem, TestCerts};
pub use fab::{fab, fab_from_dir};
pub use keys::{allow_list, ssh_keygen};
pub use link::{SignedFleet, TestLink};
pub use node::TestNode;
pub use sepal_fab::testing::PyProject;
pub use serverapp::PlayedServerApp;
use tonic::transport::Channel;

/// A plaintext channel to `addr`, connected now.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a socket address makes a valid URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// `127.0.0.1:0`: any free loopback port, chosen by the OS at bind time.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
