//! Object ids checked against vectors computed by real flwr 1.20.0
//! (`tools/flower-object-vectors.py`, plus the "exotic" messages of
//! `host/core/testdata/exotic-vectors.py`).

use std::collections::HashMap;

use bytes::Bytes;
use sepal_proto::pb;

use super::json::{self, Json};
use super::*;
use crate::records::{
    Array, ArrayRecord, ConfigRecord, ConfigValue, Error, Message, Metadata, MetricRecord, MetricValue, RecordDict,
};

const PORTABLE: [(&str, &str); 7] = [
    ("ArrayChunk", "496678a33a41eaccf1ee13f42da21ad64663cd0796f2ee24208f0af2306fe483"),
    ("Array", "57be25b272dae63275ec6ea4e535174d18e7ac3e516b2c415b080c765aedacf0"),
    ("ArrayRecord", "3812f918bd0be9590e4ad9eab172e6cda8e22892bfaefcf5a09baab42e3d7d30"),
    ("MetricRecord", "42e73cceb5d64ed736e4fd8e044370601eee72d854c3cf8b7e595d288f67ce44"),
    ("ConfigRecord", "15749d8921cf4cf8ff4414426661a042c5bdbc53764f949f7ac5723c9b2381fc"),
    ("RecordDict", "50f6839671a99f04473723cfc5ea3c1d513b330c59004a8c892a7916ba377692"),
    ("Message", "5cf70429f90fa8dc813dfb6480aea38469db144f9647bab3cd9fc53b33529103"),
];

const ERROR_REPLY: &str = "0317f69357bfd375925c3379e95460abcbfa05dcb20399c123bc59f32bbbcf5f";

const CHUNKED: [(&str, &str); 10] = [
    ("ArrayChunk", "496678a33a41eaccf1ee13f42da21ad64663cd0796f2ee24208f0af2306fe483"),
    ("Array", "57be25b272dae63275ec6ea4e535174d18e7ac3e516b2c415b080c765aedacf0"),
    ("ArrayChunk", "7365b19c65fd25efa30faa4d219f849a664e071976989b4cf0939b3595d511c4"),
    ("ArrayChunk", "a8c073ffa3779a2266beded4e8e43454c8fdc9775b9a57580d936132f3913595"),
    ("Array", "e971a17d0013dc2a85e24f42694ba3ab5baf7249dc6fa9e33d23ce7db20a220c"),
    ("ArrayRecord", "34960c03be210b3346977ff55941ca08ef91ab03ae0b0212bc4763373fcf5b16"),
    ("MetricRecord", "42e73cceb5d64ed736e4fd8e044370601eee72d854c3cf8b7e595d288f67ce44"),
    ("ConfigRecord", "15749d8921cf4cf8ff4414426661a042c5bdbc53764f949f7ac5723c9b2381fc"),
    ("RecordDict", "e65f1ba6e18f8dfa1647b714e8223076005e672db3c17e222664fb913da46790"),
    ("Message", "6edbbb2771fead95c425b6d247773698026c863c05f04f4c5b991a701da8d57e"),
];

/// Non-ASCII and escaped keys, every record value kind, a 0-d and an empty array, a `-0.0`
/// ttl and u64 extremes in the metadata.
const EXOTIC: [(&str, &str); 13] = [
    ("ArrayChunk", "1a7f05de3e798637cecdf191cedcc56f278d0a3880615fe91989880dd0a6118b"),
    ("Array", "28010400fada770a9fb8decfea4a96772fa2fa7eb6afb62d6287390a47e0f9f1"),
    ("ArrayChunk", "37660522d49caf6e395f84fa655d58745f682fb1ab58f150623f60d3c9ef0af5"),
    ("Array", "6c6ecbfd5fd2d9684c5c6a0dc0b78e30527131b81a2e63e081120cfe38b6ff8a"),
    ("ArrayChunk", "3cd20aa3fec4f949d721acfc6fcaa2937fa5e63b22f2c638a3b8af9bb247f3d9"),
    ("Array", "6878761876e40d1629466ec4ef64fca3e46fc9a9c9d012bdc7014fa68e1d38f2"),
    ("ArrayChunk", "d5b3b0838521dae819bd1cb114f3dbf09c221811c28e6dc744d21c5e1c79ac26"),
    ("Array", "3aa53651f14dd22cdc34a5f386e5f8f55138124df074ad196b60470fa7f11a5c"),
    ("ArrayRecord", "d42fd57013777bb95df3248573fe5105df8b890c24647abbbd5e46b9e27faf0c"),
    ("MetricRecord", "12f06635aec5fbbf01872ff84184cc64a0e04682cba1acc1b2cabe0189bdf8dc"),
    ("ConfigRecord", "b259b611c50196218f1b5103d3e7d61a620549f0f8d1c25dc668592a3d76244b"),
    ("RecordDict", "a71ecc663a2376ff5fe7d7b4d7d2daed9e2ff29ee9f661c31a125145a4b2d165"),
    ("Message", "33562bb8b27dab59caa1dc48e67c1c2da4e5685b84f6304e14ca4eb5ad8abff7"),
];

/// An error message with a negative code, non-ASCII reason and zero ttl.
const EXOTIC_ERROR: &str = "e1b6492629067f36e31358a899542888409d48ed1e64c62fa54a0802891ad3a3";

fn small() -> Array {
    Array::from_i64(&[0, 1, 2, 3, 4, 5], &[2, 3]).unwrap()
}

fn metadata() -> Metadata {
    Metadata {
        run_id: 1234,
        src_node_id: 1,
        dst_node_id: 5678,
        group_id: "1".into(),
        created_at: 1750000000.5,
        ttl: 43200.0,
        message_type: "train".into(),
        ..Metadata::default()
    }
}

fn metrics() -> MetricRecord {
    MetricRecord::new().with("loss", 0.5.into()).with("n", 10i64.into()).with("ids", vec![1i64, 2, 3].into())
}

fn config() -> ConfigRecord {
    ConfigRecord::new()
        .with("lr", 0.1.into())
        .with("flag", true.into())
        .with("name", "x".into())
        .with("tags", vec!["a".to_owned(), "b".to_owned()].into())
}

fn content(arrays: ArrayRecord) -> RecordDict {
    RecordDict::new().with("arrays", arrays.into()).with("metrics", metrics().into()).with("config", config().into())
}

fn portable() -> Message {
    let arrays = ArrayRecord::new().with("w", small()).with("w_again", small());
    Message::with_content(metadata(), content(arrays))
}

fn error_reply() -> Message {
    let md = Metadata { src_node_id: 5678, dst_node_id: 1, reply_to_message_id: PORTABLE[6].1.into(), ..metadata() };
    Message::with_error(md, Error::new(2, "boom"))
}

fn exotic() -> Message {
    let md = Metadata {
        run_id: u64::MAX,
        src_node_id: 7,
        dst_node_id: 1 << 63,
        group_id: "gé".into(),
        ttl: -0.0,
        message_type: "query.custom".into(),
        ..Metadata::default()
    };
    let arrays = ArrayRecord::new()
        .with("f32", Array::from_f32(&[0.0, 0.5, 1.0, 1.5, 2.0, 2.5], &[2, 3]).unwrap())
        .with("f64scalar", Array::from_f64(&[2.5], &[]).unwrap())
        .with("empty", Array::from_f32(&[], &[0]).unwrap())
        .with("i64", Array::from_i64(&[-1, 1 << 40], &[2]).unwrap());
    let metrics = MetricRecord::new()
        .with("d", (-0.0).into())
        .with("i", (-5i64).into())
        .with("u", (1u64 << 63).into())
        .with("dl", vec![0.5, -1.0].into())
        .with("il", vec![-1i64, 0, 1].into())
        .with("ul", vec![u64::MAX, 1].into())
        .with("el", MetricValue::DoubleList(vec![]));
    let config = ConfigRecord::new()
        .with("b", false.into())
        .with("s", "héllo".into())
        .with("by", vec![0u8, 1].into())
        .with("bl", vec![true, false].into())
        .with("sl", vec!["x".to_owned(), "ÿ".to_owned()].into())
        .with("byl", vec![b"a".to_vec(), vec![]].into())
        .with("d", 1e-300.into())
        .with("i", 0i64.into())
        .with("el", ConfigValue::BoolList(vec![]))
        .with("", "empty key".into());
    let content = RecordDict::new()
        .with("ключ", arrays.into())
        .with("😀", metrics.clone().into())
        .with("q\"\\\n\u{7f}/", config.into())
        .with("again", metrics.into());
    Message::with_content(md, content)
}

fn exotic_error() -> Message {
    let md = Metadata {
        src_node_id: 1,
        dst_node_id: 1,
        reply_to_message_id: "abc".into(),
        created_at: 1750000001.25,
        message_type: "system".into(),
        ..Metadata::default()
    };
    Message::with_error(md, Error::new(-3, "ünïcode"))
}

/// Every object, in order, has the expected type and id.
fn assert_objects(objects: &[(String, Bytes)], expected: &[(&str, &str)]) {
    let found: Vec<(ObjectType, &str)> =
        objects.iter().map(|(id, bytes)| (ObjectHead::parse(bytes).unwrap().0, id.as_str())).collect();
    let expected: Vec<(ObjectType, &str)> =
        expected.iter().map(|(t, id)| (ObjectType::from_name(t).unwrap(), *id)).collect();
    assert_eq!(found, expected);
    for (id, bytes) in objects {
        validate_object(id, bytes).unwrap();
    }
}

fn tree_ids(tree: &pb::ObjectTree) -> Vec<String> {
    let mut out: Vec<String> = tree.children.iter().flat_map(tree_ids).collect();
    out.push(tree.object_id.clone());
    out
}

fn round_trip(message: &Message) -> Message {
    let (tree, objects, id) = message_to_objects(message);
    let map: HashMap<String, Bytes> = objects.into_iter().collect();
    let mut wire = message.to_wire_pb();
    wire.metadata.as_mut().unwrap().message_id = id;
    message_from_objects(&wire, &tree, &map).unwrap()
}

fn with_id(message: &Message, id: &str) -> Message {
    let mut m = message.clone();
    m.metadata.message_id = id.to_owned();
    m
}

#[test]
fn portable_vector() {
    let (tree, objects, id) = message_to_objects(&portable());
    assert_eq!(id, PORTABLE[6].1);
    assert_objects(&objects, &PORTABLE);
    let ids: Vec<&str> = PORTABLE.iter().map(|(_, id)| *id).collect();
    assert_eq!(tree_ids(&tree), ids);
    assert_eq!(message_id(&portable()), PORTABLE[6].1);
}

#[test]
fn error_reply_vector() {
    let (tree, objects, id) = message_to_objects(&error_reply());
    assert_eq!(id, ERROR_REPLY);
    assert_objects(&objects, &[("Message", ERROR_REPLY)]);
    assert!(tree.children.is_empty());
    let (_, children, body) = ObjectHead::parse(&objects[0].1).unwrap();
    assert!(children.is_empty());
    assert_eq!(body.len(), 114);
}

/// A message with an array of three chunks, two of them equal.
fn chunked() -> Message {
    let big = Array::from_f32(&vec![0.0; 15_728_608], &[15_728_608]).unwrap();
    assert_eq!(big.data.len(), 3 * MAX_ARRAY_CHUNK_SIZE);
    let arrays = ArrayRecord::new().with("w", small()).with("big", big);
    Message::with_content(metadata(), content(arrays))
}

#[test]
fn chunked_vector() {
    let message = chunked();
    let (tree, objects, id) = message_to_objects(&message);
    assert_eq!(id, CHUNKED[9].1);
    assert_objects(&objects, &CHUNKED);
    let (_, children, body) = ObjectHead::parse(&objects[4].1).unwrap();
    assert_eq!(children, [CHUNKED[2].1, CHUNKED[3].1]);
    assert!(std::str::from_utf8(body).unwrap().ends_with("\"arraychunk_ids\": [0, 1, 1]}"));
    let array_record = &tree.children[0].children[0];
    assert_eq!(array_record.children[1].children.len(), 2);
    assert_eq!(round_trip(&message), with_id(&message, &id));
}

#[test]
fn exotic_vectors() {
    let (tree, objects, id) = message_to_objects(&exotic());
    assert_objects(&objects, &EXOTIC);
    assert_eq!(tree.children[0].children.len(), 3, "the repeated record is listed once");
    assert_eq!(message_id(&exotic_error()), EXOTIC_ERROR);
    assert_eq!(round_trip(&exotic()), with_id(&exotic(), &id));
}

#[test]
fn round_trips_vectors() {
    for message in [portable(), error_reply(), exotic_error()] {
        let id = message_id(&message);
        assert_eq!(round_trip(&message), with_id(&message, &id));
    }
}

#[test]
fn message_id_ignores_the_stored_message_id() {
    let mut m = portable();
    m.metadata.message_id = "whatever".into();
    assert_eq!(message_id(&m), PORTABLE[6].1);
}

#[test]
fn json_escapes_like_python() {
    let body = json::string_map([("ключ😀\u{7f}\"\\\n\t\u{1}/", "x")].into_iter());
    let python = r#"{"\u043a\u043b\u044e\u0447\ud83d\ude00\u007f\"\\\n\t\u0001/": "x"}"#;
    assert_eq!(body, python);
    let Json::Object(items) = Json::parse(python.as_bytes()).unwrap() else {
        panic!("not an object");
    };
    assert_eq!(items[0].0, "ключ😀\u{7f}\"\\\n\t\u{1}/");
    assert!(Json::parse(br#"{"\ud83d": "x"}"#).is_err(), "lone surrogate");
    assert!(Json::parse(br#"{"a": "x"} trailing"#).is_err());
}

fn obj(text: &[u8]) -> (String, Vec<u8>) {
    (object_id(text), text.to_vec())
}

fn reason(id: &str, bytes: &[u8]) -> String {
    match validate_object(id, bytes) {
        Err(ObjectError::Malformed { reason, .. }) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn validate_object_checks_like_flower() {
    let (id, bytes) = obj(b"ArrayChunk  3\x00abc");
    validate_object(&id, &bytes).unwrap();
    let upper = "A".repeat(64);
    let (id, bytes) = obj(format!("RecordDict {upper} 0\x00").as_bytes());
    validate_object(&id, &bytes).unwrap();
    let err = validate_object(&"0".repeat(64), b"ArrayChunk  3\x00abc").unwrap_err();
    assert!(matches!(err, ObjectError::HashMismatch { .. }));
    for (bad, why) in [
        (&b"ArrayChunk  3abc"[..], "could not be split"),
        (b"ArrayChunk 3\x00abc", "Unexpected format for object head"),
        (b"ArrayChunk a b 3\x00abc", "Unexpected format for object head"),
        (b"Array xyz 3\x00abc", "invalid object ID (xyz)"),
        (b"Custom  3\x00abc", "Object of type Custom is not supported"),
        (b"ArrayChunk  4\x00abc", "expected 4 bytes but got 3"),
        (b"ArrayChunk  +3\x00abc", "expected +3 bytes"),
        (b"Array\xff  3\x00abc", "not UTF-8"),
    ] {
        let (id, bytes) = obj(bad);
        let text = reason(&id, &bytes);
        assert!(text.contains(why), "{text:?} should mention {why:?}");
    }
    let (id, bytes) = obj(b"ArrayChunk  4\x00abc");
    let shown = validate_object(&id, &bytes).unwrap_err().to_string();
    assert!(shown.starts_with(&format!("Object with ID '{id}' has an unexpected structure.")));
}

#[test]
fn object_ids() {
    assert!(is_valid_object_id(&"a".repeat(64)));
    assert!(is_valid_object_id(&"F".repeat(64)));
    assert!(!is_valid_object_id(&"a".repeat(63)));
    assert!(!is_valid_object_id(&"g".repeat(64)));
    assert!(!is_valid_object_id(""));
}

/// Objects and tree of the portable message, for tampering.
fn portable_parts() -> (pb::Message, pb::ObjectTree, HashMap<String, Bytes>) {
    let (tree, objects, id) = message_to_objects(&portable());
    let mut wire = portable().to_wire_pb();
    wire.metadata.as_mut().unwrap().message_id = id;
    (wire, tree, objects.into_iter().collect())
}

#[test]
fn from_objects_reports_missing_and_tampered_objects() {
    let (wire, tree, mut map) = portable_parts();
    map.remove(PORTABLE[3].1);
    let err = message_from_objects(&wire, &tree, &map).unwrap_err();
    assert_eq!(err, ObjectError::Missing(PORTABLE[3].1.into()));

    let (wire, tree, mut map) = portable_parts();
    map.insert(PORTABLE[0].1.into(), Bytes::from_static(b"ArrayChunk  1\x00x"));
    let err = message_from_objects(&wire, &tree, &map).unwrap_err();
    assert!(matches!(err, ObjectError::HashMismatch { .. }), "{err}");
}

#[test]
fn from_objects_reports_tree_errors() {
    let (wire, mut tree, map) = portable_parts();
    tree.children[0].children.swap(1, 2);
    let err = message_from_objects(&wire, &tree, &map).unwrap_err();
    assert!(matches!(err, ObjectError::TreeMismatch { .. }), "{err}");

    // A Message whose child is an ArrayRecord, with a matching tree.
    let (mut wire, mut tree, mut map) = portable_parts();
    let array_record = tree.children[0].children[0].clone();
    let (_, _, body) = ObjectHead::parse(&map[PORTABLE[6].1]).unwrap();
    let children = [array_record.object_id.clone()];
    let (msg_id, msg) = encode_object(ObjectType::Message, &children, body);
    map.insert(msg_id.clone(), msg);
    tree = pb::ObjectTree { object_id: msg_id.clone(), children: vec![array_record] };
    wire.metadata.as_mut().unwrap().message_id = msg_id;
    let err = message_from_objects(&wire, &tree, &map).unwrap_err();
    assert!(matches!(err, ObjectError::UnexpectedType { .. }), "{err}");

    let (mut wire, tree, map) = portable_parts();
    wire.metadata.as_mut().unwrap().message_id = ERROR_REPLY.into();
    let err = message_from_objects(&wire, &tree, &map).unwrap_err();
    assert!(matches!(err, ObjectError::MessageIdMismatch { .. }), "{err}");
}

#[test]
fn from_objects_checks_bodies_against_children() {
    let (wire, mut tree, mut map) = portable_parts();
    // A RecordDict whose body omits one of its children.
    let children: Vec<String> = tree.children[0].children.iter().map(|t| t.object_id.clone()).collect();
    let body = json::string_map([("arrays", children[0].as_str())].into_iter());
    let (rd_id, rd) = encode_object(ObjectType::RecordDict, &children, body.as_bytes());
    let (msg_id, msg) = {
        let old = &map[PORTABLE[6].1];
        let (_, _, body) = ObjectHead::parse(old).unwrap();
        encode_object(ObjectType::Message, std::slice::from_ref(&rd_id), body)
    };
    map.insert(rd_id.clone(), rd);
    map.insert(msg_id.clone(), msg);
    tree.children[0].object_id = rd_id;
    tree.object_id = msg_id;
    let mut wire = wire;
    wire.metadata.as_mut().unwrap().message_id.clear();
    let err = message_from_objects(&wire, &tree, &map).unwrap_err();
    assert!(err.to_string().contains("is not referenced by the body"), "{err}");
}

/// 2.5 chunks of data, no chunk like another.
fn model_data() -> Vec<u8> {
    (0..MAX_ARRAY_CHUNK_SIZE * 5 / 2).map(|i| (i % 251) as u8).collect()
}

/// A message with one array, of `data`.
fn model_message(data: Vec<u8>) -> Message {
    let model = Array {
        dtype: "uint8".into(),
        shape: vec![data.len() as i32],
        stype: "numpy.ndarray".into(),
        data: data.into(),
    };
    Message::with_content(metadata(), content(ArrayRecord::new().with("model", model)))
}

/// Every object of `objects` by id, as a store would hold them.
fn stored(objects: &[(String, Bytes)]) -> HashMap<String, Bytes> {
    objects.iter().cloned().collect()
}

#[test]
fn an_array_sent_again_reuses_its_stored_chunks() {
    let message = model_message(model_data());
    let mut recent = RecentArrays::default();
    let (first_tree, first, first_id) = message_to_objects_with(&message, Some(&mut recent.known(|_| None)));
    assert_eq!(first_id, message_to_objects(&message).2, "the encoding does not depend on the memory");
    let store = stored(&first);
    let (tree, again, id) = message_to_objects_with(&message, Some(&mut recent.known(|id| store.get(id).cloned())));
    assert_eq!((tree, id), (first_tree, first_id));
    for (object_id, bytes) in again.iter().filter(|(_, b)| b.len() > MAX_ARRAY_CHUNK_SIZE / 2) {
        assert_eq!(bytes.as_ptr(), store[object_id].as_ptr(), "chunk {object_id} was made again");
    }
}

#[test]
fn an_array_that_only_looks_the_same_is_hashed_afresh() {
    let message = model_message(model_data());
    let mut recent = RecentArrays::default();
    let (_, first, _) = message_to_objects_with(&message, Some(&mut recent.known(|_| None)));
    let store = stored(&first);
    // One byte changed away from the sampled positions: the same length and sample.
    let mut data = model_data();
    data[MAX_ARRAY_CHUNK_SIZE + 12_345] ^= 0xff;
    let changed = model_message(data);
    let (_, _, id) = message_to_objects_with(&changed, Some(&mut recent.known(|id| store.get(id).cloned())));
    assert_eq!(id, message_to_objects(&changed).2);
    assert_ne!(id, message_to_objects(&message).2);
    // Chunks no longer stored are made again too.
    let (_, _, id) = message_to_objects_with(&message, Some(&mut recent.known(|_| None)));
    assert_eq!(id, message_to_objects(&message).2);
}

#[test]
fn the_encoding_for_an_app_is_written_from_the_chunks() {
    use prost::Message as _;
    let empty_array = ArrayRecord::new().with("none", Array::from_f32(&[], &[0]).unwrap()).with("w", small());
    let sparse = Message::with_content(metadata(), RecordDict::new().with("a", empty_array.into()));
    for message in [portable(), error_reply(), exotic(), exotic_error(), chunked(), model_message(model_data()), sparse]
    {
        let (tree, objects, _) = message_to_objects(&message);
        let (objects, wire) = (stored(&objects), pb::Message::default());
        let decoded = message_from_objects(&wire, &tree, &objects).unwrap();
        let (metadata, encoded) = encoded_message_from_checked_objects(&wire, &tree, &objects).unwrap();
        assert_eq!(metadata, decoded.metadata);
        assert_eq!(encoded_message_from_objects(&wire, &tree, &objects).unwrap().1, encoded);
        assert_eq!(encoded, pb::Message::from(&decoded).encode_to_vec(), "{}", message.metadata.message_type);
    }
}

#[test]
fn the_encoding_for_an_app_checks_every_object() {
    let (tree, objects, _) = message_to_objects(&chunked());
    let mut objects = stored(&objects);
    let chunk = tree.children[0].children[0].children[1].children[0].object_id.clone();
    let mut tampered = objects[&chunk].to_vec();
    *tampered.last_mut().unwrap() ^= 1;
    objects.insert(chunk.clone(), tampered.into());
    let err = encoded_message_from_objects(&pb::Message::default(), &tree, &objects).unwrap_err();
    assert!(err.to_string().contains(&chunk), "{err}");
}
