//! Values at the edges of what a backend stores: ids above `i64::MAX`, NaN and infinite
//! heartbeat intervals and TTLs.

use super::{message, new_run, status_of, Factory};
use crate::state::status::{status, RUNNING, STARTING};
use crate::state::{Pick, ReplyLookup};

pub(super) fn ids_span_the_whole_u64_range(make: Factory<'_>) {
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
    for s in [STARTING, RUNNING] {
        assert!(state.update_run_status(high_run, status(s, "", "")).unwrap());
    }
    let got = state.next_instruction(high_node, &Pick::default()).unwrap().unwrap();
    assert_eq!((got.metadata().run_id, got.metadata().dst_node_id), (high_run, high_node));
    state.store_reply(message(high_run, high_node, 1, "hi", "hi-r", 30.0)).unwrap().unwrap();
    assert!(matches!(&state.take_replies(&["hi".to_string()]).unwrap()[0], ReplyLookup::Reply(m) if m.id() == "hi-r"));
    assert!(state.ack_node_heartbeat(high_node, 30.0).unwrap());
    state.delete_node(high_node).unwrap();
    assert_eq!(state.node_for_key(b"high").unwrap(), None);
    assert!(!state.online_nodes().unwrap().contains(&high_node));
}

pub(super) fn nan_heartbeat_intervals_behave_like_flower(make: Factory<'_>) {
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
    assert!(state.update_run_status(run_id, status(RUNNING, "", "")).unwrap());
    let odd = message(run_id, 1, node, "", "nan-ttl", f64::NAN);
    state.store_instruction(odd).unwrap().unwrap();
    assert_eq!(state.next_instruction(node, &Pick::default()).unwrap().unwrap().id(), "nan-ttl");
}
