//! Nodes: registration, heartbeats and liveness, public key bindings.

use super::Factory;
use crate::state::{StateError, SUPERLINK_NODE_ID};

pub(super) fn nodes_register_heartbeat_and_go_offline(make: Factory<'_>) {
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

pub(super) fn a_sign_of_life_extends_liveness_but_never_shortens_it(make: Factory<'_>) {
    let state = make();
    let a = state.create_node(0.0).unwrap();
    assert!(state.online_nodes().unwrap().is_empty());
    assert!(state.keep_node_online(a, 30.0).unwrap());
    assert_eq!(state.online_nodes().unwrap(), vec![a], "a sign of life brings a node online");
    assert!(state.keep_node_online(a, 0.0).unwrap());
    assert_eq!(state.online_nodes().unwrap(), vec![a], "a shorter one does not cut the longer");
    assert!(state.ack_node_heartbeat(a, 0.0).unwrap());
    assert!(state.online_nodes().unwrap().is_empty(), "a heartbeat still sets liveness as Flower does");
    assert!(!state.keep_node_online(a ^ 1, 30.0).unwrap(), "an unknown node");
}

pub(super) fn public_keys_bind_one_node(make: Factory<'_>) {
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

pub(super) fn node_keys_follow_their_node(make: Factory<'_>) {
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
