//! The PostgreSQL state backend against a real server (initdb on a free loopback port):
//! the shared LinkState behaviour suite, schema migrations, two SuperLinks ("replicas")
//! sharing one database, the sync-to-async bridge inside tokio runtimes, and the errors an
//! operator sees for a bad URL or an unreachable server.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;

use sepal_superlink::state::conformance::{self, message};
use sepal_superlink::state::postgres::{PgState, SCHEMA_VERSION};
use sepal_superlink::state::status::{self, RUNNING, STARTING};
use sepal_superlink::state::{LinkState, NewRun, Pick, StateError};
use sepal_tests::postgres::Postgres;

/// A server, with the temp dir its log goes to (dropped after the server).
fn server() -> (Postgres, tempfile::TempDir) {
    let logs = tempfile::tempdir().unwrap();
    let pg = Postgres::start(logs.path()).unwrap();
    (pg, logs)
}

/// A new, empty database and its URL.
fn database(pg: &Postgres, name: &str) -> String {
    pg.create_database(name).unwrap();
    pg.url(name)
}

fn open_error(url: &str) -> String {
    match PgState::open(url) {
        Err(StateError::Backend(msg)) => msg,
        Err(other) => panic!("expected a backend error, got {other:?}"),
        Ok(_) => panic!("{url} opened"),
    }
}

fn new_run(state: &dyn LinkState) -> u64 {
    state.create_run(NewRun { fab_id: "acme/app".into(), ..Default::default() }).unwrap()
}

#[test]
fn postgres_state_passes_the_shared_suite() {
    let (pg, _logs) = server();
    let n = Cell::new(0);
    conformance::run_all(&|| {
        n.set(n.get() + 1);
        Box::new(PgState::open(&database(&pg, &format!("check{}", n.get()))).unwrap())
    });
}

#[test]
fn migrations_apply_once_and_newer_schemas_are_refused() {
    let (pg, _logs) = server();
    let url = database(&pg, "state");
    let applied = || pg.psql("state", "SELECT version, applied_at FROM sepal_schema ORDER BY version").unwrap();
    let state = PgState::open(&url).unwrap();
    let run_id = new_run(&state);
    let first = applied();
    assert_eq!(first.lines().count(), SCHEMA_VERSION as usize, "one row per migration: {first}");
    drop(state);
    // A second open changes nothing, and finds what the first stored.
    let again = PgState::open(&url).unwrap();
    assert_eq!(applied(), first, "a second open is a no-op");
    assert_eq!(again.run_ids().unwrap(), vec![run_id]);
    drop(again);
    // Replicas starting together: each migration is applied once.
    let fresh = database(&pg, "together");
    let barrier = Arc::new(Barrier::new(4));
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (fresh, barrier) = (fresh.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                PgState::open(&fresh).map(drop)
            })
        })
        .collect();
    for open in opens {
        open.join().unwrap().unwrap();
    }
    let rows = pg.psql("together", "SELECT count(*) FROM sepal_schema").unwrap();
    assert_eq!(rows.trim(), SCHEMA_VERSION.to_string());
    // A database from a newer Sepal is refused, and says why.
    let newer = SCHEMA_VERSION + 1;
    pg.psql("state", &format!("INSERT INTO sepal_schema VALUES ({newer}, 'from the future', 'later')")).unwrap();
    let msg = open_error(&url);
    assert!(msg.contains(&format!("schema version {newer} is newer")) && msg.contains(&url), "{msg}");
    // So is a database with tables of our names that Sepal did not make.
    let foreign = database(&pg, "foreign");
    pg.psql("foreign", "CREATE TABLE run (id integer)").unwrap();
    let msg = open_error(&foreign);
    assert!(msg.contains("not a Sepal state database"), "{msg}");
}

#[test]
fn two_replicas_never_hand_out_the_same_run_or_instruction() {
    let (pg, _logs) = server();
    let url = database(&pg, "shared");
    let replicas: Vec<Arc<PgState>> = (0..2).map(|_| Arc::new(PgState::open(&url).unwrap())).collect();
    let runs: Vec<u64> = (0..60).map(|i| new_run(&*replicas[i % 2])).collect();
    let claimed = drain(&replicas, |state| state.claim_pending_run().unwrap());
    assert_eq!(claimed.len(), runs.len(), "every pending run claimed once");
    assert_eq!(claimed.iter().collect::<HashSet<_>>(), runs.iter().collect::<HashSet<_>>());
    assert!(replicas[0].pending_run_ids().unwrap().is_empty());

    let run_id = claimed[0];
    assert!(replicas[1].update_run_status(run_id, status::status(RUNNING, "", "")).unwrap());
    let node = replicas[0].create_node(60.0).unwrap();
    let ids: Vec<String> = (0..150).map(|i| format!("ins-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        replicas[i % 2].store_instruction(message(run_id, 1, node, "", id, 600.0)).unwrap().unwrap();
    }
    let delivered = drain(&replicas, move |state| {
        state.next_instruction(node, &Pick::default()).unwrap().map(|m| m.id().to_string())
    });
    assert_eq!(delivered.len(), ids.len(), "every instruction handed out once");
    assert_eq!(delivered.into_iter().collect::<HashSet<_>>(), ids.into_iter().collect::<HashSet<_>>());
    assert!(replicas[1].next_instruction(node, &Pick::default()).unwrap().is_none());
}

/// Takes work from both replicas with three threads each until none is left; returns
/// everything taken (duplicates included, so that the caller sees them).
fn drain<T, F>(replicas: &[Arc<PgState>], take: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&PgState) -> Option<T> + Copy + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(replicas.len() * 3));
    let workers: Vec<_> = (0..replicas.len() * 3)
        .map(|i| {
            let (state, barrier) = (replicas[i % replicas.len()].clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                std::iter::from_fn(|| take(&state)).collect::<Vec<T>>()
            })
        })
        .collect();
    workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
}

#[test]
fn calls_from_inside_tokio_runtimes_work() {
    let (pg, _logs) = server();
    let url = database(&pg, "async");
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Opened, used by many tasks at once, and dropped inside a runtime, as the SuperLink does.
    multi.block_on(async {
        let state = Arc::new(PgState::open(&url).unwrap());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let state = state.clone();
                tokio::spawn(async move { new_run(&*state) })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(state.run_ids().unwrap().len(), 16);
    });
    let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    current.block_on(async {
        let state = PgState::open(&url).unwrap();
        let run_id = state.claim_pending_run().unwrap().unwrap();
        assert_eq!(state.run(run_id).unwrap().unwrap().status.unwrap().status, STARTING);
    });
}

#[test]
fn bad_urls_and_unreachable_servers_are_named() {
    let nobody = sepal_tests::free_addr();
    let url = format!("postgresql://fl@{nobody}/state");
    let msg = open_error(&url);
    assert!(msg.contains("PostgreSQL") && msg.contains(&nobody.to_string()), "{msg}");
    assert!(msg.to_lowercase().contains("connect"), "says it could not connect: {msg}");
    let msg = open_error(&format!("postgres://fl:s3cret@{nobody}/state"));
    assert!(msg.contains(&nobody.to_string()) && !msg.contains("s3cret"), "names the server, not the password: {msg}");
    let msg = open_error("postgresql://fl@127.0.0.1:notaport/state");
    assert!(msg.contains("bad URL"), "{msg}");
    let (pg, _logs) = server();
    let msg = open_error(&pg.url("missing"));
    assert!(msg.contains("missing") && msg.contains("does not exist"), "{msg}");
}

/// One replica at a time holds a run's lease; it renews it, and another takes it over
/// once it lapses.
#[test]
fn a_run_lease_has_one_holder_until_it_lapses() {
    let (pg, _logs) = server();
    let url = database(&pg, "leases");
    let (a, b) = (PgState::open(&url).unwrap(), PgState::open(&url).unwrap());
    let run_id = new_run(&a);
    assert!(a.lease_run(run_id, "a", 0.5).unwrap(), "a free lease is taken");
    assert!(!b.lease_run(run_id, "b", 0.5).unwrap(), "a held lease is not");
    assert!(a.lease_run(run_id, "a", 0.5).unwrap(), "its holder renews it");
    thread::sleep(std::time::Duration::from_millis(700));
    assert!(b.lease_run(run_id, "b", 10.0).unwrap(), "a lapsed lease is taken over");
    assert!(!a.lease_run(run_id, "a", 10.0).unwrap(), "the old holder has lost it");
    assert!(a.shared() && b.shared());
}

/// What one replica announces reaches the others' listeners, not its own.
#[test]
fn changes_announced_by_one_replica_reach_the_others() {
    use sepal_superlink::state::Change;
    let (pg, _logs) = server();
    let url = database(&pg, "changes");
    let (a, b) = (PgState::open(&url).unwrap(), PgState::open(&url).unwrap());
    let (tx_a, rx_a) = std::sync::mpsc::channel();
    let (tx_b, rx_b) = std::sync::mpsc::channel();
    let sink = |tx: std::sync::mpsc::Sender<Change>| {
        Arc::new(move |c| {
            let _ = tx.send(c);
        })
    };
    a.listen(sink(tx_a)).unwrap();
    b.listen(sink(tx_b)).unwrap();
    let wait = std::time::Duration::from_secs(10);
    // The listeners connect in the background: announce until the first one is heard.
    let heard = (0..100).find_map(|_| {
        a.announce(Change::Instruction(7));
        rx_b.recv_timeout(std::time::Duration::from_millis(100)).ok()
    });
    assert_eq!(heard, Some(Change::Instruction(7)));
    a.announce(Change::Reply(u64::MAX));
    // Warm-up announcements sent before the first was heard may still arrive first.
    let next = std::iter::from_fn(|| rx_b.recv_timeout(wait).ok()).find(|c| *c != Change::Instruction(7));
    assert_eq!(next, Some(Change::Reply(u64::MAX)));
    b.announce(Change::RunSubmitted);
    assert_eq!(rx_a.recv_timeout(wait).unwrap(), Change::RunSubmitted, "a hears b");
    assert!(rx_a.try_iter().all(|c| c == Change::RunSubmitted), "a never hears itself");
}
