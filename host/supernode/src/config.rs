//! SuperNode settings and Flower's config values.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use sepal_proto::pb;

use crate::retry::RetryPolicy;

/// Who runs ClientApps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The SuperNode starts a ClientApp process per message.
    Subprocess,
    /// An external ClientApp process connects over ClientAppIo.
    Process,
}

/// How a SuperNode runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SuperLink's Fleet address (`host:port`).
    pub superlink: String,
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
    /// Limits for Wasm ClientApps (memory, time, captured output).
    pub wasm_limits: sepal_sandbox::Limits,
    /// What Wasm ClientApps may use beyond nothing (data directory, connections).
    pub wasm_grants: sepal_sandbox::Grants,
}
