//! A whole federation on loopback: one SuperLink, N SuperNodes and, in process isolation,
//! the external ServerApp and ClientApp processes; Python Flower's or Sepal's components.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tempfile::TempDir;

mod builder;

use crate::flwr::{Flwr, SuperLinkWatch};
use crate::procs::{stop_all, Proc, STOP_GRACE};
use crate::{free_addr, sepal_bin, venv, START_TIMEOUT};
pub use builder::{FederationBuilder, SuperLinkAddrs};

/// Whose implementation of a component runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// Flower 1.20.0 from the venv (`flower-superlink`, `flower-supernode`,
    /// `flwr-serverapp`, `flwr-clientapp`).
    Python,
    /// The `sepal` binary (`sepal superlink`, `sepal supernode`, `sepal serverapp`,
    /// `sepal clientapp`) with the same flags.
    Sepal,
}

/// Where app code runs (`--isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    /// The SuperLink/SuperNode spawn the ServerApp/ClientApp themselves.
    #[default]
    Subprocess,
    /// The federation starts one long-lived external ServerApp process and one ClientApp
    /// process per SuperNode.
    Process,
}

impl Isolation {
    /// The `--isolation` flag value.
    pub fn as_flag(self) -> &'static str {
        match self {
            Isolation::Subprocess => "subprocess",
            Isolation::Process => "process",
        }
    }
}

/// PEM files for a TLS federation: the CA that signed the SuperLink's certificate, and the
/// SuperLink's certificate and key (the certificate must name 127.0.0.1 in an `IP:` SAN);
/// [`crate::kit::make_certs`] makes them.
pub use sepal_wire::ServerTls as TlsFiles;

/// A running federation. Dropping it stops every process it started (and their children)
/// and prints the tail of each process log.
pub struct Federation {
    spec: FederationBuilder,
    dir: PathBuf,
    /// Deletes `dir` after the processes are stopped (None with `SEPAL_TEST_KEEP=1`).
    _tmp: Option<TempDir>,
    serverappio: SocketAddr,
    fleet: SocketAddr,
    exec: SocketAddr,
    clientappio: Vec<SocketAddr>,
    superlink: Option<Proc>,
    /// The SuperLink's pid (0 while it is not running), shared with [`Flwr`] waits.
    superlink_pid: Arc<AtomicU32>,
    supernodes: Vec<Proc>,
    apps: Vec<Proc>,
}

impl Federation {
    /// Starts everything `spec` describes and waits until each component listens on its
    /// ports.
    fn launch(spec: FederationBuilder) -> Result<Federation> {
        let tmp =
            tempfile::Builder::new().prefix("sepal-fed-").tempdir().context("creating the federation's temp dir")?;
        let dir = tmp.path().to_path_buf();
        let tmp = if keep_files() {
            eprintln!("SEPAL_TEST_KEEP: federation files are kept in {}", dir.display());
            drop(tmp.keep());
            None
        } else {
            Some(tmp)
        };
        let n = spec.supernodes;
        let given = spec.superlink_at;
        let mut fed = Federation {
            serverappio: given.map_or_else(free_addr, |a| a.serverappio),
            fleet: given.map(|a| a.fleet).or(spec.fleet_via.map(|(_, superlink)| superlink)).unwrap_or_else(free_addr),
            exec: given.map_or_else(free_addr, |a| a.exec),
            clientappio: (0..n).map(|_| free_addr()).collect(),
            spec,
            dir,
            _tmp: tmp,
            superlink: None,
            superlink_pid: Arc::new(AtomicU32::new(0)),
            supernodes: Vec::new(),
            apps: Vec::new(),
        };
        if given.is_none() {
            fed.start_superlink()?;
        }
        for i in 0..n {
            fed.start_supernode(i)?;
        }
        if fed.spec.isolation == Isolation::Process {
            fed.start_serverapp()?;
            for i in 0..n {
                fed.start_clientapp(i)?;
            }
        }
        Ok(fed)
    }

    /// A builder (Python components, 2 SuperNodes, subprocess isolation by default).
    pub fn builder() -> FederationBuilder {
        FederationBuilder::default()
    }

    /// Python SuperLink + `nodes` Python SuperNodes (+ Python apps in process isolation).
    pub fn python(nodes: usize, isolation: Isolation) -> Result<Federation> {
        Self::builder().supernodes(nodes).isolation(isolation).start()
    }

    /// `sepal superlink` + `nodes` Python SuperNodes (+ Python apps in process isolation).
    pub fn sepal(nodes: usize, isolation: Isolation) -> Result<Federation> {
        Self::builder().superlink(Impl::Sepal).supernodes(nodes).isolation(isolation).start()
    }

    /// The federation's temp dir (logs in `logs/`, FLWR_HOMEs in `home/`, apps in `apps/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Where the process logs are.
    pub fn log_dir(&self) -> PathBuf {
        self.dir().join("logs")
    }
    /// SuperLink ServerAppIo API address.
    pub fn serverappio_addr(&self) -> SocketAddr {
        self.serverappio
    }
    /// SuperLink Fleet API address.
    pub fn fleet_addr(&self) -> SocketAddr {
        self.fleet
    }
    /// SuperLink Exec API address (what `flwr` talks to).
    pub fn exec_addr(&self) -> SocketAddr {
        self.exec
    }
    /// ClientAppIo address of SuperNode `i`.
    pub fn clientappio_addr(&self, i: usize) -> SocketAddr {
        self.clientappio[i]
    }
    /// Number of SuperNodes.
    pub fn num_supernodes(&self) -> usize {
        self.clientappio.len()
    }
    /// The TLS files, in a TLS federation.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.spec.tls.as_ref()
    }
    /// The isolation mode.
    pub fn isolation(&self) -> Isolation {
        self.spec.isolation
    }

    /// The SuperLink process (None only while restarting).
    pub fn superlink_proc(&mut self) -> Option<&mut Proc> {
        self.superlink.as_mut()
    }
    /// The SuperNode processes, by partition id.
    pub fn supernode_procs(&mut self) -> &mut [Proc] {
        &mut self.supernodes
    }
    /// External app processes (process isolation): `serverapp`, `clientapp-<i>`.
    pub fn app_procs(&mut self) -> &mut [Proc] {
        &mut self.apps
    }

    /// Every process's log, `(name, full text)`.
    pub fn logs(&self) -> Vec<(String, String)> {
        self.procs().map(|p| (p.name().to_string(), p.log())).collect()
    }

    /// The last `lines` lines of every process log, with headers.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut s = String::new();
        for p in self.procs() {
            s.push_str(&format!(
                "----- {} (pid {}, {}) last {lines} lines -----\n{}\n",
                p.name(),
                p.pid(),
                p.log_path().display(),
                crate::flwr::strip_ansi(&p.log_tail(lines))
            ));
        }
        s
    }

    /// Stops the SuperLink and starts it again with the same ports and arguments (e.g. to
    /// test recovery from `--database`).
    pub fn restart_superlink(&mut self) -> Result<()> {
        if let Some(mut p) = self.superlink.take() {
            self.superlink_pid.store(0, Ordering::SeqCst);
            p.stop(STOP_GRACE);
            self.archive_log(&p);
        }
        self.start_superlink()
    }

    /// Stops SuperNode `i` (SIGTERM, then SIGKILL after the grace period) and starts it again
    /// with the same ports, node config and arguments; it registers as a new node.
    pub fn restart_supernode(&mut self, i: usize) -> Result<()> {
        let mut old = self.supernodes.remove(i);
        old.stop(STOP_GRACE);
        self.archive_log(&old);
        drop(old);
        let p = self.spawn_supernode(i)?;
        self.supernodes.insert(i, p);
        self.supernodes[i].wait_for_port(self.clientappio[i], START_TIMEOUT)
    }

    /// Starts the external ServerApp process again (process isolation), e.g. after a test
    /// killed it; the old one is stopped first if it still runs.
    pub fn restart_serverapp(&mut self) -> Result<()> {
        if let Some(i) = self.apps.iter().position(|p| p.name() == "serverapp") {
            let mut old = self.apps.remove(i);
            old.stop(STOP_GRACE);
            self.archive_log(&old);
        }
        self.start_serverapp()
    }

    /// Renames a stopped process's log `<name>.log` to the first free `<name>.<n>.log`, so
    /// that its restart writes a fresh `<name>.log`.
    fn archive_log(&self, stopped: &Proc) {
        let name = stopped.name();
        let n = (1..).find(|k| !self.log_dir().join(format!("{name}.{k}.log")).exists()).unwrap_or(0);
        let _ = std::fs::rename(stopped.log_path(), self.log_dir().join(format!("{name}.{n}.log")));
    }

    /// A `flwr` CLI bound to a fresh copy of `examples/<example>` whose `pyproject.toml`
    /// gained the federation `sepal-test` pointing at this SuperLink's Exec API (with
    /// `root-certificates` in a TLS federation, else `insecure = true`).
    pub fn flwr(&self, example: &str) -> Result<Flwr> {
        self.flwr_app(&crate::example_dir(example))
    }

    /// [`Federation::flwr`] for any app directory `src` (copied, federation added).
    pub fn flwr_app(&self, src: &Path) -> Result<Flwr> {
        let dest = self.dir().join("apps");
        let ca = self.spec.tls.as_ref().map(|t| t.ca.as_path());
        let flwr = Flwr::for_app_with_ca(src, &dest, self.exec, self.env_for("flwr-cli"), ca)?;
        Ok(flwr
            .with_watch(SuperLinkWatch { pid: self.superlink_pid.clone(), log: self.log_dir().join("superlink.log") }))
    }

    /// The environment every process gets: PATH with the venv's bin first (so spawned
    /// flwr-serverapp / flwr-clientapp are found), telemetry off, its own FLWR_HOME,
    /// unbuffered Python output, plus the builder's extra variables.
    pub fn env_for(&self, name: &str) -> Vec<(OsString, OsString)> {
        let home = self.dir().join("home").join(name);
        let _ = std::fs::create_dir_all(&home);
        let mut path = OsString::from(venv().join("bin"));
        if let Some(p) = std::env::var_os("PATH") {
            path.push(":");
            path.push(p);
        }
        let mut env = vec![
            ("PATH".into(), path),
            ("FLWR_TELEMETRY_ENABLED".into(), "0".into()),
            ("FLWR_HOME".into(), home.into_os_string()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ];
        for (k, v) in &self.spec.env {
            env.push((k.into(), v.into()));
        }
        env
    }

    fn command(&self, which: Impl, python_program: &str, sepal_sub: &str, name: &str) -> Result<Command> {
        let flower_named = self.spec.flower_names && python_program.starts_with("flower-");
        let mut cmd = match which {
            Impl::Python => Command::new(venv().join("bin").join(python_program)),
            Impl::Sepal if flower_named => Command::new(self.sepal_as(python_program)?),
            Impl::Sepal => {
                let mut c = Command::new(sepal_bin());
                c.arg(sepal_sub);
                c
            }
        };
        cmd.envs(self.env_for(name)).current_dir(self.dir());
        Ok(cmd)
    }

    /// `<dir>/bin/<program>`, a symlink to the `sepal` binary (made on first use).
    fn sepal_as(&self, program: &str) -> Result<PathBuf> {
        let bin = self.dir().join("bin");
        let link = bin.join(program);
        if !link.exists() {
            std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
            std::os::unix::fs::symlink(sepal_bin(), &link)
                .with_context(|| format!("linking {} to the sepal binary", link.display()))?;
        }
        Ok(link)
    }

    fn spawn(&self, name: &str, cmd: Command) -> Result<Proc> {
        Proc::spawn(name, cmd, &self.log_dir())
    }

    fn start_superlink(&mut self) -> Result<()> {
        let mut cmd = self.command(self.spec.superlink, "flower-superlink", "superlink", "superlink")?;
        match &self.spec.tls {
            Some(t) => cmd
                .arg("--ssl-ca-certfile")
                .arg(&t.ca)
                .arg("--ssl-certfile")
                .arg(&t.cert)
                .arg("--ssl-keyfile")
                .arg(&t.key),
            None => cmd.arg("--insecure"),
        };
        cmd.arg("--serverappio-api-address")
            .arg(self.serverappio.to_string())
            .arg("--fleet-api-address")
            .arg(self.fleet.to_string())
            .arg("--exec-api-address")
            .arg(self.exec.to_string());
        if self.spec.isolation == Isolation::Process {
            cmd.args(["--isolation", "process"]);
        }
        cmd.args(&self.spec.superlink_args);
        let mut p = self.spawn("superlink", cmd)?;
        self.superlink_pid.store(p.pid(), Ordering::SeqCst);
        let res =
            [self.serverappio, self.fleet, self.exec].into_iter().try_for_each(|a| p.wait_for_port(a, START_TIMEOUT));
        self.superlink = Some(p);
        res
    }

    fn start_supernode(&mut self, i: usize) -> Result<()> {
        let mut p = self.spawn_supernode(i)?;
        let res = p.wait_for_port(self.clientappio[i], START_TIMEOUT);
        self.supernodes.push(p);
        res
    }

    fn spawn_supernode(&self, i: usize) -> Result<Proc> {
        let name = format!("supernode-{i}");
        let imp =
            self.spec.supernode_overrides.iter().rev().find(|(at, _)| *at == i).map_or(self.spec.supernode, |o| o.1);
        let mut cmd = self.command(imp, "flower-supernode", "supernode", &name)?;
        match &self.spec.tls {
            Some(t) => cmd.arg("--root-certificates").arg(&t.ca),
            None => cmd.arg("--insecure"),
        };
        let fleet = self.spec.fleet_via.map_or(self.fleet, |(supernodes, _)| supernodes);
        cmd.arg("--superlink")
            .arg(fleet.to_string())
            .arg("--clientappio-api-address")
            .arg(self.clientappio[i].to_string())
            .arg("--node-config")
            .arg(self.node_config(i));
        if self.spec.isolation == Isolation::Process {
            cmd.args(["--isolation", "process"]);
        }
        cmd.args(&self.spec.supernode_args);
        cmd.args(self.spec.supernode_args_at.iter().filter(|(at, _)| *at == i).map(|(_, a)| a));
        self.spawn(&name, cmd)
    }

    /// SuperNode `i`'s `--node-config`: its partition, then what the test added.
    fn node_config(&self, i: usize) -> String {
        let mut config = format!("partition-id={i} num-partitions={}", self.spec.supernodes);
        for (_, extra) in self.spec.node_config_at.iter().filter(|(at, _)| *at == i) {
            config.push(' ');
            config.push_str(extra);
        }
        config
    }

    fn start_serverapp(&mut self) -> Result<()> {
        let mut cmd = self.command(self.spec.apps, "flwr-serverapp", "serverapp", "serverapp")?;
        cmd.arg("--insecure").arg("--serverappio-api-address").arg(self.serverappio.to_string());
        cmd.args(&self.spec.serverapp_args);
        let p = self.spawn("serverapp", cmd)?;
        self.apps.push(p);
        Ok(())
    }

    fn start_clientapp(&mut self, i: usize) -> Result<()> {
        let name = format!("clientapp-{i}");
        let mut cmd = self.command(self.spec.apps, "flwr-clientapp", "clientapp", &name)?;
        cmd.arg("--insecure").arg("--clientappio-api-address").arg(self.clientappio[i].to_string());
        cmd.args(&self.spec.clientapp_args);
        let p = self.spawn(&name, cmd)?;
        self.apps.push(p);
        Ok(())
    }

    fn procs(&self) -> impl Iterator<Item = &Proc> {
        self.superlink.iter().chain(self.supernodes.iter()).chain(self.apps.iter())
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        // Stop the apps and nodes before the SuperLink, all within one grace period.
        let mut all: Vec<Proc> = std::mem::take(&mut self.apps);
        all.append(&mut self.supernodes);
        all.extend(self.superlink.take());
        stop_all(&mut all, STOP_GRACE);
        let mut s = format!("===== federation in {} =====\n", self.dir().display());
        for p in &all {
            s.push_str(&format!(
                "----- {} (pid {}) last 30 lines -----\n{}\n",
                p.name(),
                p.pid(),
                crate::flwr::strip_ansi(&p.log_tail(30))
            ));
        }
        eprintln!("{s}");
    }
}

fn keep_files() -> bool {
    std::env::var_os("SEPAL_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}
