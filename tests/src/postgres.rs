//! A real PostgreSQL server for one test: `initdb` into a temp dir, `postgres` on a free
//! loopback port (TCP only, no Unix socket), trust authentication for the user `fl`,
//! stopped and deleted when the guard is dropped.
//!
//! PostgreSQL refuses to run as root; when the tests run as root, the server runs as the
//! `postgres` system user that Debian's package creates (scripts/test.sh installs the
//! package when the machine lacks it). The binaries are found in `$SEPAL_PG_BIN`, else in
//! the newest `/usr/lib/postgresql/<version>/bin`, else on `PATH`.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::procs::Proc;
use crate::{free_addr, START_TIMEOUT};

/// The superuser the tests connect as (trust authentication: no password).
pub const USER: &str = "fl";

/// A running PostgreSQL server; dropped, it stops and its data dir is deleted.
#[derive(Debug)]
pub struct Postgres {
    proc: Proc,
    addr: SocketAddr,
    bin: PathBuf,
    // Dropped after `proc`: the server stops before its files go.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Initialises a cluster and starts its server; the server's log is
    /// `<log_dir>/postgres.log`.
    pub fn start(log_dir: &Path) -> Result<Postgres> {
        let bin = bin_dir()?;
        let owner = server_user()?;
        let dir = tempfile::Builder::new().prefix("sepal-pg-").tempdir().context("creating the data dir")?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        let mut initdb = as_owner(Command::new(bin.join("initdb")), owner);
        initdb.args(["-D"]).arg(&data).args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]);
        let out = initdb.output().with_context(|| format!("running {}", bin.join("initdb").display()))?;
        if !out.status.success() {
            bail!("initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        let addr = free_addr();
        let mut server = as_owner(Command::new(bin.join("postgres")), owner);
        server.arg("-D").arg(&data).arg("-p").arg(addr.port().to_string());
        // Loopback TCP only; durability is not what these tests are about.
        for setting in ["listen_addresses=127.0.0.1", "unix_socket_directories=", "fsync=off", "max_connections=200"] {
            server.args(["-c", setting]);
        }
        let mut proc = Proc::spawn("postgres", server, log_dir)?;
        proc.wait_for_port(addr, START_TIMEOUT).context("waiting for PostgreSQL to listen")?;
        let pg = Postgres { proc, addr, bin, dir };
        crate::poll("PostgreSQL to accept connections", START_TIMEOUT, Duration::from_millis(100), || {
            Ok(pg.psql("postgres", "SELECT 1").is_ok().then_some(()))
        })?;
        Ok(pg)
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `postgresql://fl@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://{USER}@{}/{database}", self.addr)
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\"")).map(drop)
    }

    /// Runs SQL in `database` with `psql` (stopping at the first error) and returns what it
    /// printed (unaligned, tuples only: one row per line, columns separated by `|`).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.addr.port().to_string(), "-U", USER, "-d", database, "-c", sql])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql -d {database} -c {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Puts `lines` at the top of `pg_hba.conf` (first match wins) and reloads the
    /// server, e.g. `host all alice 127.0.0.1/32 scram-sha-256` to make a role log in
    /// with a password.
    pub fn prepend_hba(&self, lines: &str) -> Result<()> {
        let path = self.dir.path().join("data").join("pg_hba.conf");
        let old = std::fs::read_to_string(&path).context("reading pg_hba.conf")?;
        std::fs::write(&path, format!("{lines}\n{old}")).context("writing pg_hba.conf")?;
        self.psql("postgres", "SELECT pg_reload_conf()").map(drop)
    }

    /// The server's pid (its backends are in its process group).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The server process (its log, to kill it).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

fn as_owner(mut cmd: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// The `postgres` user's uid and gid when running as root (PostgreSQL will not run as
/// root), `None` otherwise.
fn server_user() -> Result<Option<(u32, u32)>> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
    });
    match entry.flatten() {
        Some(ids) => Ok(Some(ids)),
        None => bail!("running as root and there is no `postgres` system user to run PostgreSQL as (install the postgresql package: scripts/test.sh does)"),
    }
}

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SEPAL_PG_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let on_path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).find(|d| d.join("initdb").is_file());
    on_path.context("no PostgreSQL server binaries (initdb) found: install the postgresql package (scripts/test.sh does) or set SEPAL_PG_BIN")
}
