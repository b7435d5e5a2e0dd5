//! SuperLink replicas for one test: a real PostgreSQL, `n` `sepal superlink` processes on
//! one database, and a real HAProxy in TCP mode in front of their Fleet, ServerAppIo and
//! Exec APIs, checking each replica's `/healthz`. A [`crate::Federation`] built with
//! `superlink_at(replicas.balancer())` puts SuperNodes, ServerApps and `flwr` behind it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::postgres::Postgres;
use crate::procs::{Proc, STOP_GRACE};
use crate::{free_addr, sepal_bin, venv, Isolation, SuperLinkAddrs, START_TIMEOUT};

/// How often HAProxy checks a replica's health, and after how many failures it is out.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// One replica: its process and where it listens.
#[derive(Debug)]
struct Replica {
    proc: Option<Proc>,
    apis: SuperLinkAddrs,
    metrics: SocketAddr,
}

/// Replicas on one PostgreSQL database behind HAProxy; dropped, everything stops.
#[derive(Debug)]
pub struct Replicas {
    replicas: Vec<Replica>,
    haproxy: Proc,
    balancer: SuperLinkAddrs,
    log_dir: PathBuf,
    // Dropped last: the database outlives the replicas using it.
    pg: Postgres,
}

impl Replicas {
    /// Starts PostgreSQL, `n` replicas (each with `args` besides its addresses) and
    /// HAProxy, logging into `log_dir`, and waits until the balancer listens.
    pub fn start(n: usize, isolation: Isolation, args: &[&str], log_dir: &Path) -> Result<Replicas> {
        let pg = Postgres::start(log_dir)?;
        pg.create_database("link")?;
        let balancer = SuperLinkAddrs { fleet: free_addr(), serverappio: free_addr(), exec: free_addr() };
        let mut replicas = Vec::new();
        for i in 0..n {
            let apis = SuperLinkAddrs { fleet: free_addr(), serverappio: free_addr(), exec: free_addr() };
            let mut replica = Replica { proc: None, apis, metrics: free_addr() };
            replica.proc = Some(spawn_replica(i, &replica, &pg.url("link"), isolation, args, log_dir)?);
            replicas.push(replica);
        }
        for r in &mut replicas {
            let apis = r.apis;
            let proc = r.proc.as_mut().expect("just started");
            for addr in [apis.fleet, apis.serverappio, apis.exec, r.metrics] {
                proc.wait_for_port(addr, START_TIMEOUT)?;
            }
        }
        let config = log_dir.join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(&balancer, &replicas)).context("writing haproxy.cfg")?;
        let mut cmd = Command::new(haproxy_bin());
        cmd.arg("-db").arg("-f").arg(&config);
        let mut haproxy = Proc::spawn("haproxy", cmd, log_dir)?;
        for addr in [balancer.fleet, balancer.serverappio, balancer.exec] {
            haproxy.wait_for_port(addr, START_TIMEOUT).context("waiting for HAProxy")?;
        }
        Ok(Replicas { replicas, haproxy, balancer, log_dir: log_dir.to_path_buf(), pg })
    }

    /// The balancer's addresses (what SuperNodes, ServerApps and `flwr` dial).
    pub fn balancer(&self) -> SuperLinkAddrs {
        self.balancer
    }

    /// Replica `i`'s own addresses.
    pub fn replica(&self, i: usize) -> SuperLinkAddrs {
        self.replicas[i].apis
    }

    /// Replica `i`'s `--metrics-address`.
    pub fn metrics_addr(&self, i: usize) -> SocketAddr {
        self.replicas[i].metrics
    }

    /// The pids of the replicas still running.
    pub fn replica_pids(&self) -> Vec<u32> {
        self.replicas.iter().filter_map(|r| r.proc.as_ref()).map(Proc::pid).collect()
    }

    /// HAProxy's pid.
    pub fn haproxy_pid(&self) -> u32 {
        self.haproxy.pid()
    }

    /// How many calls replica `i` served on a gRPC service so far (e.g.
    /// `flwr.proto.ServerAppIo`), from its metrics.
    pub fn calls_served(&self, i: usize, service: &str) -> Result<f64> {
        let (_, text) = crate::scrape::http_get(self.replicas[i].metrics, "/metrics")?;
        Ok(crate::scrape::sum_samples(&text, &format!("sepal_grpc_calls_total{{service=\"{service}\"")))
    }

    /// Replica `i`'s log so far ("" once killed and gone).
    pub fn log(&self, i: usize) -> String {
        self.replicas[i].proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Kills replica `i` with SIGKILL (a crash: nothing is flushed or said goodbye to).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.replicas[i].proc.take() {
            p.signal_group(crate::Signal::KILL);
            p.stop(STOP_GRACE);
        }
    }

    /// The database the replicas share.
    pub fn postgres(&self) -> &Postgres {
        &self.pg
    }

    /// The last `lines` lines of every replica's and HAProxy's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let procs = self.replicas.iter().filter_map(|r| r.proc.as_ref()).chain([&self.haproxy]);
        let mut s = format!("(logs in {})\n", self.log_dir.display());
        for p in procs {
            s.push_str(&format!("----- {} last {lines} lines -----\n{}\n", p.name(), p.log_tail(lines)));
        }
        s
    }
}

fn spawn_replica(
    i: usize,
    r: &Replica,
    database: &str,
    isolation: Isolation,
    args: &[&str],
    log_dir: &Path,
) -> Result<Proc> {
    let mut cmd = Command::new(sepal_bin());
    let mut path = std::ffi::OsString::from(venv().join("bin"));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    cmd.env("PATH", path).env("FLWR_TELEMETRY_ENABLED", "0");
    cmd.args(["superlink", "--insecure", "--database", database, "--isolation", isolation.as_flag()]);
    cmd.arg("--fleet-api-address").arg(r.apis.fleet.to_string());
    cmd.arg("--serverappio-api-address").arg(r.apis.serverappio.to_string());
    cmd.arg("--exec-api-address").arg(r.apis.exec.to_string());
    cmd.arg("--metrics-address").arg(r.metrics.to_string());
    cmd.args(args);
    Proc::spawn(&format!("superlink-{i}"), cmd, log_dir)
}

/// TCP mode (gRPC is HTTP/2 end to end; a connection sticks to one replica until it
/// breaks), each replica checked on its `/healthz` and out after two failed checks.
fn haproxy_config(balancer: &SuperLinkAddrs, replicas: &[Replica]) -> String {
    let inter = CHECK_EVERY.as_millis();
    let mut cfg = String::from(
        "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
         timeout client 1h\n    timeout server 1h\n    option redispatch\n    retries 3\n",
    );
    let api = |r: &Replica, name: &str| match name {
        "fleet" => r.apis.fleet,
        "serverappio" => r.apis.serverappio,
        _ => r.apis.exec,
    };
    let apis = [("fleet", balancer.fleet), ("serverappio", balancer.serverappio), ("exec", balancer.exec)];
    for (name, bind) in apis {
        cfg.push_str(&format!(
            "\nfrontend {name}\n    bind {bind}\n    default_backend {name}\n\n\
             backend {name}\n    balance roundrobin\n    option httpchk GET /healthz\n"
        ));
        for (i, r) in replicas.iter().enumerate() {
            let port = r.metrics.port();
            cfg.push_str(&format!(
                "    server r{i} {} check port {port} inter {inter}ms fall 2 rise 1 on-marked-down shutdown-sessions\n",
                api(r, name)
            ));
        }
    }
    cfg
}

/// `haproxy` from PATH, else Debian's `/usr/sbin/haproxy` (not on a non-root PATH).
fn haproxy_bin() -> PathBuf {
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"))
}
