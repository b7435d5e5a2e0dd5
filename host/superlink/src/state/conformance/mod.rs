//! The behaviour every [`LinkState`] backend must show, written once.
//!
//! Each backend's tests call [`run_all`] with a factory for fresh, empty states; the
//! checks live in one module per area and share the builders below. Built for this
//! crate's tests, and public with the `conformance` feature (the PostgreSQL backend runs
//! it in sepal-tests, against a real server).

mod edge_values;
mod fabs;
mod logs;
mod messages;
mod nodes;
mod runs;
mod samples;

use sepal_proto::pb;

use super::{LinkState, NewRun, StoredMessage};
use crate::clock::now_secs;

/// Makes a fresh, empty state for one check.
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn LinkState>;

/// Runs every behaviour check against fresh states from `make`.
pub fn run_all(make: Factory<'_>) {
    runs::runs_start_pending_and_follow_transitions(make);
    runs::claim_hands_out_each_pending_run_once(make);
    runs::silent_serverapp_fails_the_run(make);
    runs::run_fields_round_trip(make);
    runs::stopping_and_failing_keep_their_details(make);
    runs::pending_runs_are_claimed_in_submission_order(make);
    runs::contexts_round_trip(make);
    logs::logs_are_returned_after_a_stamp(make);
    logs::logs_keep_order_across_many_entries(make);
    fabs::fabs_are_stored_by_hash(make);
    fabs::fabs_are_stored_once(make);
    nodes::nodes_register_heartbeat_and_go_offline(make);
    nodes::a_sign_of_life_extends_liveness_but_never_shortens_it(make);
    nodes::public_keys_bind_one_node(make);
    nodes::node_keys_follow_their_node(make);
    messages::instructions_reach_only_their_node_once(make);
    messages::expired_instructions_are_not_delivered(make);
    messages::instructions_are_delivered_oldest_first(make);
    messages::storing_an_instruction_twice_keeps_one(make);
    messages::replies_are_checked_against_their_instruction(make);
    messages::pulling_replies_answers_and_deletes(make);
    messages::offline_destination_yields_node_unavailable(make);
    messages::replies_expire_replace_and_outlive_nothing(make);
    messages::deleted_messages_leave_tombstones(make);
    messages::live_messages_are_the_stored_instructions_and_replies(make);
    messages::kept_objects_come_back_until_forgotten(make);
    messages::runs_take_turns_and_busy_runs_are_passed_over(make);
    messages::only_running_runs_are_served_and_finished_ones_are_dropped(make);
    edge_values::ids_span_the_whole_u64_range(make);
    edge_values::nan_heartbeat_intervals_behave_like_flower(make);
}

/// A message from `src` to `dst` with an empty payload and a one-object tree, stamped now.
pub fn message(run_id: u64, src: u64, dst: u64, reply_to: &str, id: &str, ttl: f64) -> StoredMessage {
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

/// A run whose ServerApp is running (nodes are only handed instructions of such runs).
fn running_run(state: &dyn LinkState) -> u64 {
    let run_id = new_run(state);
    for s in [super::status::STARTING, super::status::RUNNING] {
        assert!(state.update_run_status(run_id, super::status::status(s, "", "")).unwrap());
    }
    run_id
}

fn status_of(state: &dyn LinkState, run_id: u64) -> pb::RunStatus {
    state.run(run_id).unwrap().unwrap().status.unwrap()
}
