//! The behaviour every [`LinkState`] backend must show, written once.
//!
//! Each backend's tests call [`run_all`] with a factory for fresh, empty states.

use std::collections::HashMap;

use sepal_proto::pb;

use super::status::{self, FINISHED, PENDING, RUNNING, STARTING};
use super::*;
use crate::clock::now_secs;

type Factory<'a> = &'a dyn Fn() -> Box<dyn LinkState>;

/// Runs every behaviour check against fresh states from `make`.
pub(crate) fn run_all(make: Factory<'_>) {
    runs_start_pending_and_follow_transitions(make);
    claim_hands_out_each_pending_run_once(make);
    silent_serverapp_fails_the_run(make);
    logs_are_returned_after_a_stamp(make);
    nodes_register_heartbeat_and_go_offline(make);
    public_keys_bind_one_node(make);
    instructions_reach_only_their_node_once(make);
    expired_instructions_are_not_delivered(make);
    replies_are_checked_against_their_instruction(make);
    pulling_replies_answers_and_deletes(make);
    offline_destination_yields_node_unavailable(make);
    fabs_are_stored_by_hash(make);
    ids_span_the_whole_u64_range(make);
    run_fields_round_trip(make);
    contexts_round_trip(make);
    stopping_and_failing_keep_their_details(make);
    pending_runs_are_claimed_in_submission_order(make);
    logs_keep_order_across_many_entries(make);
    instructions_are_delivered_oldest_first(make);
    storing_an_instruction_twice_keeps_one(make);
    replies_expire_replace_and_outlive_nothing(make);
    deleted_messages_leave_tombstones(make);
    nan_heartbeat_intervals_behave_like_flower(make);
    node_keys_follow_their_node(make);
    fabs_are_stored_once(make);
}

pub(crate) fn message(run_id: u64, src: u64, dst: u64, reply_to: &str, id: &str, ttl: f64) -> StoredMessage {
    StoredMessage {
        message: pb::Message {
            metadata: Some(pb::Metadata {
                run_id,
                message_id: id.to_string(),
                src_node_id: src,
                dst_node_id: dst,
                reply_to_message_id: reply_to.to_string(),
                group_id: "1".into(),
                ttl,
                message_type: "train".into(),
                created_at: now_secs(),
            }),
            content: Some(pb::RecordDict::default()),
            error: None,
        },
        tree: pb::ObjectTree { object_id: id.to_string(), children: vec![] },
    }
}

fn new_run(state: &dyn LinkState) -> u64 {
    state
        .create_run(NewRun {
            fab_id: "acme/app".into(),
            fab_version: "1.0".into(),
            fab_hash: "ab".into(),
            ..Default::default()
        })
        .unwrap()
}

fn status_of(state: &dyn LinkState, run_id: u64) -> pb::RunStatus {
    state.run(run_id).unwrap().unwrap().status.unwrap()
}

fn runs_start_pending_and_follow_transitions(make: Factory<'_>) {
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

fn claim_hands_out_each_pending_run_once(make: Factory<'_>) {
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

fn silent_serverapp_fails_the_run(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    assert!(!state.ack_app_heartbeat(run_id, 10.0).unwrap(), "pending runs take no heartbeat");
    state.claim_pending_run().unwrap();
    assert!(state.ack_app_heartbeat(run_id, 0.0).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let st = status_of(&*state, run_id);
    assert_eq!((st.status.as_str(), st.sub_status.as_str()), (FINISHED, status::FAILED));
    assert_eq!(st.details, NO_HEARTBEAT_DETAILS);
    assert!(!state.ack_app_heartbeat(run_id, 10.0).unwrap(), "finished runs take no heartbeat");
    assert!(!state.ack_app_heartbeat(999, 10.0).unwrap());
}

fn logs_are_returned_after_a_stamp(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    assert_eq!(state.logs_after(run_id, 0.0).unwrap(), (String::new(), 0.0));
    state.add_log(run_id, "one\n").unwrap();
    state.add_log(run_id, "two\n").unwrap();
    let (text, latest) = state.logs_after(run_id, 0.0).unwrap();
    assert_eq!(text, "one\ntwo\n");
    state.add_log(run_id, "three\n").unwrap();
    let (text, latest2) = state.logs_after(run_id, latest).unwrap();
    assert_eq!(text, "three\n");
    assert!(latest2 > latest);
    assert!(matches!(state.add_log(777, "x"), Err(StateError::RunNotFound(777))));
}

fn nodes_register_heartbeat_and_go_offline(make: Factory<'_>) {
    let state = make();
    let a = state.create_node(30.0).unwrap();
    let b = state.create_node(0.0).unwrap();
    assert!(a > SUPERLINK_NODE_ID && b > SUPERLINK_NODE_ID && a != b);
    assert_eq!(state.online_nodes().unwrap(), vec![a], "a zero interval is offline at once");
    assert!(state.ack_node_heartbeat(b, 30.0).unwrap());
    let mut both = vec![a, b];
    both.sort_unstable();
    assert_eq!(state.online_nodes().unwrap(), both);
    state.delete_node(a).unwrap();
    assert_eq!(state.online_nodes().unwrap(), vec![b]);
    assert!(!state.ack_node_heartbeat(a, 30.0).unwrap());
    assert!(matches!(state.delete_node(a), Err(StateError::NodeNotFound(_))));
}

fn public_keys_bind_one_node(make: Factory<'_>) {
    let state = make();
    let a = state.create_node(30.0).unwrap();
    let b = state.create_node(30.0).unwrap();
    state.bind_public_key(a, b"key-a").unwrap();
    assert_eq!(state.node_for_key(b"key-a").unwrap(), Some(a));
    assert!(matches!(state.bind_public_key(b, b"key-a"), Err(StateError::PublicKeyInUse)));
    state.delete_node(a).unwrap();
    assert_eq!(state.node_for_key(b"key-a").unwrap(), None, "deleting a node frees its key");
    state.bind_public_key(b, b"key-a").unwrap();
}

fn instructions_reach_only_their_node_once(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let b = state.create_node(30.0).unwrap();
    let id = state.store_instruction(message(run_id, 1, a, "", "m1", 60.0)).unwrap().unwrap();
    assert_eq!(id, "m1");
    assert_eq!(
        state.store_instruction(message(run_id, 1, 4242, "", "m2", 60.0)).unwrap(),
        Err(InstructionRejected::UnknownNode(4242))
    );
    assert_eq!(
        state.store_instruction(message(9, 1, a, "", "m3", 60.0)).unwrap(),
        Err(InstructionRejected::UnknownRun(9))
    );
    assert!(state.next_instruction(b).unwrap().is_none());
    assert!(state.has_instruction_for(a).unwrap());
    assert_eq!(state.next_instruction(a).unwrap().unwrap().id(), "m1");
    assert!(state.next_instruction(a).unwrap().is_none(), "delivered once");
    assert!(!state.has_instruction_for(a).unwrap());
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), vec!["m1".to_string()]);
}

fn expired_instructions_are_not_delivered(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let mut old = message(run_id, 1, a, "", "old", 10.0);
    old.message.metadata.as_mut().unwrap().created_at -= 100.0;
    state.store_instruction(old).unwrap().unwrap();
    assert!(state.next_instruction(a).unwrap().is_none());
    let lookups = state.take_replies(&["old".to_string()]).unwrap();
    assert_eq!(lookups, vec![ReplyLookup::InstructionUnavailable { instruction_id: "old".into() }]);
}

fn replies_are_checked_against_their_instruction(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let b = state.create_node(30.0).unwrap();
    state.store_instruction(message(run_id, 1, a, "", "ins", 60.0)).unwrap().unwrap();
    let from_b = message(run_id, b, 1, "ins", "r-b", 30.0);
    assert!(matches!(state.store_reply(from_b).unwrap(), Err(ReplyRejected::WrongNode { .. })));
    let unknown = message(run_id, a, 1, "nope", "r-x", 30.0);
    assert!(matches!(state.store_reply(unknown).unwrap(), Err(ReplyRejected::UnknownInstruction(_))));
    let too_long = message(run_id, a, 1, "ins", "r-long", 9999.0);
    assert!(matches!(state.store_reply(too_long).unwrap(), Err(ReplyRejected::TtlTooLong { .. })));
    let other_run = message(run_id + 1, a, 1, "ins", "r-run", 30.0);
    assert!(matches!(state.store_reply(other_run).unwrap(), Err(ReplyRejected::WrongRun { .. })));
    let ok = message(run_id, a, 1, "ins", "r-a", 30.0);
    assert_eq!(state.store_reply(ok).unwrap(), Ok("r-a".to_string()));
    let taken = state.take_replies(&["ins".to_string()]).unwrap();
    assert!(matches!(&taken[0], ReplyLookup::Reply(m) if m.id() == "r-a"));
    let late = message(run_id, a, 1, "ins", "r-late", 30.0);
    assert_eq!(state.store_reply(late).unwrap(), Err(ReplyRejected::Gone("ins".into())), "late replies are told apart");
}

fn pulling_replies_answers_and_deletes(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    state.store_instruction(message(run_id, 1, a, "", "ins", 60.0)).unwrap().unwrap();
    assert_eq!(state.take_replies(&["ins".to_string()]).unwrap(), vec![ReplyLookup::Waiting]);
    state.store_reply(message(run_id, a, 1, "ins", "rep", 30.0)).unwrap().unwrap();
    assert!(matches!(&state.take_replies(&["ins".to_string()]).unwrap()[0], ReplyLookup::Reply(_)));
    assert_eq!(
        state.take_replies(&["ins".to_string()]).unwrap(),
        vec![ReplyLookup::InstructionUnavailable { instruction_id: "ins".into() }],
        "a second pull finds nothing"
    );
    assert!(state.instruction_ids_of_run(run_id).unwrap().is_empty());
}

fn offline_destination_yields_node_unavailable(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    state.store_instruction(message(run_id, 1, a, "", "ins", 60.0)).unwrap().unwrap();
    state.delete_node(a).unwrap();
    let got = state.take_replies(&["ins".to_string()]).unwrap();
    assert!(matches!(&got[0], ReplyLookup::NodeUnavailable { instruction } if instruction.message_id == "ins"));
}

fn fabs_are_stored_by_hash(make: Factory<'_>) {
    let state = make();
    state.store_fab("h1", bytes::Bytes::from_static(b"zip")).unwrap();
    assert_eq!(state.fab("h1").unwrap().unwrap(), bytes::Bytes::from_static(b"zip"));
    assert!(state.fab("h2").unwrap().is_none());
}

fn ids_span_the_whole_u64_range(make: Factory<'_>) {
    let state = make();
    let runs: Vec<u64> = (0..40).map(|_| new_run(&*state)).collect();
    let nodes: Vec<u64> = (0..40).map(|_| state.create_node(30.0).unwrap()).collect();
    // 80 random ids all below 2^63 would happen once in 2^80 tries.
    assert!(runs.iter().chain(&nodes).any(|id| *id > i64::MAX as u64), "random ids cover the upper half of u64");
    let mut sorted = runs.clone();
    sorted.sort_unstable();
    assert_eq!(state.run_ids().unwrap(), sorted, "run ids sorted as unsigned numbers");
    let mut sorted = nodes.clone();
    sorted.sort_unstable();
    assert_eq!(state.online_nodes().unwrap(), sorted, "node ids sorted as unsigned numbers");
    assert_eq!(state.pending_run_ids().unwrap(), runs, "pending runs in submission order");
    for &run_id in &runs {
        assert_eq!(state.run(run_id).unwrap().unwrap().run_id, run_id);
        assert_eq!(state.serverapp_context(run_id).unwrap().unwrap().run_id, run_id);
    }
    let high_run = *runs.iter().max().unwrap();
    let high_node = *nodes.iter().max().unwrap();
    state.bind_public_key(high_node, b"high").unwrap();
    assert_eq!(state.node_for_key(b"high").unwrap(), Some(high_node));
    state.store_instruction(message(high_run, 1, high_node, "", "hi", 60.0)).unwrap().unwrap();
    assert_eq!(state.instruction_ids_of_run(high_run).unwrap(), vec!["hi".to_string()]);
    let got = state.next_instruction(high_node).unwrap().unwrap();
    assert_eq!((got.metadata().run_id, got.metadata().dst_node_id), (high_run, high_node));
    state.store_reply(message(high_run, high_node, 1, "hi", "hi-r", 30.0)).unwrap().unwrap();
    assert!(matches!(&state.take_replies(&["hi".to_string()]).unwrap()[0], ReplyLookup::Reply(m) if m.id() == "hi-r"));
    assert!(state.ack_node_heartbeat(high_node, 30.0).unwrap());
    state.delete_node(high_node).unwrap();
    assert_eq!(state.node_for_key(b"high").unwrap(), None);
    assert!(!state.online_nodes().unwrap().contains(&high_node));
}

fn scalar(s: pb::scalar::Scalar) -> pb::Scalar {
    pb::Scalar { scalar: Some(s) }
}

fn config_item(key: &str, v: pb::config_record_value::Value) -> pb::config_record::Item {
    pb::config_record::Item { key: key.into(), value: Some(pb::ConfigRecordValue { value: Some(v) }) }
}

fn every_config_value() -> pb::ConfigRecord {
    use pb::config_record_value::Value as V;
    pb::ConfigRecord {
        items: vec![
            config_item("double", V::Double(-2.5e-300)),
            config_item("inf", V::Double(f64::INFINITY)),
            config_item("sint", V::Sint64(i64::MIN)),
            config_item("uint", V::Uint64(u64::MAX)),
            config_item("bool", V::Bool(true)),
            config_item("string", V::String("grüße \u{0} 🌸".into())),
            config_item("bytes", V::Bytes(vec![0, 255, 1])),
            config_item("doubles", V::DoubleList(pb::DoubleList { vals: vec![1.5, -0.0] })),
            config_item("sints", V::SintList(pb::SintList { vals: vec![i64::MAX, -1] })),
            config_item("uints", V::UintList(pb::UintList { vals: vec![u64::MAX, 0] })),
            config_item("bools", V::BoolList(pb::BoolList { vals: vec![false, true] })),
            config_item("strings", V::StringList(pb::StringList { vals: vec!["a".into(), String::new()] })),
            config_item("bytes_list", V::BytesList(pb::BytesList { vals: vec![vec![], vec![7]] })),
        ],
    }
}

fn every_scalar() -> HashMap<String, pb::Scalar> {
    use pb::scalar::Scalar as S;
    HashMap::from([
        ("double".to_string(), scalar(S::Double(0.1))),
        ("neg".to_string(), scalar(S::Double(-1e308))),
        ("uint".to_string(), scalar(S::Uint64(u64::MAX))),
        ("sint".to_string(), scalar(S::Sint64(i64::MIN))),
        ("bool".to_string(), scalar(S::Bool(false))),
        ("string".to_string(), scalar(S::String("lr = 0.01 ✓".into()))),
        ("bytes".to_string(), scalar(S::Bytes(vec![0, 1, 2, 255]))),
        ("empty".to_string(), scalar(S::String(String::new()))),
    ])
}

fn run_fields_round_trip(make: Factory<'_>) {
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

fn contexts_round_trip(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let fresh = state.serverapp_context(run_id).unwrap().unwrap();
    assert_eq!(
        fresh,
        pb::Context { run_id, state: Some(pb::RecordDict::default()), ..Default::default() },
        "a new run starts with an empty ServerApp context"
    );
    use pb::record_dict::item::Value as R;
    let array =
        pb::Array { dtype: "float32".into(), shape: vec![2, 1], stype: "numpy.ndarray".into(), data: vec![1; 8] };
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

fn stopping_and_failing_keep_their_details(make: Factory<'_>) {
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

fn pending_runs_are_claimed_in_submission_order(make: Factory<'_>) {
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

fn logs_keep_order_across_many_entries(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let other = new_run(&*state);
    let lines: Vec<String> = (0..300).map(|i| format!("line {i} ✓\n")).collect();
    let mut stamps = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        state.add_log(run_id, line).unwrap();
        if i % 100 == 0 {
            state.add_log(other, "other\n").unwrap();
        }
        let (text, latest) = state.logs_after(run_id, stamps.last().copied().unwrap_or(0.0)).unwrap();
        assert_eq!(text, *line, "each read after the last stamp returns exactly the new line");
        stamps.push(latest);
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "stamps strictly increase");
    let (all, latest) = state.logs_after(run_id, 0.0).unwrap();
    assert_eq!(all, lines.concat());
    assert_eq!(latest, *stamps.last().unwrap());
    let (tail, _) = state.logs_after(run_id, stamps[249]).unwrap();
    assert_eq!(tail, lines[250..].concat());
    assert_eq!(state.logs_after(run_id, latest).unwrap(), (String::new(), 0.0));
    assert_eq!(state.logs_after(other, 0.0).unwrap().0, "other\nother\nother\n");
    state.add_log(run_id, "").unwrap();
    state.add_log(run_id, "with\0nul and\r\nnewlines").unwrap();
    assert_eq!(state.logs_after(run_id, latest).unwrap().0, "with\0nul and\r\nnewlines");
    assert!(matches!(state.logs_after(run_id ^ 1, 0.0), Err(StateError::RunNotFound(_))));
}

fn instructions_are_delivered_oldest_first(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let b = state.create_node(30.0).unwrap();
    // Ids in reverse alphabetical order so that order cannot come from the id.
    for (id, dst) in [("z", a), ("y", b), ("x", a), ("w", a)] {
        state.store_instruction(message(run_id, 1, dst, "", id, 60.0)).unwrap().unwrap();
    }
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), ["z", "y", "x", "w"]);
    let delivered: Vec<String> =
        std::iter::from_fn(|| state.next_instruction(a).unwrap().map(|m| m.id().to_string())).collect();
    assert_eq!(delivered, ["z", "x", "w"]);
    assert!(state.has_instruction_for(b).unwrap());
    let got = state.next_instruction(b).unwrap().unwrap();
    assert_eq!(got, message_like(&got, run_id, 1, b, "y"), "the stored message comes back as it was");
    assert!(!state.has_instruction_for(b).unwrap());
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap().len(), 4, "delivery does not delete");
    assert!(state.instruction_ids_of_run(run_id ^ 1).unwrap().is_empty());
}

/// The message `message()` builds, with `got`'s timestamp.
fn message_like(got: &StoredMessage, run_id: u64, src: u64, dst: u64, id: &str) -> StoredMessage {
    let mut want = message(run_id, src, dst, "", id, 60.0);
    want.message.metadata.as_mut().unwrap().created_at = got.metadata().created_at;
    want
}

fn storing_an_instruction_twice_keeps_one(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let msg = message(run_id, 1, a, "", "dup", 60.0);
    assert_eq!(state.store_instruction(msg.clone()).unwrap(), Ok("dup".to_string()));
    assert_eq!(state.next_instruction(a).unwrap().unwrap().id(), "dup");
    // A retried push of the same message (same content, same id) is not a new message.
    assert_eq!(state.store_instruction(msg).unwrap(), Ok("dup".to_string()));
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), vec!["dup".to_string()]);
    assert!(state.next_instruction(a).unwrap().is_none(), "still delivered once");
    state.store_reply(message(run_id, a, 1, "dup", "dup-r", 30.0)).unwrap().unwrap();
    assert!(matches!(&state.take_replies(&["dup".to_string()]).unwrap()[0], ReplyLookup::Reply(_)));
    assert!(state.instruction_ids_of_run(run_id).unwrap().is_empty());
    assert!(state.next_instruction(a).unwrap().is_none());
    assert!(!state.has_instruction_for(a).unwrap());
    state.store_instruction(message(run_id, 1, a, "", "next", 60.0)).unwrap().unwrap();
    assert_eq!(state.next_instruction(a).unwrap().unwrap().id(), "next");
}

fn replies_expire_replace_and_outlive_nothing(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    // A second reply to the same instruction replaces the first.
    state.store_instruction(message(run_id, 1, a, "", "ins", 60.0)).unwrap().unwrap();
    state.store_reply(message(run_id, a, 1, "ins", "first", 30.0)).unwrap().unwrap();
    state.store_reply(message(run_id, a, 1, "ins", "second", 30.0)).unwrap().unwrap();
    let got = state.take_replies(&["ins".to_string()]).unwrap();
    assert!(matches!(&got[0], ReplyLookup::Reply(m) if m.id() == "second"), "{got:?}");
    // A reply that expired before it was pulled.
    state.store_instruction(message(run_id, 1, a, "", "ins2", 60.0)).unwrap().unwrap();
    let mut stale = message(run_id, a, 1, "ins2", "stale", 1.0);
    stale.message.metadata.as_mut().unwrap().created_at -= 10.0;
    state.store_reply(stale).unwrap().unwrap();
    let got = state.take_replies(&["ins2".to_string()]).unwrap();
    assert!(matches!(&got[0], ReplyLookup::ReplyUnavailable { instruction } if instruction.message_id == "ins2"));
    assert!(state.instruction_ids_of_run(run_id).unwrap().is_empty(), "answered with an error, still deleted");
    // A reply to an instruction that expired meanwhile is late.
    let mut old = message(run_id, 1, a, "", "old", 5.0);
    old.message.metadata.as_mut().unwrap().created_at -= 10.0;
    state.store_instruction(old).unwrap().unwrap();
    let late = message(run_id, a, 1, "old", "late", 1.0);
    assert_eq!(state.store_reply(late).unwrap(), Err(ReplyRejected::Gone("old".into())));
    // Several ids at once: answered in request order, waiting ones stay.
    state.store_instruction(message(run_id, 1, a, "", "p", 60.0)).unwrap().unwrap();
    state.store_instruction(message(run_id, 1, a, "", "q", 60.0)).unwrap().unwrap();
    state.store_reply(message(run_id, a, 1, "q", "q-r", 30.0)).unwrap().unwrap();
    let ids = ["q".to_string(), "nope".to_string(), "p".to_string(), "old".to_string()];
    let got = state.take_replies(&ids).unwrap();
    assert_eq!(got.len(), 4);
    assert!(matches!(&got[0], ReplyLookup::Reply(m) if m.id() == "q-r"));
    assert_eq!(got[1], ReplyLookup::InstructionUnavailable { instruction_id: "nope".into() });
    assert_eq!(got[2], ReplyLookup::Waiting);
    assert_eq!(got[3], ReplyLookup::InstructionUnavailable { instruction_id: "old".into() });
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), vec!["p".to_string()]);
}

fn deleted_messages_leave_tombstones(make: Factory<'_>) {
    let state = make();
    let run_id = new_run(&*state);
    let a = state.create_node(30.0).unwrap();
    for id in ["d1", "d2", "keep"] {
        state.store_instruction(message(run_id, 1, a, "", id, 60.0)).unwrap().unwrap();
    }
    state.store_reply(message(run_id, a, 1, "d2", "d2-r", 30.0)).unwrap().unwrap();
    state.delete_messages(&["d1".to_string(), "d2".to_string(), "never".to_string()]).unwrap();
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), vec!["keep".to_string()]);
    assert_eq!(state.next_instruction(a).unwrap().unwrap().id(), "keep");
    assert_eq!(
        state.store_reply(message(run_id, a, 1, "d1", "x", 30.0)).unwrap(),
        Err(ReplyRejected::Gone("d1".into()))
    );
    assert_eq!(
        state.store_reply(message(run_id, a, 1, "never", "y", 30.0)).unwrap(),
        Err(ReplyRejected::UnknownInstruction("never".into()))
    );
    assert_eq!(
        state.take_replies(&["d2".to_string()]).unwrap(),
        vec![ReplyLookup::InstructionUnavailable { instruction_id: "d2".into() }],
        "the reply went with its instruction"
    );
}

fn nan_heartbeat_intervals_behave_like_flower(make: Factory<'_>) {
    let state = make();
    // A NaN deadline compares false with everything, as in Flower (Python floats).
    let node = state.create_node(f64::NAN).unwrap();
    assert!(state.online_nodes().unwrap().is_empty(), "a NaN deadline is never in the future");
    let run_id = new_run(&*state);
    state.store_instruction(message(run_id, 1, node, "", "n1", 60.0)).unwrap().unwrap();
    let got = state.take_replies(&["n1".to_string()]).unwrap();
    assert!(matches!(&got[0], ReplyLookup::NodeUnavailable { .. }), "{got:?}");
    assert!(state.ack_node_heartbeat(node, 30.0).unwrap());
    assert_eq!(state.online_nodes().unwrap(), vec![node]);
    assert!(state.ack_node_heartbeat(node, f64::NAN).unwrap());
    assert!(state.online_nodes().unwrap().is_empty());
    assert!(state.ack_node_heartbeat(node, f64::INFINITY).unwrap());
    assert_eq!(state.online_nodes().unwrap(), vec![node], "an infinite deadline never lapses");
    assert_eq!(state.claim_pending_run().unwrap(), Some(run_id));
    assert!(state.ack_app_heartbeat(run_id, f64::NAN).unwrap());
    assert_eq!(status_of(&*state, run_id).status, STARTING, "a NaN deadline is never in the past either");
    assert!(state.ack_app_heartbeat(run_id, 30.0).unwrap());
    assert_eq!(status_of(&*state, run_id).status, STARTING);
    // An instruction whose expiry is NaN never counts as expired (Flower's comparison).
    let odd = message(run_id, 1, node, "", "nan-ttl", f64::NAN);
    state.store_instruction(odd).unwrap().unwrap();
    assert!(state.has_instruction_for(node).unwrap());
    assert_eq!(state.next_instruction(node).unwrap().unwrap().id(), "nan-ttl");
}

fn node_keys_follow_their_node(make: Factory<'_>) {
    let state = make();
    let a = state.create_node(30.0).unwrap();
    assert!(matches!(state.bind_public_key(a ^ 1, b"k"), Err(StateError::NodeNotFound(_))));
    assert_eq!(state.node_for_key(b"k").unwrap(), None);
    state.bind_public_key(a, b"k").unwrap();
    assert!(
        matches!(state.bind_public_key(a, b"k"), Err(StateError::PublicKeyInUse)),
        "binding the same key again is refused"
    );
    assert_eq!(state.node_for_key(b"").unwrap(), None);
    let b = state.create_node(30.0).unwrap();
    state.bind_public_key(b, &[0u8; 97]).unwrap();
    assert_eq!(state.node_for_key(&[0u8; 97]).unwrap(), Some(b));
    assert_eq!(state.node_for_key(&[0u8; 96]).unwrap(), None);
}

fn fabs_are_stored_once(make: Factory<'_>) {
    let state = make();
    state.store_fab("h", bytes::Bytes::from_static(b"first")).unwrap();
    state.store_fab("h", bytes::Bytes::from_static(b"second")).unwrap();
    assert_eq!(state.fab("h").unwrap().unwrap(), bytes::Bytes::from_static(b"first"), "a FAB is stored once");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    state.store_fab("big", bytes::Bytes::from(big.clone())).unwrap();
    assert_eq!(state.fab("big").unwrap().unwrap(), big);
    state.store_fab("", bytes::Bytes::new()).unwrap();
    assert_eq!(state.fab("").unwrap(), Some(bytes::Bytes::new()));
}
