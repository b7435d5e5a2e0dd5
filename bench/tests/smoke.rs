//! Every benchmark scenario in smoke mode (tiny sizes, one round): the harness keeps
//! working end to end, and its report is a well-formed table of measured values.
//!
//! Needs what the scenarios need: the venv (scripts/python-env.sh), the debug `sepal`
//! binary, the wasm32-wasip2 target.

use sepal_bench::{report, Machine, Opts, Scenario};

fn smoke(scenario: Scenario) {
    let r = scenario.run(&Opts { smoke: true }).unwrap_or_else(|e| panic!("{}: {e:#}", scenario.id()));
    assert!(!r.tables.is_empty(), "{} produced no table", scenario.id());
    for (_, t) in &r.tables {
        assert!(!t.rows.is_empty(), "{}: an empty table", scenario.id());
        for row in &t.rows {
            assert_eq!(row.len(), t.header.len(), "{}: a ragged row {row:?}", scenario.id());
            assert!(row.iter().all(|c| !c.trim().is_empty()), "{}: an empty cell in {row:?}", scenario.id());
        }
    }
    let doc = tempfile::NamedTempFile::new().unwrap();
    report::update_doc(doc.path(), &r, &Machine::detect()).unwrap();
    let text = std::fs::read_to_string(doc.path()).unwrap();
    assert!(text.contains(&format!("scripts/bench.sh {} --smoke", scenario.id())), "{text}");
    eprintln!("{text}");
}

#[test]
fn e2e() {
    smoke(Scenario::E2e);
}

#[test]
fn dispatch() {
    smoke(Scenario::Dispatch);
}

#[test]
fn fleet_load() {
    smoke(Scenario::FleetLoad);
}

#[test]
fn fleet_replicas() {
    smoke(Scenario::FleetReplicas);
}

#[test]
fn large_model() {
    smoke(Scenario::LargeModel);
}

#[test]
fn sandbox() {
    smoke(Scenario::Sandbox);
}

#[test]
fn noisy() {
    smoke(Scenario::Noisy);
}
