//! Child processes that cannot leak: each runs in its own process group, writes stdout and
//! stderr to a log file, and is killed with its whole group (SIGTERM, then SIGKILL) when its
//! guard is dropped, also while a failing test unwinds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{kill_process_group, Pid, Signal};

/// How long a process group gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running child process (leader of its own process group) with its log file.
///
/// Dropping the guard stops the whole group: SIGTERM, up to [`STOP_GRACE`] for the leader
/// to exit, then SIGKILL to every process still in the group (apps the process spawned
/// included), then the leader is reaped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    pgid: Pid,
    log_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` in a new process group, stdin from /dev/null, stdout and stderr appended
    /// to `<log_dir>/<name>.log` (whose first line is the command line).
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Proc> {
        std::fs::create_dir_all(log_dir).with_context(|| format!("creating log dir {}", log_dir.display()))?;
        let log_path = log_dir.join(format!("{name}.log"));
        let mut out = File::create(&log_path).with_context(|| format!("creating log file {}", log_path.display()))?;
        writeln!(out, "$ {}", command_line(&cmd))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().with_context(|| format!("starting {name}: {}", command_line(&cmd)))?;
        let pgid = Pid::from_child(&child);
        Ok(Proc { name: name.to_string(), child: Some(child), pgid, log_path, status: None })
    }

    /// The name given at spawn (also the log file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leader's pid (= the process group id).
    pub fn pid(&self) -> u32 {
        self.pgid.as_raw_nonzero().get() as u32
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`: resident now; `VmHWM`: the peak).
    pub fn memory_kib(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).ok_or_else(|| anyhow!("no {field}"))?;
        let kib = line.split_whitespace().nth(1).ok_or_else(|| anyhow!("malformed {line:?}"))?;
        Ok(kib.parse()?)
    }

    /// How many file descriptors the process holds open now.
    pub fn open_fds(&self) -> Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))?.count())
    }

    /// Path of the combined stdout/stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path, None)
    }

    /// The last `lines` lines of the log (reads at most the last 64 KiB).
    pub fn log_tail(&self, lines: usize) -> String {
        tail_lines(&read_lossy(&self.log_path, Some(64 * 1024)), lines)
    }

    /// `Some(status)` once the leader has exited (it is reaped then).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.status = Some(st);
                }
            }
        }
        self.status
    }

    /// Whether the leader is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exit_status().is_none()
    }

    /// Fails with the log tail if the leader has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(st) = self.exit_status() {
            bail!("{} exited early ({st}); last log lines:\n{}", self.name, self.log_tail(40));
        }
        Ok(())
    }

    /// Waits until `addr` accepts TCP connections; fails early (with the log tail) if the
    /// process exits, and after `timeout` (with the log tail).
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if crate::port_open(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {timeout:?}; last log lines:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the log contains `needle`; fails early if the process exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            self.ensure_running()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}; last log lines:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends `sig` to the whole process group (errors, e.g. an empty group, are ignored).
    pub fn signal_group(&self, sig: Signal) {
        if self.child.is_some() {
            let _ = kill_process_group(self.pgid, sig);
        }
    }

    /// Stops the group (SIGTERM, `grace`, SIGKILL) and reaps the leader. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        stop_all(std::slice::from_mut(self), grace);
    }

    fn leader_gone(&mut self) -> bool {
        // A zombie leader still reserves the group id, so do not reap it before the final
        // SIGKILL: read its state instead.
        if self.status.is_some() || self.child.is_none() {
            return true;
        }
        !pid_alive(self.pid())
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() {
                if let Ok(st) = child.wait() {
                    self.status = Some(st);
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

/// Stops several process groups at once: SIGTERM to all, wait up to `grace` for every
/// leader, SIGKILL to every group, reap. Never panics.
pub fn stop_all(procs: &mut [Proc], grace: Duration) {
    for p in procs.iter_mut() {
        if p.child.is_some() && p.status.is_none() {
            p.signal_group(Signal::TERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !procs.iter_mut().all(|p| p.leader_gone()) {
        thread::sleep(Duration::from_millis(50));
    }
    for p in procs.iter_mut() {
        // Also catches children (spawned apps) left behind by a leader that exited.
        p.signal_group(Signal::KILL);
        p.reap();
    }
}

/// Whether process `pid` exists and is not a zombie (Linux `/proc`).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// `cmd` as a shell-like string (for logs and error messages).
pub fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains([' ', '"', '\'']) {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

fn read_lossy(path: &Path, last_bytes: Option<u64>) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    if let Some(n) = last_bytes {
        if let Ok(len) = f.metadata().map(|m| m.len()) {
            if len > n {
                let _ = f.seek(SeekFrom::Start(len - n));
            }
        }
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
