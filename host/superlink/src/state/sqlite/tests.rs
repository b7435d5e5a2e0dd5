//! SQLite-only checks: the shared suite on fresh and reopened files, durability,
//! restarts, crashes, and refusing files that are not Sepal state databases.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use sepal_proto::pb;

use super::{SqliteState, APPLICATION_ID, SCHEMA_VERSION};
use crate::state::conformance::{self, message};
use crate::state::status;
use crate::state::{
    LinkState, NewRun, Pick, ReplyLookup, ReplyRejected, StateError, StoredMessage, NO_HEARTBEAT_DETAILS,
};

fn open(path: &Path) -> SqliteState {
    SqliteState::open(path).unwrap()
}

fn backend_error(path: &Path) -> String {
    match SqliteState::open(path) {
        Err(StateError::Backend(msg)) => msg,
        Err(other) => panic!("expected a backend error, got {other:?}"),
        Ok(_) => panic!("{} opened as a state database", path.display()),
    }
}

#[test]
fn sqlite_state_passes_the_shared_suite() {
    run_suite_on_files(false);
}

#[test]
fn reopened_sqlite_state_passes_the_shared_suite() {
    run_suite_on_files(true);
}

/// Runs the shared suite, each check on a new database file; with `reopen`, the file is
/// closed once and opened again before the check sees it.
fn run_suite_on_files(reopen: bool) {
    let dir = tempfile::tempdir().unwrap();
    let n = Cell::new(0);
    conformance::run_all(&|| {
        n.set(n.get() + 1);
        let path = dir.path().join(format!("state-{}.db", n.get()));
        if reopen {
            drop(open(&path));
        }
        Box::new(open(&path))
    });
}

#[test]
fn durability_settings_are_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(&dir.path().join("s.db"));
    let node = state.create_node(10.0).unwrap();
    // A relaxed commit puts FULL back afterwards.
    assert!(state.ack_node_heartbeat(node, 10.0).unwrap());
    let conn = state.lock();
    let pragma = |name: &str| -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .unwrap()
    };
    assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
    assert_eq!(pragma("synchronous"), "Integer(2)", "FULL");
    assert_eq!(pragma("foreign_keys"), "Integer(1)");
    assert_eq!(pragma("user_version"), format!("Integer({SCHEMA_VERSION})"));
    assert_eq!(pragma("application_id"), format!("Integer({APPLICATION_ID})"));
}

fn tree(id: &str) -> pb::ObjectTree {
    pb::ObjectTree {
        object_id: id.into(),
        children: vec![
            pb::ObjectTree { object_id: format!("{id}-content"), children: vec![] },
            pb::ObjectTree {
                object_id: format!("{id}-record"),
                children: vec![pb::ObjectTree { object_id: format!("{id}-array"), children: vec![] }],
            },
        ],
    }
}

fn with_tree(mut msg: StoredMessage) -> StoredMessage {
    msg.tree = tree(msg.id());
    msg
}

#[test]
fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let state = open(&path);
    let before = fill(&state);
    drop(state);
    let another = check_first_restart(&open(&path), &before);
    check_second_restart(&open(&path), &before, another);
}

/// What the restart test wrote, and what the state said about it before closing.
struct Before {
    new: NewRun,
    running: u64,
    finished: u64,
    pending: u64,
    a: u64,
    b: u64,
    context: pb::Context,
    undelivered: StoredMessage,
    reply: StoredMessage,
    runs: Vec<pb::Run>,
    logs: (String, f64),
    running_logs: (String, f64),
    run_ids: Vec<u64>,
    online: Vec<u64>,
}

/// A run submission with every field set.
fn rich_run() -> NewRun {
    NewRun {
        fab_id: "acme/app".into(),
        fab_version: "1.2.3".into(),
        fab_hash: "c0ffee".into(),
        override_config: HashMap::from([
            ("lr".to_string(), pb::Scalar { scalar: Some(pb::scalar::Scalar::Double(0.01)) }),
            ("big".to_string(), pb::Scalar { scalar: Some(pb::scalar::Scalar::Uint64(u64::MAX)) }),
        ]),
        federation_options: pb::ConfigRecord {
            items: vec![pb::config_record::Item {
                key: "num-supernodes".into(),
                value: Some(pb::ConfigRecordValue { value: Some(pb::config_record_value::Value::Sint64(10)) }),
            }],
        },
        flwr_aid: "alice".into(),
    }
}

/// Writes runs in every status, nodes with keys, messages in every stage and a FAB.
fn fill(state: &SqliteState) -> Before {
    let new = rich_run();
    let (running, context) = fill_running_run(state, &new);
    let finished = fill_finished_run(state, &new);
    // A pending run.
    let pending = state.create_run(new.clone()).unwrap();
    // Nodes with keys.
    let a = state.create_node(600.0).unwrap();
    let b = state.create_node(600.0).unwrap();
    state.bind_public_key(a, b"key-a").unwrap();
    state.bind_public_key(b, b"key-b").unwrap();
    assert!(state.ack_node_heartbeat(b, 600.0).unwrap());
    let (undelivered, reply) = fill_messages(state, running, a, b);
    state.store_fab("c0ffee", Bytes::from_static(b"PK\x03\x04 a fab")).unwrap();

    let runs: Vec<_> = [running, finished, pending].iter().map(|id| state.run(*id).unwrap().unwrap()).collect();
    let logs = state.logs_after(finished, 0.0).unwrap();
    let running_logs = state.logs_after(running, 0.0).unwrap();
    let run_ids = state.run_ids().unwrap();
    let online = state.online_nodes().unwrap();
    Before {
        new,
        running,
        finished,
        pending,
        a,
        b,
        context,
        undelivered,
        reply,
        runs,
        logs,
        running_logs,
        run_ids,
        online,
    }
}

/// A running run with a heartbeat and a context; returns it and the context.
fn fill_running_run(state: &SqliteState, new: &NewRun) -> (u64, pb::Context) {
    let running = state.create_run(new.clone()).unwrap();
    assert_eq!(state.claim_pending_run().unwrap(), Some(running));
    assert!(state.update_run_status(running, status::status(status::RUNNING, "", "")).unwrap());
    assert!(state.ack_app_heartbeat(running, 600.0).unwrap());
    let context = pb::Context {
        run_id: running,
        node_id: 0,
        node_config: HashMap::new(),
        state: Some(pb::RecordDict {
            items: vec![pb::record_dict::Item {
                key: "round".into(),
                value: Some(pb::record_dict::item::Value::ConfigRecord(new.federation_options.clone())),
            }],
        }),
        run_config: new.override_config.clone(),
    };
    state.set_serverapp_context(running, context.clone()).unwrap();
    state.add_log(running, "running...\n").unwrap();
    (running, context)
}

/// A finished run with logs.
fn fill_finished_run(state: &SqliteState, new: &NewRun) -> u64 {
    let finished = state.create_run(NewRun { flwr_aid: "bob".into(), ..new.clone() }).unwrap();
    assert_eq!(state.claim_pending_run().unwrap(), Some(finished));
    assert!(state.update_run_status(finished, status::status(status::RUNNING, "", "")).unwrap());
    for i in 0..50 {
        state.add_log(finished, &format!("round {i}\n")).unwrap();
    }
    assert!(state
        .update_run_status(finished, status::status(status::FINISHED, status::COMPLETED, "all good"))
        .unwrap());
    finished
}

/// Messages: one undelivered (to `a`), one delivered (to `b`) and answered, one deleted.
/// Returns the undelivered instruction and the reply.
fn fill_messages(state: &SqliteState, running: u64, a: u64, b: u64) -> (StoredMessage, StoredMessage) {
    let undelivered = with_tree(message(running, 1, a, "", "undelivered", 600.0));
    state.store_instruction(undelivered.clone()).unwrap().unwrap();
    state.store_instruction(with_tree(message(running, 1, b, "", "answered", 600.0))).unwrap().unwrap();
    assert_eq!(state.next_instruction(b, &Pick::default()).unwrap().unwrap().id(), "answered");
    let reply = with_tree(message(running, b, 1, "answered", "reply-b", 300.0));
    state.store_reply(reply.clone()).unwrap().unwrap();
    state.store_instruction(message(running, 1, a, "", "dropped", 600.0)).unwrap().unwrap();
    state.delete_messages(&["dropped".to_string()]).unwrap();
    (undelivered, reply)
}

/// Everything written before is there, then writes more; returns the run it created.
fn check_first_restart(state: &SqliteState, before: &Before) -> u64 {
    let Before { running, finished, pending, a, b, ref logs, .. } = *before;
    assert_eq!(state.run_ids().unwrap(), before.run_ids);
    for run in &before.runs {
        assert_eq!(state.run(run.run_id).unwrap().as_ref(), Some(run), "run {} survives", run.run_id);
    }
    assert_eq!(before.runs[0].status, Some(status::status(status::RUNNING, "", "")));
    assert_eq!(before.runs[1].status, Some(status::status(status::FINISHED, status::COMPLETED, "all good")));
    assert_eq!(state.serverapp_context(running).unwrap(), Some(before.context.clone()));
    assert_eq!(state.federation_options(pending).unwrap(), Some(before.new.federation_options.clone()));
    assert_eq!(state.logs_after(finished, 0.0).unwrap(), *logs);
    assert_eq!(logs.0, (0..50).map(|i| format!("round {i}\n")).collect::<String>());
    assert_eq!(state.logs_after(running, 0.0).unwrap(), before.running_logs);
    assert_eq!(state.pending_run_ids().unwrap(), vec![pending]);
    assert_eq!(state.online_nodes().unwrap(), before.online);
    assert_eq!(state.node_for_key(b"key-a").unwrap(), Some(a));
    assert_eq!(state.node_for_key(b"key-b").unwrap(), Some(b));
    assert!(matches!(state.bind_public_key(pending, b"key-a"), Err(StateError::PublicKeyInUse)));
    assert_eq!(state.fab("c0ffee").unwrap().unwrap(), Bytes::from_static(b"PK\x03\x04 a fab"));
    assert_eq!(state.instruction_ids_of_run(running).unwrap(), ["undelivered", "answered"]);
    // The undelivered instruction is delivered once, as it was stored.
    assert_eq!(state.next_instruction(a, &Pick::default()).unwrap(), Some(before.undelivered.clone()));
    assert_eq!(state.next_instruction(a, &Pick::default()).unwrap(), None);
    assert_eq!(state.next_instruction(b, &Pick::default()).unwrap(), None, "the delivered flag survives");
    // The stored reply is still pullable, once.
    assert_eq!(state.take_replies(&["answered".to_string()]).unwrap(), vec![ReplyLookup::Reply(before.reply.clone())]);
    assert_eq!(
        state.store_reply(message(running, a, 1, "dropped", "r", 30.0)).unwrap(),
        Err(ReplyRejected::Gone("dropped".into())),
        "tombstones survive"
    );
    // Writing after the restart continues where the state left off.
    state.add_log(finished, "after restart\n").unwrap();
    assert_eq!(state.logs_after(finished, logs.1).unwrap().0, "after restart\n");
    state.store_reply(message(running, a, 1, "undelivered", "reply-a", 30.0)).unwrap().unwrap();
    assert_eq!(state.claim_pending_run().unwrap(), Some(pending));
    state.create_run(NewRun::default()).unwrap()
}

/// What the first restart wrote is there too.
fn check_second_restart(state: &SqliteState, before: &Before, another: u64) {
    assert_eq!(state.run_ids().unwrap().len(), 4);
    assert_eq!(state.run(before.pending).unwrap().unwrap().status, Some(status::status(status::STARTING, "", "")));
    assert_eq!(state.pending_run_ids().unwrap(), vec![another]);
    assert!(matches!(&state.take_replies(&["undelivered".to_string()]).unwrap()[0],
        ReplyLookup::Reply(m) if m.id() == "reply-a"));
    assert!(state.instruction_ids_of_run(before.running).unwrap().is_empty());
}

#[test]
fn a_heartbeat_missed_while_down_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let state = open(&path);
    let silent = state.create_run(NewRun::default()).unwrap();
    let alive = state.create_run(NewRun::default()).unwrap();
    let never = state.create_run(NewRun::default()).unwrap();
    for run_id in [silent, alive, never] {
        assert_eq!(state.claim_pending_run().unwrap(), Some(run_id));
        assert!(state.update_run_status(run_id, status::status(status::RUNNING, "", "")).unwrap());
    }
    // Deadline in one second: long enough to read it back as running under load.
    assert!(state.ack_app_heartbeat(silent, 0.5).unwrap());
    assert!(state.ack_app_heartbeat(alive, 600.0).unwrap());
    assert_eq!(state.run(silent).unwrap().unwrap().status.unwrap().status, status::RUNNING);
    drop(state);
    std::thread::sleep(Duration::from_millis(1200));

    let state = open(&path);
    let run = state.run(silent).unwrap().unwrap();
    assert_eq!(run.status, Some(status::status(status::FINISHED, status::FAILED, NO_HEARTBEAT_DETAILS)));
    assert!(!run.finished_at.is_empty());
    assert!(!state.ack_app_heartbeat(silent, 10.0).unwrap(), "too late to revive");
    assert_eq!(state.run(alive).unwrap().unwrap().status.unwrap().status, status::RUNNING);
    assert_eq!(
        state.run(never).unwrap().unwrap().status.unwrap().status,
        status::RUNNING,
        "a run that never sent a heartbeat has no deadline"
    );
    drop(state);

    let state = open(&path);
    assert_eq!(state.run(silent).unwrap().unwrap(), run, "the failure was recorded, not recomputed");
}

const CRASH_ENV: &str = "SEPAL_SQLITE_CRASH_DB";

/// Run by [`acknowledged_writes_survive_a_crash`] in a child process: writes, then
/// dies without closing the database. A no-op in an ordinary test run.
#[test]
fn crash_writer_child() {
    let Some(path) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let state = open(Path::new(&path));
    let run_id = state.create_run(NewRun { fab_id: "acme/crash".into(), ..Default::default() }).unwrap();
    for s in [status::STARTING, status::RUNNING] {
        assert!(state.update_run_status(run_id, status::status(s, "", "")).unwrap());
    }
    let node = state.create_node(600.0).unwrap();
    state.bind_public_key(node, b"crash-key").unwrap();
    state.add_log(run_id, "last words\n").unwrap();
    state.store_instruction(message(run_id, 1, node, "", "crash-ins", 600.0)).unwrap().unwrap();
    std::process::abort();
}

#[test]
fn acknowledged_writes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "state::sqlite::tests::crash_writer_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
    assert!(dir.path().join("state.db-wal").exists(), "the child died before closing the database");
    let state = open(&path);
    let run_id = *state.run_ids().unwrap().first().expect("the run survived");
    assert_eq!(state.run(run_id).unwrap().unwrap().fab_id, "acme/crash");
    assert_eq!(state.logs_after(run_id, 0.0).unwrap().0, "last words\n");
    let node = state.node_for_key(b"crash-key").unwrap().expect("the key binding survived");
    assert_eq!(state.next_instruction(node, &Pick::default()).unwrap().unwrap().id(), "crash-ins");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "these are my notes, not an SQLite database\n".repeat(100);
    std::fs::write(&path, &text).unwrap();
    let msg = backend_error(&path);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a database"), "{msg}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file is left alone");
    let short = dir.path().join("short");
    std::fs::write(&short, "junk").unwrap();
    let msg = backend_error(&short);
    assert!(msg.contains(&short.display().to_string()) && msg.contains("not a database"), "{msg}");
}

#[test]
fn an_unwritable_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("state.db");
    let msg = backend_error(&missing);
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = backend_error(dir.path());
    assert!(msg.contains(&dir.path().display().to_string()) && msg.contains("directory"), "{msg}");
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("state.db");
    let msg = backend_error(&under_file);
    assert!(msg.contains(&under_file.display().to_string()) && msg.contains("is not a directory"), "{msg}");
}

#[test]
fn other_databases_and_newer_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Flower's own database: tables, no Sepal marks.
    let flower = dir.path().join("flower.db");
    Connection::open(&flower).unwrap().execute_batch("CREATE TABLE run (run_id INTEGER UNIQUE);").unwrap();
    let msg = backend_error(&flower);
    assert!(msg.contains(&flower.display().to_string()) && msg.contains("not a Sepal state database"), "{msg}");
    let mode: String = Connection::open(&flower).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete", "a refused database is left as it was");
    // Another program's database.
    let other = dir.path().join("other.db");
    Connection::open(&other).unwrap().execute_batch("PRAGMA application_id = 42;").unwrap();
    let msg = backend_error(&other);
    assert!(msg.contains("another program"), "{msg}");
    // A newer Sepal's database.
    let newer = dir.path().join("newer.db");
    drop(open(&newer));
    Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
    let msg = backend_error(&newer);
    assert!(msg.contains(&newer.display().to_string()), "{msg}");
    assert!(msg.contains("schema version 99 is newer") && msg.contains(&format!("({SCHEMA_VERSION})")), "{msg}");
    // An empty file is a new database.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let state = open(&empty);
    assert!(state.run_ids().unwrap().is_empty());
}
