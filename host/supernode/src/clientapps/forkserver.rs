//! A fork server for `flwr-clientapp`: one Python process that imports Flower's ClientApp
//! entry point once, then forks a child per message.
//!
//! Starting `flwr-clientapp` costs about 0.5 CPU-seconds, nearly all of it Python importing
//! `flwr`; with many nodes on few cores that start-up, not the apps, bounds a round. The
//! fork server pays the import once per SuperNode, and its children share the imported
//! modules copy-on-write. Each child is still a new process running Flower's own
//! `flwr_clientapp()` with the argv a spawned process gets, so app module globals never
//! outlive a message and ClientAppIo sees what it sees from a spawned process. The child
//! leaves the server's loop before it calls the entry point, and ends as the console script
//! does (`sys.exit(flwr_clientapp())`: non-daemon threads joined, atexit handlers run), if
//! it is not stopped first. The server imports a few modules the entry point would import
//! in every child ([`Entry::preload`]), and freezes what it imported for the garbage
//! collector (`gc.freeze()`), so that a child's collections neither walk those objects nor
//! copy their pages.
//!
//! The server (`forkserver.py`, embedded) runs with the interpreter named by the shebang of
//! the `flwr-clientapp` console script ([`Script::find`]). It talks JSON lines over a Unix
//! socket that is its stdin; its stdout and stderr, and so its children's, are the
//! SuperNode's. [`ForkServer`] owns it (dropping it ends the server and its children);
//! [`Forked`] is one child: [`Forked::wait`] gives its exit status, dropping it SIGKILLs it.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// The server, sent over the socket at start (so that `ps` shows a short command line).
const SERVER: &str = include_str!("forkserver.py");

/// Reads `argv[1]` bytes of script from stdin and runs it.
const BOOTSTRAP: &str = "import os,sys\nn=int(sys.argv[1]);s=b''\nwhile len(s)<n:s+=os.read(0,n-len(s)) or exit(1)\n\
                         exec(compile(s,'sepal-forkserver','exec'))";

/// How long the server may take to import the entry point: about 0.5 s warm, seconds cold
/// or on a loaded machine; much longer means something is wrong.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fork may take to be acknowledged (milliseconds normally).
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a console script read to check it (they are a few hundred bytes).
const MAX_SCRIPT: u64 = 64 * 1024;

/// A Python entry point: `from <module> import <function>`.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The module.
    pub module: &'static str,
    /// The function, called without arguments; it reads `sys.argv`.
    pub function: &'static str,
    /// Modules the function imports on every call, which the server imports up front
    /// (missing ones are skipped).
    pub preload: &'static [&'static str],
}

/// Flower's ClientApp entry point, as the `flwr-clientapp` console script imports it.
/// Importing `flwr.supernode.cli` leaves out what each message's run then imports: gRPC's
/// channel implementation and the codec of the FAB's zip entry names (3 ms per child,
/// measured on flwr 1.20.0 and grpcio 1.85).
pub const FLOWER_CLIENTAPP: Entry = Entry {
    module: "flwr.supernode.cli",
    function: "flwr_clientapp",
    preload: &["grpc._channel", "grpc._simple_stubs", "grpc.experimental", "encodings.cp437"],
};

/// Why the fork server cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ForkServerError {
    /// The program is not a Python console script for the entry point.
    #[error("`{}` is not a Python script calling {module}.{function}: {why}", program.display())]
    NotPython {
        /// The program.
        program: PathBuf,
        /// The entry point's module.
        module: &'static str,
        /// The entry point's function.
        function: &'static str,
        /// What is missing.
        why: &'static str,
    },
    /// The program could not be found or read.
    #[error("cannot read `{}`: {source}", program.display())]
    Read {
        /// The program.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The interpreter could not be started.
    #[error("cannot start the fork server with `{}`: {source}", interpreter.display())]
    Start {
        /// The interpreter.
        interpreter: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The server did not say it was ready.
    #[error("the fork server did not start: {0}")]
    NotReady(&'static str),
    /// The server could not fork.
    #[error("the fork server could not fork: {0}")]
    Fork(String),
    /// The server has ended, or stopped answering.
    #[error("the fork server has ended")]
    Gone,
    /// An argument cannot be carried by the protocol (JSON strings).
    #[error("argument {0:?} is not UTF-8")]
    NotUtf8(OsString),
}

/// A console script the fork server can stand in for.
#[derive(Debug, Clone)]
pub struct Script {
    /// The script's path (what `argv[0]` is when it runs).
    pub program: PathBuf,
    /// The Python interpreter of its shebang.
    pub interpreter: PathBuf,
    /// The entry point it calls.
    pub entry: Entry,
}

impl Script {
    /// Finds `program` (a bare name is looked up on PATH) and checks that it is a Python
    /// script (`#!<...>/python<...>`, directly or through `env`) that imports `entry`.
    pub fn find(program: &Path, entry: Entry) -> Result<Script, ForkServerError> {
        let not_python = |why| ForkServerError::NotPython {
            program: program.to_path_buf(),
            module: entry.module,
            function: entry.function,
            why,
        };
        let resolved = if program.components().count() > 1 { Some(program.to_path_buf()) } else { on_path(program) };
        let resolved = resolved.ok_or_else(|| ForkServerError::Read {
            program: program.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "not found on PATH"),
        })?;
        let text =
            read_head(&resolved).map_err(|source| ForkServerError::Read { program: resolved.clone(), source })?;
        let interpreter = shebang_python(&text).ok_or_else(|| not_python("no `#!...python` line"))?;
        if !text.contains(&format!("from {} import {}", entry.module, entry.function)) {
            return Err(not_python("it does not import the entry point"));
        }
        Ok(Script { program: resolved, interpreter, entry })
    }
}

/// The start of a file, as text (a binary is no script).
fn read_head(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_SCRIPT).read_to_string(&mut text)?;
    Ok(text)
}

/// The interpreter of a `#!` line naming Python (`#!/usr/bin/env python3` included).
fn shebang_python(text: &str) -> Option<PathBuf> {
    let mut words = text.lines().next()?.strip_prefix("#!")?.split_whitespace();
    let mut interpreter = PathBuf::from(words.next()?);
    if interpreter.file_name()? == "env" {
        interpreter = on_path(Path::new(words.next()?))?;
    }
    // Interpreter options would be lost by `python -c`.
    if words.next().is_some() {
        return None;
    }
    interpreter.file_name()?.to_str()?.starts_with("python").then_some(interpreter)
}

/// An executable named `name` on PATH.
fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A running fork server. Dropping it closes the socket: the server kills its children
/// and exits.
#[derive(Debug)]
pub struct ForkServer {
    requests: mpsc::UnboundedSender<Request>,
    pid: u32,
    _stop: oneshot::Sender<()>,
}

#[derive(Debug)]
enum Request {
    Spawn { args: Vec<String>, reply: oneshot::Sender<Result<Spawned, ForkServerError>> },
    Kill(u32),
}

#[derive(Debug)]
struct Spawned {
    pid: u32,
    exit: oneshot::Receiver<i32>,
}

impl ForkServer {
    /// Starts the server for `script` and waits until it has imported the entry point.
    pub async fn start(script: &Script) -> Result<ForkServer, ForkServerError> {
        let start_error = |source| ForkServerError::Start { interpreter: script.interpreter.clone(), source };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(start_error)?;
        let mut cmd = Command::new(&script.interpreter);
        cmd.arg("-c")
            .arg(BOOTSTRAP)
            .arg(SERVER.len().to_string())
            .arg(&script.program)
            .args([script.entry.module, script.entry.function])
            .args(script.entry.preload)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(start_error)?;
        // The socket's other end must live only in the server, so that its death is EOF here.
        drop(cmd);
        let pid = child.id().ok_or(ForkServerError::NotReady("it exited at once"))?;
        ours.set_nonblocking(true).map_err(start_error)?;
        let (read, mut write) = UnixStream::from_std(ours).map_err(start_error)?.into_split();
        write.write_all(SERVER.as_bytes()).await.map_err(|_| ForkServerError::NotReady("it exited at once"))?;
        let mut lines = BufReader::new(read).lines();
        match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with("{\"ready\"") => {}
            Ok(_) => {
                let _ = child.start_kill();
                return Err(ForkServerError::NotReady("it exited before importing the entry point (see its output)"));
            }
            Err(_) => return Err(ForkServerError::NotReady("it did not import the entry point in time")),
        }
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        tokio::spawn(relay(Relay { child, lines, write, requests: requests_rx, stop: stop_rx }));
        tracing::debug!(pid, program = %script.program.display(), "flwr-clientapp fork server ready");
        Ok(ForkServer { requests, pid, _stop: stop })
    }

    /// The server's process id (its children's parent).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the server has ended (it forks no more).
    pub fn has_ended(&self) -> bool {
        self.requests.is_closed()
    }

    /// Forks a child that runs the entry point with `sys.argv = [program, args...]`.
    pub async fn spawn(&self, args: &[OsString]) -> Result<Forked, ForkServerError> {
        let args = args
            .iter()
            .map(|a| a.to_str().map(str::to_owned).ok_or_else(|| ForkServerError::NotUtf8(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, replied) = oneshot::channel();
        self.requests.send(Request::Spawn { args, reply }).map_err(|_| ForkServerError::Gone)?;
        let spawned = match tokio::time::timeout(SPAWN_TIMEOUT, replied).await {
            Ok(Ok(spawned)) => spawned?,
            _ => return Err(ForkServerError::Gone),
        };
        Ok(Forked { pid: spawned.pid, exit: Exit::Running(spawned.exit), requests: self.requests.clone() })
    }
}

/// What the relay task owns: the server process and both ends of the conversation.
struct Relay {
    child: Child,
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    requests: mpsc::UnboundedReceiver<Request>,
    stop: oneshot::Receiver<()>,
}

/// Passes requests to the server and its answers back, until the [`ForkServer`] is dropped
/// or the server ends. Then every waiting [`Forked`] learns the server is gone.
async fn relay(mut r: Relay) {
    let mut replies = VecDeque::new();
    let mut exits = HashMap::new();
    loop {
        tokio::select! {
            _ = &mut r.stop => break,
            request = r.requests.recv() => {
                let Some(request) = request else { break };
                let line = match request {
                    Request::Spawn { args, reply } => {
                        replies.push_back(reply);
                        serde_json::json!({ "spawn": args })
                    }
                    Request::Kill(pid) => serde_json::json!({ "kill": pid }),
                };
                if r.write.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
            line = r.lines.next_line() => match line {
                Ok(Some(line)) => {
                    let Some(unwanted) = answer(&line, &mut replies, &mut exits) else { continue };
                    let kill = serde_json::json!({ "kill": unwanted });
                    if r.write.write_all(format!("{kill}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    // Whoever waits learns now that the server is gone; end of input tells the server to
    // kill its children and exit: give it a moment.
    drop((replies, exits, r.write));
    match tokio::time::timeout(Duration::from_secs(2), r.child.wait()).await {
        Ok(Ok(status)) => tracing::debug!(%status, "flwr-clientapp fork server ended"),
        _ => tracing::debug!("flwr-clientapp fork server killed"),
    }
}

/// Routes one line from the server: a fork's pid to its requester, an exit status to the
/// child's handle. Returns the pid of a child nobody waits for any more (its requester gave
/// up), to be killed.
fn answer(
    line: &str,
    replies: &mut VecDeque<oneshot::Sender<Result<Spawned, ForkServerError>>>,
    exits: &mut HashMap<u32, oneshot::Sender<i32>>,
) -> Option<u32> {
    let Ok(msg) = serde_json::from_str::<Value>(line) else {
        tracing::warn!(line = %line.chars().take(200).collect::<String>(), "unexpected line from the fork server");
        return None;
    };
    let pid = |key: &str| msg.get(key).and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok());
    if let Some(pid) = pid("spawned") {
        let (tx, exit) = oneshot::channel();
        exits.insert(pid, tx);
        let taken = replies.pop_front().is_some_and(|reply| reply.send(Ok(Spawned { pid, exit })).is_ok());
        if !taken {
            exits.remove(&pid);
            return Some(pid);
        }
    } else if let Some(error) = msg.get("error") {
        if let Some(reply) = replies.pop_front() {
            let _ = reply.send(Err(ForkServerError::Fork(error.to_string())));
        }
    } else if let (Some(pid), Some(status)) = (pid("exited"), msg.get("status").and_then(Value::as_i64)) {
        if let Some(tx) = exits.remove(&pid) {
            let _ = tx.send(status as i32);
        }
    }
    None
}

/// A child of the fork server.
#[derive(Debug)]
pub struct Forked {
    pid: u32,
    exit: Exit,
    requests: mpsc::UnboundedSender<Request>,
}

#[derive(Debug)]
enum Exit {
    Running(oneshot::Receiver<i32>),
    Exited(ExitStatus),
    /// The server ended first; its children end with it (`flwr-clientapp --parent-pid`).
    Lost,
}

impl Exit {
    fn from_raw(raw: Result<i32, impl Sized>) -> Exit {
        raw.map_or(Exit::Lost, |raw| Exit::Exited(ExitStatus::from_raw(raw)))
    }

    fn status(&self) -> Option<io::Result<ExitStatus>> {
        match self {
            Exit::Running(_) => None,
            Exit::Exited(status) => Some(Ok(*status)),
            Exit::Lost => Some(Err(io::Error::other("the fork server ended first"))),
        }
    }
}

impl Forked {
    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit (cancel-safe).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Exit::Running(exit) = &mut self.exit {
            self.exit = Exit::from_raw(exit.await);
        }
        self.exit.status().unwrap_or_else(|| Err(io::Error::other("the ClientApp's exit is unknown")))
    }

    /// The exit status, if the child has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Exit::Running(exit) = &mut self.exit {
            match exit.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return Ok(None),
                raw => self.exit = Exit::from_raw(raw),
            }
        }
        self.exit.status().transpose()
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if matches!(self.exit, Exit::Running(_)) {
            // The server kills it only if not yet reaped, so no other process can be hit.
            let _ = self.requests.send(Request::Kill(self.pid));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
