//! Messages: delivering instructions, checking and pulling replies, expiry and deletion.

use super::{message, running_run, Factory};
use crate::state::{status, InstructionRejected, Pick, ReplyLookup, ReplyRejected, StoredMessage};

pub(super) fn instructions_reach_only_their_node_once(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
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
    assert!(state.next_instruction(b, &Pick::default()).unwrap().is_none());
    assert_eq!(state.next_instruction(a, &Pick::default()).unwrap().unwrap().id(), "m1");
    assert!(state.next_instruction(a, &Pick::default()).unwrap().is_none(), "delivered once");
    assert!(state.next_instruction(a, &Pick::default()).unwrap().is_none());
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), vec!["m1".to_string()]);
}

pub(super) fn expired_instructions_are_not_delivered(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let mut old = message(run_id, 1, a, "", "old", 10.0);
    old.message.metadata.as_mut().unwrap().created_at -= 100.0;
    state.store_instruction(old).unwrap().unwrap();
    assert!(state.next_instruction(a, &Pick::default()).unwrap().is_none());
    let lookups = state.take_replies(&["old".to_string()]).unwrap();
    assert_eq!(lookups, vec![ReplyLookup::InstructionUnavailable { instruction_id: "old".into() }]);
}

pub(super) fn instructions_are_delivered_oldest_first(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let b = state.create_node(30.0).unwrap();
    // Ids in reverse alphabetical order so that order cannot come from the id.
    for (id, dst) in [("z", a), ("y", b), ("x", a), ("w", a)] {
        state.store_instruction(message(run_id, 1, dst, "", id, 60.0)).unwrap().unwrap();
    }
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), ["z", "y", "x", "w"]);
    let delivered: Vec<String> =
        std::iter::from_fn(|| state.next_instruction(a, &Pick::default()).unwrap().map(|m| m.id().to_string()))
            .collect();
    assert_eq!(delivered, ["z", "x", "w"]);
    let got = state.next_instruction(b, &Pick::default()).unwrap().unwrap();
    assert_eq!(got, message_like(&got, run_id, 1, b, "y"), "the stored message comes back as it was");
    assert!(state.next_instruction(b, &Pick::default()).unwrap().is_none());
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap().len(), 4, "delivery does not delete");
    assert!(state.instruction_ids_of_run(run_id ^ 1).unwrap().is_empty());
}

/// The message `message()` builds, with `got`'s timestamp.
fn message_like(got: &StoredMessage, run_id: u64, src: u64, dst: u64, id: &str) -> StoredMessage {
    let mut want = message(run_id, src, dst, "", id, 60.0);
    want.message.metadata.as_mut().unwrap().created_at = got.metadata().created_at;
    want
}

pub(super) fn storing_an_instruction_twice_keeps_one(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
    let a = state.create_node(30.0).unwrap();
    let msg = message(run_id, 1, a, "", "dup", 60.0);
    assert_eq!(state.store_instruction(msg.clone()).unwrap(), Ok("dup".to_string()));
    assert_eq!(state.next_instruction(a, &Pick::default()).unwrap().unwrap().id(), "dup");
    // A retried push of the same message (same content, same id) is not a new message.
    assert_eq!(state.store_instruction(msg).unwrap(), Ok("dup".to_string()));
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), vec!["dup".to_string()]);
    assert!(state.next_instruction(a, &Pick::default()).unwrap().is_none(), "still delivered once");
    state.store_reply(message(run_id, a, 1, "dup", "dup-r", 30.0)).unwrap().unwrap();
    assert!(matches!(&state.take_replies(&["dup".to_string()]).unwrap()[0], ReplyLookup::Reply(_)));
    assert!(state.instruction_ids_of_run(run_id).unwrap().is_empty());
    assert!(state.next_instruction(a, &Pick::default()).unwrap().is_none());
    assert!(state.next_instruction(a, &Pick::default()).unwrap().is_none());
    state.store_instruction(message(run_id, 1, a, "", "next", 60.0)).unwrap().unwrap();
    assert_eq!(state.next_instruction(a, &Pick::default()).unwrap().unwrap().id(), "next");
}

pub(super) fn replies_are_checked_against_their_instruction(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
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

pub(super) fn pulling_replies_answers_and_deletes(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
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

pub(super) fn offline_destination_yields_node_unavailable(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
    let a = state.create_node(30.0).unwrap();
    state.store_instruction(message(run_id, 1, a, "", "ins", 60.0)).unwrap().unwrap();
    state.delete_node(a).unwrap();
    let got = state.take_replies(&["ins".to_string()]).unwrap();
    assert!(matches!(&got[0], ReplyLookup::NodeUnavailable { instruction } if instruction.message_id == "ins"));
}

pub(super) fn replies_expire_replace_and_outlive_nothing(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
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

pub(super) fn deleted_messages_leave_tombstones(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
    let a = state.create_node(30.0).unwrap();
    for id in ["d1", "d2", "keep"] {
        state.store_instruction(message(run_id, 1, a, "", id, 60.0)).unwrap().unwrap();
    }
    state.store_reply(message(run_id, a, 1, "d2", "d2-r", 30.0)).unwrap().unwrap();
    state.delete_messages(&["d1".to_string(), "d2".to_string(), "never".to_string()]).unwrap();
    assert_eq!(state.instruction_ids_of_run(run_id).unwrap(), vec!["keep".to_string()]);
    assert_eq!(state.next_instruction(a, &Pick::default()).unwrap().unwrap().id(), "keep");
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

pub(super) fn live_messages_are_the_stored_instructions_and_replies(make: Factory<'_>) {
    let state = make();
    let run_id = running_run(&*state);
    let a = state.create_node(30.0).unwrap();
    state.store_instruction(message(run_id, 1, a, "", "i1", 60.0)).unwrap().unwrap();
    state.store_instruction(message(run_id, 1, a, "", "i2", 60.0)).unwrap().unwrap();
    state.next_instruction(a, &Pick::default()).unwrap();
    state.store_reply(message(run_id, a, 1, "i1", "r1", 30.0)).unwrap().unwrap();
    let mut live: Vec<(String, bool)> =
        state.live_messages().unwrap().iter().map(|m| (m.message.id().to_string(), m.delivered)).collect();
    live.sort();
    assert_eq!(live, [("i1".into(), true), ("i2".into(), false), ("r1".into(), false)]);
    state.take_replies(&["i1".to_string()]).unwrap();
    let live: Vec<String> = state.live_messages().unwrap().iter().map(|m| m.message.id().to_string()).collect();
    assert_eq!(live, ["i2"], "a pulled reply and its instruction are no longer live");
}

pub(super) fn kept_objects_come_back_until_forgotten(make: Factory<'_>) {
    let state = make();
    if !state.keeps_objects() {
        // The in-memory backend keeps no objects: they live in the object store only.
        assert!(state.kept_objects(&["a".into()]).unwrap().is_empty());
        return;
    }
    let objects =
        vec![("a".to_string(), bytes::Bytes::from_static(b"x")), ("b".to_string(), bytes::Bytes::from_static(b"yz"))];
    state.keep_objects(&objects).unwrap();
    state.keep_objects(&objects[..1]).unwrap();
    assert_eq!(state.kept_objects(&["b".into(), "c".into()]).unwrap(), objects[1..]);
    let mut sizes = state.kept_object_sizes().unwrap();
    sizes.sort();
    assert_eq!(sizes, [("a".to_string(), 1), ("b".to_string(), 2)]);
    state.forget_objects(&["a".into()]).unwrap();
    assert_eq!(state.kept_object_sizes().unwrap(), [("b".to_string(), 2)]);
}

pub(super) fn runs_take_turns_and_busy_runs_are_passed_over(make: Factory<'_>) {
    let state = make();
    let (a, b, c) = (running_run(&*state), running_run(&*state), running_run(&*state));
    let node = state.create_node(30.0).unwrap();
    // Run a floods the node first; b and c send one instruction each, later.
    for i in 0..5 {
        state.store_instruction(message(a, 1, node, "", &format!("a{i}"), 60.0)).unwrap().unwrap();
    }
    state.store_instruction(message(b, 1, node, "", "b0", 60.0)).unwrap().unwrap();
    state.store_instruction(message(c, 1, node, "", "c0", 60.0)).unwrap().unwrap();
    let mut pick = Pick::default();
    let mut served = Vec::new();
    while let Some(msg) = state.next_instruction(node, &pick).unwrap() {
        pick.after_run = Some(msg.metadata().run_id);
        served.push(msg.id().to_string());
    }
    assert_eq!(served.len(), 7);
    let first_three: std::collections::HashSet<&str> = served[..3].iter().map(|s| &s[..1]).collect();
    assert_eq!(first_three.len(), 3, "each run is served once before any is served twice: {served:?}");
    let of_a: Vec<&String> = served.iter().filter(|id| id.starts_with('a')).collect();
    assert_eq!(of_a, ["a0", "a1", "a2", "a3", "a4"], "a run's own instructions go oldest first");

    state.store_instruction(message(a, 1, node, "", "a5", 60.0)).unwrap().unwrap();
    state.store_instruction(message(b, 1, node, "", "b1", 60.0)).unwrap().unwrap();
    let busy_a = Pick { after_run: None, skip_runs: vec![a] };
    assert_eq!(state.next_instruction(node, &busy_a).unwrap().unwrap().id(), "b1");
    assert!(state.next_instruction(node, &busy_a).unwrap().is_none(), "a busy run's work waits");
    assert_eq!(state.next_instruction(node, &Pick::default()).unwrap().unwrap().id(), "a5");
}

pub(super) fn only_running_runs_are_served_and_finished_ones_are_dropped(make: Factory<'_>) {
    let state = make();
    let node = state.create_node(30.0).unwrap();
    let starting = super::new_run(&*state);
    assert!(state.update_run_status(starting, status::status(status::STARTING, "", "")).unwrap());
    state.store_instruction(message(starting, 1, node, "", "early", 60.0)).unwrap().unwrap();
    assert!(state.next_instruction(node, &Pick::default()).unwrap().is_none(), "not running yet");
    assert!(state.update_run_status(starting, status::status(status::RUNNING, "", "")).unwrap());
    assert_eq!(state.next_instruction(node, &Pick::default()).unwrap().unwrap().id(), "early");

    let over = running_run(&*state);
    for i in 0..3 {
        state.store_instruction(message(over, 1, node, "", &format!("o{i}"), 60.0)).unwrap().unwrap();
    }
    assert_eq!(state.instruction_count(over).unwrap(), 3);
    assert_eq!(state.next_instruction(node, &Pick::default()).unwrap().unwrap().id(), "o0");
    state.store_reply(message(over, node, 1, "o0", "o0-r", 30.0)).unwrap().unwrap();
    let stopped = status::status(status::FINISHED, status::STOPPED, "");
    assert!(state.update_run_status(over, stopped).unwrap());
    assert!(state.next_instruction(node, &Pick::default()).unwrap().is_none(), "a finished run's work is not served");
    assert_eq!(state.drop_run_messages(over).unwrap(), 3);
    assert_eq!(state.instruction_count(over).unwrap(), 0);
    assert!(state.instruction_ids_of_run(over).unwrap().is_empty());
    assert!(state.live_messages().unwrap().iter().all(|m| m.message.metadata().run_id != over), "replies go too");
    assert_eq!(state.instruction_count(starting).unwrap(), 1, "other runs keep theirs");
}
