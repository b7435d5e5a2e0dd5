//! How a test describes the federation it wants: which implementation runs each
//! component, isolation, node count, extra flags, TLS.

use std::net::SocketAddr;

use anyhow::Result;

use super::{Federation, Impl, Isolation, TlsFiles};

/// Configures and starts a [`Federation`].
#[derive(Clone, Debug)]
pub struct FederationBuilder {
    pub(super) superlink: Impl,
    pub(super) supernode: Impl,
    pub(super) apps: Impl,
    pub(super) isolation: Isolation,
    pub(super) supernodes: usize,
    pub(super) superlink_args: Vec<String>,
    pub(super) supernode_args: Vec<String>,
    /// Extra arguments of one SuperNode only, `(i, arg)`.
    pub(super) supernode_args_at: Vec<(usize, String)>,
    /// More node config of one SuperNode, `(i, "key=value ...")`, after its partition.
    pub(super) node_config_at: Vec<(usize, String)>,
    /// Extra arguments of the external ServerApp / ClientApp processes (process isolation).
    pub(super) serverapp_args: Vec<String>,
    pub(super) clientapp_args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    /// Per-node overrides of `supernode` (mixed federations).
    pub(super) supernode_overrides: Vec<(usize, Impl)>,
    /// TLS on Fleet and Exec instead of `--insecure`.
    pub(super) tls: Option<TlsFiles>,
    /// `(what SuperNodes dial, where the SuperLink serves Fleet)`, for something of the
    /// caller's in between (e.g. a proxy).
    pub(super) fleet_via: Option<(SocketAddr, SocketAddr)>,
    /// Sepal's SuperLink and SuperNodes started as `flower-superlink` / `flower-supernode`
    /// (symlinks to the `sepal` binary), as a deployment script written for Flower runs them.
    pub(super) flower_names: bool,
    /// A SuperLink the federation does not start (e.g. replicas behind a load balancer):
    /// its Fleet, ServerAppIo and Exec addresses.
    pub(super) superlink_at: Option<SuperLinkAddrs>,
}

/// Where a SuperLink serves its three APIs.
#[derive(Clone, Copy, Debug)]
pub struct SuperLinkAddrs {
    /// Fleet API (SuperNodes).
    pub fleet: SocketAddr,
    /// ServerAppIo API (ServerApp processes).
    pub serverappio: SocketAddr,
    /// Exec API (the `flwr` CLI).
    pub exec: SocketAddr,
}

impl Default for FederationBuilder {
    fn default() -> Self {
        FederationBuilder {
            superlink: Impl::Python,
            supernode: Impl::Python,
            apps: Impl::Python,
            isolation: Isolation::Subprocess,
            supernodes: 2,
            superlink_args: Vec::new(),
            supernode_args: Vec::new(),
            supernode_args_at: Vec::new(),
            node_config_at: Vec::new(),
            serverapp_args: Vec::new(),
            clientapp_args: Vec::new(),
            env: Vec::new(),
            supernode_overrides: Vec::new(),
            tls: None,
            fleet_via: None,
            flower_names: false,
            superlink_at: None,
        }
    }
}

impl FederationBuilder {
    /// The SuperLink implementation (default Python).
    pub fn superlink(mut self, i: Impl) -> Self {
        self.superlink = i;
        self
    }
    /// The SuperNode implementation (default Python).
    pub fn supernode(mut self, i: Impl) -> Self {
        self.supernode = i;
        self
    }
    /// The implementation of SuperNode `i` only (for a mixed federation).
    pub fn supernode_at(mut self, i: usize, imp: Impl) -> Self {
        self.supernode_overrides.push((i, imp));
        self
    }
    /// The external ServerApp/ClientApp processes in process isolation (default Python).
    pub fn apps(mut self, i: Impl) -> Self {
        self.apps = i;
        self
    }
    /// `--isolation` for the SuperLink and every SuperNode (default subprocess).
    pub fn isolation(mut self, i: Isolation) -> Self {
        self.isolation = i;
        self
    }
    /// Number of SuperNodes (default 2); node `i` gets
    /// `--node-config "partition-id=i num-partitions=N"`.
    pub fn supernodes(mut self, n: usize) -> Self {
        self.supernodes = n;
        self
    }
    /// An extra SuperLink argument (e.g. `--database`, then a path).
    pub fn superlink_arg(mut self, a: impl Into<String>) -> Self {
        self.superlink_args.push(a.into());
        self
    }
    /// An extra argument for every SuperNode.
    pub fn supernode_arg(mut self, a: impl Into<String>) -> Self {
        self.supernode_args.push(a.into());
        self
    }
    /// More node config for SuperNode `i` (`key=value` pairs, as `--node-config` takes
    /// them), after its `partition-id` and `num-partitions`.
    pub fn node_config_at(mut self, i: usize, config: impl Into<String>) -> Self {
        self.node_config_at.push((i, config.into()));
        self
    }

    /// An extra argument for the external ServerApp process (process isolation).
    pub fn serverapp_arg(mut self, a: impl Into<String>) -> Self {
        self.serverapp_args.push(a.into());
        self
    }

    /// An extra argument for every external ClientApp process (process isolation).
    pub fn clientapp_arg(mut self, a: impl Into<String>) -> Self {
        self.clientapp_args.push(a.into());
        self
    }

    /// An extra argument for SuperNode `i` only (e.g. its own key), after the shared ones.
    pub fn supernode_arg_at(mut self, i: usize, a: impl Into<String>) -> Self {
        self.supernode_args_at.push((i, a.into()));
        self
    }
    /// TLS on Fleet and Exec: the SuperLink gets `--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile`
    /// and every SuperNode `--root-certificates` instead of `--insecure`, and
    /// [`Federation::flwr`] federations use `root-certificates`. ServerAppIo and ClientAppIo
    /// (and so the process-isolation apps) stay plaintext.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }
    /// Puts something of the caller's between the SuperNodes and the Fleet API: the
    /// SuperLink serves Fleet on `superlink` and SuperNodes dial `supernodes` (e.g. a
    /// proxy that forwards to `superlink`).
    pub fn fleet_via(mut self, supernodes: SocketAddr, superlink: SocketAddr) -> Self {
        self.fleet_via = Some((supernodes, superlink));
        self
    }
    /// Starts Sepal's SuperLink and SuperNodes under Flower's program names: the `sepal`
    /// binary symlinked as `<dir>/bin/flower-superlink` and `flower-supernode`, run with
    /// Flower's flags and no subcommand.
    pub fn flower_names(mut self) -> Self {
        self.flower_names = true;
        self
    }
    /// Uses a SuperLink that runs already (the federation starts none): SuperNodes,
    /// ServerApp processes and `flwr` connect to `addrs`.
    pub fn superlink_at(mut self, addrs: SuperLinkAddrs) -> Self {
        self.superlink_at = Some(addrs);
        self
    }
    /// An extra environment variable for every process of the federation.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Starts everything and waits until each component listens on its ports.
    pub fn start(self) -> Result<Federation> {
        Federation::launch(self)
    }
}
