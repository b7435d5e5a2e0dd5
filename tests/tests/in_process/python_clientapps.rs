//! Python ClientApps in subprocess isolation, served by the real `flwr-clientapp` (from the
//! venv) that the SuperNode starts: forked by its fork server, one fresh process per
//! message; a fork server that is killed is replaced; with the fork server turned off,
//! spawned.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use sepal_core::records::{Message, MetricValue, RecordDict};
use sepal_proto::pb;
use sepal_supernode::{Config, Isolation};
use sepal_tests::kit::{self, PlayedServerApp, PyProject, TestLink, TestNode};
use sepal_tests::venv_bin;

/// A ClientApp that counts its calls in a module global and reports the count with its
/// process ids: a fresh process per message reports 1 every time.
const COUNTER_CLIENT: &str = r#"
import os
from flwr.client import ClientApp
from flwr.common import Context, Message, MetricRecord, RecordDict

app = ClientApp()
CALLS = 0


@app.train()
def train(msg: Message, context: Context) -> Message:
    global CALLS
    CALLS += 1
    metrics = MetricRecord({"calls": CALLS, "pid": os.getpid(), "ppid": os.getppid()})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
"#;

/// A ClientApp that writes its process id to `{pid_file}` and never answers.
const HANGING_CLIENT: &str = r#"
import os, time
from flwr.client import ClientApp
from flwr.common import Context, Message

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    with open("{pid_file}", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)
"#;

/// A Python FAB named `name` whose ClientApp is `client`.
fn python_fab(name: &str, client: &str) -> pb::Fab {
    let dir = tempfile::tempdir().unwrap();
    PyProject::new(name).write_to(dir.path()).unwrap();
    std::fs::create_dir(dir.path().join(name)).unwrap();
    std::fs::write(dir.path().join(name).join("__init__.py"), "").unwrap();
    std::fs::write(dir.path().join(name).join("client.py"), client).unwrap();
    kit::fab_from_dir(dir.path())
}

fn counter_fab() -> pb::Fab {
    python_fab("counter", COUNTER_CLIENT)
}

/// What a reply of [`COUNTER_CLIENT`] reports.
#[derive(Debug, PartialEq, Eq)]
struct Served {
    calls: i64,
    pid: i64,
    ppid: i64,
}

fn served(reply: &Message) -> Served {
    let content = reply.content.as_ref().unwrap_or_else(|| panic!("an error reply: {:?}", reply.error));
    let metrics = content.metric_record("metrics").expect("metrics");
    let get = |key: &str| match metrics.get(key) {
        Some(MetricValue::Sint64(n)) => *n,
        other => panic!("unexpected {key}: {other:?}"),
    };
    Served { calls: get("calls"), pid: get("pid"), ppid: get("ppid") }
}

async fn round_trip(server: &mut PlayedServerApp, node_id: u64) -> Served {
    let id = server.send(node_id, RecordDict::new(), 120.0).await;
    served(&server.receive(&id).await)
}

/// The parent of process `pid` (from /proc).
fn parent_of(pid: i64) -> i64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The processes whose parent is `pid`.
fn children_of(pid: i64) -> Vec<i64> {
    let all = std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok());
    all.filter(|&p| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok() && parent_of(p) == pid).collect()
}

async fn gone(pid: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn subprocess_node(link: &TestLink, flwr_dir: &Path, fork_server: bool) -> Config {
    Config {
        isolation: Isolation::Subprocess,
        clientapp_bin: venv_bin("flwr-clientapp"),
        flwr_dir: Some(flwr_dir.to_path_buf()),
        clientapp_fork_server: fork_server,
        ..TestNode::config(link)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_gets_a_fresh_forked_process_and_a_killed_fork_server_is_replaced() {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let link = TestLink::start().await;
    let flwr_dir = tempfile::tempdir().unwrap();
    let _node = TestNode::start(subprocess_node(&link, flwr_dir.path(), true)).await;
    let mut server = PlayedServerApp::start(&link, counter_fab(), HashMap::new()).await;
    let node_id = server.wait_for_nodes(1).await[0];
    let us = i64::from(std::process::id());

    // Forked by one fork server, a child of this process (where the SuperNode runs); a
    // module global set by one message is not there for the next.
    let first = round_trip(&mut server, node_id).await;
    let second = round_trip(&mut server, node_id).await;
    assert_eq!((first.calls, second.calls), (1, 1), "{first:?} {second:?}");
    assert_ne!(first.pid, second.pid);
    let fork_server = first.ppid;
    assert_eq!(second.ppid, fork_server);
    assert_ne!(fork_server, us, "forked, not spawned");
    assert_eq!(parent_of(fork_server), us);

    // Killed: its children (the spare) end with it, and the next message is served by a
    // new fork server's child. Nothing of the old one is left.
    let spares = children_of(fork_server);
    assert!(!spares.is_empty(), "a spare waits for the next message");
    kill_process(Pid::from_raw(fork_server as i32).unwrap(), Signal::KILL).unwrap();
    gone(fork_server).await;
    for spare in spares {
        gone(spare).await;
    }
    let third = round_trip(&mut server, node_id).await;
    let fourth = round_trip(&mut server, node_id).await;
    assert_eq!((third.calls, fourth.calls), (1, 1));
    assert_ne!(third.ppid, fork_server);
    assert_eq!(third.ppid, fourth.ppid, "{third:?} {fourth:?}");
    assert_eq!(parent_of(third.ppid), us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fork_server_off_each_message_gets_a_spawned_process() {
    let link = TestLink::start().await;
    let flwr_dir = tempfile::tempdir().unwrap();
    let _node = TestNode::start(subprocess_node(&link, flwr_dir.path(), false)).await;
    let mut server = PlayedServerApp::start(&link, counter_fab(), HashMap::new()).await;
    let node_id = server.wait_for_nodes(1).await[0];
    let us = i64::from(std::process::id());
    for _ in 0..2 {
        let spawned = round_trip(&mut server, node_id).await;
        assert_eq!((spawned.calls, spawned.ppid), (1, us), "{spawned:?}");
    }
}

/// A run whose Python ClientApp hangs holds one process on the node, not the node: another
/// run's message is served meanwhile. Stopping the node kills the hanging process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_python_clientapp_does_not_hold_up_another_runs_message() {
    let link = TestLink::start().await;
    let flwr_dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(subprocess_node(&link, flwr_dir.path(), true)).await;
    let pid_file = flwr_dir.path().join("hanging.pid");
    let hanging = HANGING_CLIENT.replace("{pid_file}", pid_file.to_str().unwrap());
    let mut stuck = PlayedServerApp::start(&link, python_fab("hanging", &hanging), HashMap::new()).await;
    let node_id = stuck.wait_for_nodes(1).await[0];
    stuck.send(node_id, RecordDict::new(), 3600.0).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let hanging_pid: i64 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.parse().ok()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the hanging ClientApp never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut other = PlayedServerApp::start(&link, counter_fab(), HashMap::new()).await;
    let answered = tokio::time::timeout(Duration::from_secs(120), round_trip(&mut other, node_id)).await;
    let answered = answered.expect("the other run's message is served while the first one hangs");
    assert_eq!(answered.calls, 1);
    assert!(Path::new(&format!("/proc/{hanging_pid}")).exists(), "still hanging");

    node.stop().await.unwrap();
    gone(hanging_pid).await;
}
