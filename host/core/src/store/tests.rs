//! Store behaviour, following Flower 1.20's `InMemoryObjectStore`.

use bytes::Bytes;
use sepal_proto::pb;

use super::*;
use crate::objects::{encode_object, message_to_objects, ObjectType};
use crate::records::{Array, ArrayRecord, Error, Message, Metadata, MetricRecord, RecordDict};

fn metadata(dst: u64) -> Metadata {
    Metadata {
        run_id: 7,
        src_node_id: 1,
        dst_node_id: dst,
        created_at: 1750000000.0,
        ttl: 60.0,
        message_type: "train".into(),
        ..Metadata::default()
    }
}

fn content() -> RecordDict {
    let w = Array::from_f32(&[1.0, 2.0], &[2]).unwrap();
    let arrays = ArrayRecord::new().with("w", w.clone()).with("w2", w);
    let metrics = MetricRecord::new().with("loss", 0.25.into());
    RecordDict::new().with("arrays", arrays.into()).with("metrics", metrics.into())
}

/// The same content sent to two nodes: only the Message objects differ.
fn message(dst: u64) -> Message {
    Message::with_content(metadata(dst), content())
}

/// `message(2)`'s objects as flwr 1.20.0 computes them; `message(3)` differs only in
/// its Message object, [`PYTHON_ID_3`].
const PYTHON_IDS: [&str; 6] = [
    "98cf989024fca817c43ef779fbd3be783fb93ad32cc470e064f82efb506377d6",
    "c6eb924741274b78d8d2f566698064fffeaa0189b313a730d2e40ad2bdb1c9c2",
    "4edf135c9667eeb9a0a0a82acb19c58de26eb08b5e9ed26ba33b40c11fd9a43a",
    "c6a44e193e88b3696815db8386a7c9f7818c3e17e2a4c5ea9a5013f66403c55f",
    "09e3c659dac33a2bdf631f894d80281a511b7c27f2a0dfdbe73e46163a517989",
    "153d7778b8e51c967ef4e77e8140e945e7e50be17ae2c7ab1bf2934b776de41b",
];
const PYTHON_ID_3: &str = "b060e3328071ecf7011121ca30c8424b201249b63a5461a63b1b92516635ebdf";

type Parts = (pb::ObjectTree, Vec<(String, Bytes)>, String);

fn parts(dst: u64) -> Parts {
    message_to_objects(&message(dst))
}

fn ids(objects: &[(String, Bytes)]) -> Vec<String> {
    objects.iter().map(|(id, _)| id.clone()).collect()
}

fn push_all(store: &ObjectStore, objects: &[(String, Bytes)]) {
    for (id, bytes) in objects {
        assert_eq!(store.put(id, bytes.clone()), Ok(true), "{id}");
    }
}

fn available(store: &ObjectStore, id: &str) -> bool {
    matches!(store.get(id), ObjectLookup::Available(_))
}

#[test]
fn preregister_requests_each_missing_object_once() {
    let store = ObjectStore::new();
    let (tree, objects, _) = parts(2);
    // chunk, array, array record, metric record, record dict, message (ids from flwr 1.20)
    assert_eq!(ids(&objects), PYTHON_IDS);
    assert_eq!(store.preregister(1, &tree).unwrap(), ids(&objects));
    assert_eq!(store.preregister(1, &tree).unwrap(), ids(&objects), "still pending");
    push_all(&store, &objects);
    assert!(store.preregister(1, &tree).unwrap().is_empty());
    assert_eq!(store.len(), 6);
}

#[test]
fn same_content_in_two_messages_is_requested_once() {
    let store = ObjectStore::new();
    let (tree_a, objects_a, _) = parts(2);
    let (tree_b, _, id_b) = parts(3);
    assert_eq!(id_b, PYTHON_ID_3);
    store.preregister(1, &tree_a).unwrap();
    push_all(&store, &objects_a);
    assert_eq!(store.preregister(1, &tree_b).unwrap(), [id_b]);
}

#[test]
fn get_reports_not_found_pending_and_available() {
    let store = ObjectStore::new();
    let (tree, objects, id) = parts(2);
    assert_eq!(store.get(&id), ObjectLookup::NotFound);
    store.preregister(1, &tree).unwrap();
    assert_eq!(store.get(&id), ObjectLookup::Pending);
    push_all(&store, &objects);
    let (_, bytes) = objects.last().unwrap();
    assert_eq!(store.get(&id), ObjectLookup::Available(bytes.clone()));
}

#[test]
fn put_rejects_wrong_hash_and_unregistered_ids() {
    let store = ObjectStore::new();
    let (tree, objects, _) = parts(2);
    let (chunk_id, chunk) = &objects[0];
    assert_eq!(store.put(chunk_id, chunk.clone()), Ok(false), "not preregistered");
    store.preregister(1, &tree).unwrap();
    let (other_id, other) = &objects[1];
    assert_eq!(store.put(chunk_id, other.clone()), Ok(false), "wrong hash");
    assert_eq!(store.put(&chunk_id.to_uppercase(), chunk.clone()), Ok(false));
    assert_eq!(store.get(chunk_id), ObjectLookup::Pending);
    assert_eq!(store.put(chunk_id, chunk.clone()), Ok(true));
    assert_eq!(store.put(chunk_id, chunk.clone()), Ok(true), "already stored");
    assert_eq!(store.put(other_id, other.clone()), Ok(true));
}

#[test]
fn malformed_object_with_matching_hash_is_an_error() {
    let store = ObjectStore::new();
    let garbage = Bytes::from_static(b"Array  99\x00short");
    let id = objects::object_id(&garbage);
    let tree = pb::ObjectTree { object_id: id.clone(), children: vec![] };
    store.preregister(1, &tree).unwrap();
    let err = store.put(&id, garbage).unwrap_err();
    assert!(matches!(err, ObjectError::Malformed { .. }));
    let text = err.to_string();
    assert!(text.starts_with(&format!("Object with ID '{id}' has an unexpected structure.")));
}

#[test]
fn put_rejects_children_other_than_the_tree_registered() {
    let store = ObjectStore::new();
    let (chunk_id, _) = encode_object(ObjectType::ArrayChunk, &[], b"abc");
    let (array_id, array) = encode_object(ObjectType::Array, &[chunk_id], b"{}");
    let tree = pb::ObjectTree { object_id: array_id.clone(), children: vec![] };
    store.preregister(1, &tree).unwrap();
    assert!(matches!(store.put(&array_id, array), Err(ObjectError::Malformed { .. })));
}

#[test]
fn preregister_rejects_invalid_ids_atomically() {
    let store = ObjectStore::new();
    let (mut tree, _, _) = parts(2);
    tree.children[0].object_id = "not-an-id".into();
    let err = store.preregister(1, &tree).unwrap_err();
    assert_eq!(err, ObjectError::InvalidId("not-an-id".into()));
    assert!(store.is_empty());
}

#[test]
fn delete_keeps_shared_children() {
    let store = ObjectStore::new();
    let (tree_a, objects_a, id_a) = parts(2);
    let (tree_b, objects_b, id_b) = parts(3);
    store.preregister(1, &tree_a).unwrap();
    store.preregister(1, &tree_b).unwrap();
    push_all(&store, &objects_a);
    push_all(&store, &objects_b[objects_b.len() - 1..]);
    assert_eq!(store.len(), 7);

    store.delete(&tree_a.children[0].object_id);
    assert_eq!(store.len(), 7, "a referenced object is not deleted");

    store.delete(&id_a);
    assert_eq!(store.get(&id_a), ObjectLookup::NotFound);
    assert_eq!(store.len(), 6);
    assert!(ids(&objects_b).iter().all(|id| available(&store, id)));
    assert_eq!(store.object_tree(&id_b).unwrap(), tree_b);

    store.delete(&id_b);
    assert!(store.is_empty());
    assert_eq!(store.total_bytes(), 0);
}

#[test]
fn delete_follows_repeated_children() {
    // The same Array under two ArrayRecords of one message.
    let w = Array::from_f64(&[1.0], &[1]).unwrap();
    let content = RecordDict::new()
        .with("a", ArrayRecord::new().with("w", w.clone()).into())
        .with("b", ArrayRecord::new().with("x", w).into());
    let message = Message::with_content(metadata(2), content);
    let store = ObjectStore::new();
    let (tree, id) = store.insert_message(1, &message);
    assert_eq!(store.len(), 6);
    assert_eq!(store.object_tree(&id).unwrap(), tree);
    store.delete(&id);
    assert!(store.is_empty());
}

#[test]
fn delete_run_drops_only_unshared_objects() {
    let store = ObjectStore::new();
    let (tree_a, objects_a, id_a) = parts(2);
    let (tree_b, objects_b, id_b) = parts(3);
    store.preregister(1, &tree_a).unwrap();
    push_all(&store, &objects_a);
    store.preregister(2, &tree_b).unwrap();
    push_all(&store, &objects_b[objects_b.len() - 1..]);

    store.delete_run(1);
    assert_eq!(store.get(&id_a), ObjectLookup::NotFound);
    assert!(ids(&objects_b).iter().all(|id| available(&store, id)));
    store.delete_run(1);

    store.delete_run(2);
    assert_eq!(store.get(&id_b), ObjectLookup::NotFound);
    assert!(store.is_empty());
    assert_eq!(store.total_bytes(), 0);
}

#[test]
fn insert_message_stores_a_synthetic_reply() {
    let store = ObjectStore::new();
    let reply = Message::with_error(metadata(1), Error::new(Error::MESSAGE_UNAVAILABLE, "gone"));
    let (tree, id) = store.insert_message(9, &reply);
    assert_eq!(id, crate::objects::message_id(&reply));
    assert!(tree.children.is_empty());
    assert!(available(&store, &id));
    assert_eq!(store.object_tree(&id).unwrap(), tree);
    store.delete_run(9);
    assert!(store.is_empty());
}

#[test]
fn a_taken_message_is_encoded_whole_and_gone_from_the_store_before_it_is() {
    use prost::Message as _;
    let store = ObjectStore::new();
    let (tree2, objects2, id2) = parts(2);
    let (tree3, objects3, _) = parts(3);
    store.preregister(1, &tree2).unwrap();
    store.preregister(1, &tree3).unwrap();
    push_all(&store, &objects2);
    push_all(&store, &objects3);
    let wire = message(2).to_wire_pb();

    let mut told = Vec::new();
    let (meta, encoded) = store
        .take_encoded_message(&wire, &tree2, |deleted| {
            // Deleted before the encoding is built: a waiting upload may go on.
            assert!(!store.contains(&id2));
            told = deleted;
        })
        .unwrap();
    assert_eq!(told, vec![(id2.clone(), objects2.iter().find(|(id, _)| *id == id2).unwrap().1.len())]);
    assert_eq!(meta.dst_node_id, 2);
    let decoded = Message::try_from(pb::Message::decode(encoded.as_slice()).unwrap()).unwrap();
    assert_eq!(decoded.content, message(2).content);
    // The arrays are shared with message 3, which is still whole.
    assert!(ids(&objects3).iter().all(|id| available(&store, id)));
}

#[test]
fn total_bytes_counts_available_objects() {
    let store = ObjectStore::new();
    let (tree, objects, _) = parts(2);
    store.preregister(1, &tree).unwrap();
    assert_eq!(store.total_bytes(), 0);
    push_all(&store, &objects);
    let total: usize = objects.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(store.total_bytes(), total);
}

#[test]
fn object_tree_of_unknown_id_is_missing() {
    let store = ObjectStore::new();
    let id = "0".repeat(64);
    assert_eq!(store.object_tree(&id), Err(ObjectError::Missing(id.clone())));
}

#[test]
fn concurrent_puts() {
    let store = ObjectStore::new();
    let all: Vec<Parts> = (2..10).map(parts).collect();
    for (tree, _, _) in &all {
        store.preregister(1, tree).unwrap();
    }
    std::thread::scope(|s| {
        for (_, objects, _) in &all {
            s.spawn(|| push_all(&store, objects));
        }
    });
    assert_eq!(store.len(), 5 + all.len());
    for (_, _, id) in &all {
        store.delete(id);
    }
    assert!(store.is_empty());
}

#[test]
fn a_run_is_charged_for_what_it_holds_until_it_is_deleted() {
    let store = ObjectStore::new();
    let (tree, objects, id) = parts(2);
    let bytes: usize = objects.iter().map(|(_, b)| b.len()).sum();
    store.preregister(1, &tree).unwrap();
    assert_eq!(store.run_bytes(1), objects.len() * OBJECT_OVERHEAD);
    push_all(&store, &objects);
    assert_eq!(store.run_bytes(1), objects.len() * OBJECT_OVERHEAD + bytes);
    // The same tree again charges nothing more; another run is charged in full.
    store.preregister(1, &tree).unwrap();
    store.preregister(7, &tree).unwrap();
    assert_eq!(store.run_bytes(1), store.run_bytes(7));

    store.delete_run(7);
    assert_eq!(store.run_bytes(7), 0);
    store.delete(&id);
    assert_eq!(store.run_bytes(1), 0);
    assert!(store.is_empty());
}

#[test]
fn a_run_at_its_limit_stores_nothing_more() {
    let (tree, objects, _) = parts(2);
    let bytes: usize = objects.iter().map(|(_, b)| b.len()).sum();
    let registered = objects.len() * OBJECT_OVERHEAD;
    // Room for the registrations and all the bytes but one.
    let store = ObjectStore::with_run_limit(registered + bytes - 1);
    store.preregister(1, &tree).unwrap();
    let mut refused = Vec::new();
    for (id, content) in &objects {
        match store.put(id, content.clone()) {
            Ok(stored) => assert!(stored),
            Err(ObjectError::RunQuota { run_id: 1, limit, .. }) => {
                assert_eq!(limit, registered + bytes - 1);
                refused.push(id.clone());
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(refused.len(), 1, "only the last object to come no longer fits");
    assert_eq!(store.get(&refused[0]), ObjectLookup::Pending, "a refused object is not stored");
    assert!(store.run_bytes(1) < registered + bytes);

    // Registering a message that does not fit stores nothing; another run is not affected.
    let (other_tree, _, _) = parts(3);
    let before = store.len();
    assert!(matches!(store.preregister(1, &other_tree), Err(ObjectError::RunQuota { .. })));
    assert_eq!(store.len(), before);
    store.preregister(2, &other_tree).unwrap();
    assert!(matches!(store.try_insert_message(1, &message(4)), Err(ObjectError::RunQuota { .. })));
    let small = Message::with_content(metadata(4), RecordDict::new());
    assert!(store.try_insert_message(3, &small).is_ok());
}
