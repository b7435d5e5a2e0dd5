//! The behaviour every [`LinkState`] backend must show, written once.
//!
//! Each backend's tests call [`run_all`] with a factory for fresh, empty states.

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
