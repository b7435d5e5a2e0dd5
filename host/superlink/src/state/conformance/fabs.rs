//! FABs: stored by hash, once.

use super::Factory;

pub(super) fn fabs_are_stored_by_hash(make: Factory<'_>) {
    let state = make();
    state.store_fab("h1", bytes::Bytes::from_static(b"zip")).unwrap();
    assert_eq!(state.fab("h1").unwrap().unwrap(), bytes::Bytes::from_static(b"zip"));
    assert!(state.fab("h2").unwrap().is_none());
}

pub(super) fn fabs_are_stored_once(make: Factory<'_>) {
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
