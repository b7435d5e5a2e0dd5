//! SuperNode settings and Flower's config values.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use sepal_proto::pb;

use crate::retry::RetryPolicy;

pub use sepal_executor::Isolation;

/// How many messages a SuperNode handles at once by default: runs beside a slow one keep
/// their pace on a small machine, and memory stays a few sandbox instances.
pub const DEFAULT_MAX_CONCURRENT_MESSAGES: usize = 4;

/// How a SuperNode runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SuperLink's Fleet address (`host:port`).
    pub superlink: String,
    /// How the Fleet connection is secured (`--insecure` / `--root-certificates`).
    pub tls: sepal_wire::ClientTls,
    /// This node's config (`--node-config`), given to every ClientApp.
    pub node_config: HashMap<String, pb::Scalar>,
    /// Where ClientAppIo listens.
    pub clientappio: SocketAddr,
    /// Who runs ClientApps.
    pub isolation: Isolation,
    /// The `flwr-clientapp` executable for subprocess isolation.
    pub clientapp_bin: PathBuf,
    /// Passed on to `flwr-clientapp` as `--flwr-dir`.
    pub flwr_dir: Option<PathBuf>,
    /// When to give up reconnecting.
    pub retry: RetryPolicy,
    /// The longest a ClientApp may take on one message (it is also always stopped
    /// early enough for its error reply to arrive within the message's TTL).
    pub clientapp_timeout: Option<std::time::Duration>,
    /// Limits and grants for Wasm ClientApps (memory, time, captured output; a data
    /// directory, connections).
    pub wasm: sepal_executor::Settings,
    /// Most messages handled at once (one per run at a time, Python or Wasm).
    pub max_concurrent_messages: usize,
    /// Where to serve `/metrics` and `/healthz` over HTTP (`None`: nowhere).
    pub metrics_address: Option<SocketAddr>,
    /// In subprocess isolation, fork `flwr-clientapp` processes from a fork server that
    /// has imported Flower once, instead of spawning each (when the program is a Python
    /// console script; see `clientapps::forkserver`).
    pub clientapp_fork_server: bool,
}

impl Config {
    /// A SuperNode of the SuperLink at `superlink` (Fleet, `host:port`), secured as `tls`
    /// says, with Flower's defaults elsewhere: no node config, ClientAppIo on
    /// `0.0.0.0:9094`, subprocess isolation with `flwr-clientapp`, unlimited reconnection,
    /// no ClientApp timeout beyond the message's TTL, the sandbox's default limits and no
    /// grants for Wasm ClientApps, [`DEFAULT_MAX_CONCURRENT_MESSAGES`] at once, Python
    /// ClientApp processes forked from a fork server.
    pub fn new(superlink: impl Into<String>, tls: sepal_wire::ClientTls) -> Self {
        Config {
            superlink: superlink.into(),
            tls,
            node_config: HashMap::new(),
            clientappio: SocketAddr::from(([0, 0, 0, 0], 9094)),
            isolation: Isolation::Subprocess,
            clientapp_bin: "flwr-clientapp".into(),
            flwr_dir: None,
            retry: RetryPolicy::default(),
            clientapp_timeout: None,
            wasm: sepal_executor::Settings::default(),
            max_concurrent_messages: DEFAULT_MAX_CONCURRENT_MESSAGES,
            metrics_address: None,
            clientapp_fork_server: true,
        }
    }
}
