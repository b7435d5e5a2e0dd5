//! Runs: statuses and their transitions, claiming, ServerApp heartbeats, the fields a run
//! keeps, and its ServerApp context.

use std::collections::HashMap;

use sepal_proto::pb;

use super::samples::{every_config_value, every_scalar, scalar};
use super::{new_run, status_of, Factory};
use crate::state::status::{self, FINISHED, PENDING, RUNNING, STARTING};
use crate::state::{NewRun, StateError, NO_HEARTBEAT_DETAILS};

pub(super) fn runs_start_pending_and_follow_transitions(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let run = state.run(run_id).unwrap().unwrap();
    assert_eq!(run.fab_id, "acme/app");
    assert_eq!(run.status.unwrap().status, PENDING);
    assert!(!run.pending_at.is_empty() && run.starting_at.is_empty());
    assert_eq!(state.serverapp_context(run_id).unwrap().unwrap().run_id, run_id);
    assert!(
        !state.update_run_status(run_id, status::status(RUNNING, "", "")).unwrap(),
        "pending cannot jump to running"
    );
    assert!(state.update_run_status(run_id, status::status(STARTING, "", "")).unwrap());
    assert!(state.update_run_status(run_id, status::status(RUNNING, "", "")).unwrap());
    assert!(state.update_run_status(run_id, status::status(FINISHED, status::COMPLETED, "")).unwrap());
    let run = state.run(run_id).unwrap().unwrap();
    assert_eq!(status::display(run.status.as_ref().unwrap()), "finished:completed");
    assert!(!run.running_at.is_empty() && !run.finished_at.is_empty());
    assert!(!state.update_run_status(run_id, status::status(RUNNING, "", "")).unwrap(), "finished is final");
    assert!(state.run(12345).unwrap().is_none());
    assert!(matches!(
        state.update_run_status(12345, status::status(STARTING, "", "")),
        Err(StateError::RunNotFound(12345))
    ));
    assert_eq!(state.run_ids().unwrap(), vec![run_id]);
}

pub(super) fn claim_hands_out_each_pending_run_once(make: Factory<'_>) {
    let state = make();
    let a = new_run(&*state);
    let b = new_run(&*state);
    assert_eq!(state.pending_run_ids().unwrap().len(), 2);
    let first = state.claim_pending_run().unwrap().unwrap();
    let second = state.claim_pending_run().unwrap().unwrap();
    assert_eq!(first, a, "oldest pending run first");
    assert_eq!(second, b);
    assert_eq!(state.claim_pending_run().unwrap(), None);
    assert_eq!(status_of(&*state, a).status, STARTING);
    assert!(!state.run(a).unwrap().unwrap().starting_at.is_empty());
}

pub(super) fn silent_serverapp_fails_the_run(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    assert!(!state.ack_app_heartbeat(run_id, 10.0).unwrap(), "pending runs take no heartbeat");
    state.claim_pending_run().unwrap();
    assert!(state.ack_app_heartbeat(run_id, 0.0).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(20));
    // The status alone is brought up to date as the whole run is.
    let alone = state.run_status(run_id).unwrap().unwrap();
    let st = status_of(&*state, run_id);
    assert_eq!(alone, st);
    assert_eq!((st.status.as_str(), st.sub_status.as_str()), (FINISHED, status::FAILED));
    assert_eq!(st.details, NO_HEARTBEAT_DETAILS);
    assert_eq!(state.run_status(999).unwrap(), None);
    assert!(!state.ack_app_heartbeat(run_id, 10.0).unwrap(), "finished runs take no heartbeat");
    assert!(!state.ack_app_heartbeat(999, 10.0).unwrap());
}

pub(super) fn run_fields_round_trip(make: Factory<'_>) {
    let state = make();
    let new = NewRun {
        fab_id: "acme/ünïcode-app".into(),
        fab_version: "2.0.1".into(),
        fab_hash: "f".repeat(64),
        override_config: every_scalar(),
        federation_options: every_config_value(),
        flwr_aid: "account-7".into(),
    };
    let run_id = state.create_run(new.clone()).unwrap();
    let run = state.run(run_id).unwrap().unwrap();
    assert_eq!(run.run_id, run_id);
    assert_eq!((run.fab_id.as_str(), run.fab_version.as_str()), ("acme/ünïcode-app", "2.0.1"));
    assert_eq!(run.fab_hash, new.fab_hash);
    assert_eq!(run.override_config, new.override_config);
    assert_eq!(run.flwr_aid, "account-7");
    assert_eq!(run.status, Some(status::status(PENDING, "", "")));
    assert!(crate::clock::parse_iso(&run.pending_at).is_some(), "{}", run.pending_at);
    assert!(run.starting_at.is_empty() && run.running_at.is_empty() && run.finished_at.is_empty());
    assert_eq!(state.federation_options(run_id).unwrap(), Some(new.federation_options));
    assert_eq!(state.federation_options(run_id ^ 1).unwrap(), None);
    // Defaults survive too.
    let plain = new_run(&*state);
    let run = state.run(plain).unwrap().unwrap();
    assert!(run.override_config.is_empty() && run.flwr_aid.is_empty());
    assert_eq!(state.federation_options(plain).unwrap(), Some(pb::ConfigRecord::default()));
    // Reading twice gives the same record (timestamps are not re-stamped by reads).
    assert_eq!(state.run(plain).unwrap(), Some(run));
}

pub(super) fn stopping_and_failing_keep_their_details(make: Factory<'_>) {
    let state = make();
    let stopped = new_run(&*state);
    assert!(state.update_run_status(stopped, status::status(FINISHED, status::STOPPED, "by alice")).unwrap());
    let run = state.run(stopped).unwrap().unwrap();
    assert_eq!(run.status, Some(status::status(FINISHED, status::STOPPED, "by alice")));
    assert!(run.starting_at.is_empty() && !run.finished_at.is_empty());
    let failed = new_run(&*state);
    assert_eq!(state.claim_pending_run().unwrap(), Some(failed));
    assert!(state.update_run_status(failed, status::status(RUNNING, "", "")).unwrap());
    assert!(state.ack_app_heartbeat(failed, 60.0).unwrap());
    assert!(state.update_run_status(failed, status::status(FINISHED, status::FAILED, "boom: ✗")).unwrap());
    let run = state.run(failed).unwrap().unwrap();
    assert_eq!(run.status, Some(status::status(FINISHED, status::FAILED, "boom: ✗")));
    assert!(!run.starting_at.is_empty() && !run.running_at.is_empty() && !run.finished_at.is_empty());
    assert!(!state.update_run_status(failed, status::status(FINISHED, status::STOPPED, "")).unwrap());
    assert_eq!(state.run(failed).unwrap().unwrap(), run, "a refused change leaves the run as it was");
    let pending = new_run(&*state);
    assert!(
        !state.update_run_status(pending, status::status(FINISHED, status::COMPLETED, "")).unwrap(),
        "pending cannot complete"
    );
    assert_eq!(status_of(&*state, pending).status, PENDING);
}

pub(super) fn pending_runs_are_claimed_in_submission_order(make: Factory<'_>) {
    let state = make();
    // Created in a burst: several share a timestamp, yet order is submission order.
    let runs: Vec<u64> = (0..30).map(|_| new_run(&*state)).collect();
    assert_eq!(state.pending_run_ids().unwrap(), runs);
    let stopped = runs[3];
    assert!(state.update_run_status(stopped, status::status(FINISHED, status::STOPPED, "")).unwrap());
    let expected: Vec<u64> = runs.iter().copied().filter(|id| *id != stopped).collect();
    assert_eq!(state.pending_run_ids().unwrap(), expected);
    let claimed: Vec<u64> = std::iter::from_fn(|| state.claim_pending_run().unwrap()).collect();
    assert_eq!(claimed, expected, "claimed oldest first, each once");
    assert!(state.pending_run_ids().unwrap().is_empty());
}

pub(super) fn contexts_round_trip(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let fresh = state.serverapp_context(run_id).unwrap().unwrap();
    assert_eq!(
        fresh,
        pb::Context { run_id, state: Some(pb::RecordDict::default()), ..Default::default() },
        "a new run starts with an empty ServerApp context"
    );
    use pb::record_dict::item::Value as R;
    let array = pb::Array {
        dtype: "float32".into(),
        shape: vec![2, 1],
        stype: "numpy.ndarray".into(),
        data: vec![1u8; 8].into(),
    };
    let records = pb::RecordDict {
        items: vec![
            pb::record_dict::Item {
                key: "arrays".into(),
                value: Some(R::ArrayRecord(pb::ArrayRecord {
                    items: vec![pb::array_record::Item { key: "w".into(), value: Some(array) }],
                })),
            },
            pb::record_dict::Item {
                key: "metrics".into(),
                value: Some(R::MetricRecord(pb::MetricRecord {
                    items: vec![pb::metric_record::Item {
                        key: "acc".into(),
                        value: Some(pb::MetricRecordValue {
                            value: Some(pb::metric_record_value::Value::Double(0.93)),
                        }),
                    }],
                })),
            },
            pb::record_dict::Item { key: "config".into(), value: Some(R::ConfigRecord(every_config_value())) },
        ],
    };
    let context = pb::Context {
        run_id,
        node_id: 0,
        node_config: every_scalar(),
        state: Some(records),
        run_config: HashMap::from([("rounds".to_string(), scalar(pb::scalar::Scalar::Sint64(3)))]),
    };
    state.set_serverapp_context(run_id, context.clone()).unwrap();
    assert_eq!(state.serverapp_context(run_id).unwrap(), Some(context.clone()));
    // Replacing it again keeps only the latest.
    let smaller = pb::Context { run_id, ..Default::default() };
    state.set_serverapp_context(run_id, smaller.clone()).unwrap();
    assert_eq!(state.serverapp_context(run_id).unwrap(), Some(smaller));
    assert!(matches!(state.set_serverapp_context(run_id ^ 1, context), Err(StateError::RunNotFound(_))));
    assert_eq!(state.serverapp_context(run_id ^ 1).unwrap(), None);
}
