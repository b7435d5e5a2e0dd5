//! Fuzz harnesses for the places untrusted bytes enter Sepal. The `fuzz_targets/*` binaries
//! are thin libFuzzer wrappers around these functions; `cargo test` (in this directory)
//! replays `corpus/<target>/` through them without libFuzzer.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message as _;
use sepal_core::objects::{encode_object, object_id};
use sepal_core::{message_from_objects, message_id, message_to_objects, validate_object, ObjectHead, ObjectStore};
use sepal_proto::pb;

/// `fab_read`: a FAB (zip) as uploaded by a user or pulled by a SuperNode.
pub fn fab_read(data: &[u8]) {
    let limits = sepal_fab::ReadLimits::default();
    if let Ok(fab) = sepal_fab::Fab::read(data, &limits) {
        // Touch everything a reader would use afterwards.
        let manifest = fab.manifest();
        let _ = (manifest.fab_id(), fab.hash(), manifest.run_config().len());
        for component in [manifest.serverapp(), manifest.clientapp()] {
            let _ = fab.wasm_component(component);
        }
        for (path, bytes) in fab.files() {
            assert_eq!(fab.file(path), Some(bytes));
        }
        let _ = sepal_fab::Fab::read_verified(data, fab.hash(), &limits).expect("re-read with its own hash");
    }
}

/// `record_convert`: a `flwr.proto.Message` as a Wasm app or peer sends it.
///
/// Anything `Message::try_from` accepts with exactly one of content and error must encode to objects, and those objects must
/// decode back to a message with the same id.
pub fn record_convert(data: &[u8]) {
    let Ok(proto) = pb::Message::decode(data) else { return };
    let Ok(message) = sepal_core::Message::try_from(proto) else { return };
    let _ = pb::Message::from(&message);
    // `try_from` is structural; every caller (routing, SuperNode/appio reply paths) then
    // refuses a message with both or neither of content and error, as Flower does. Only
    // such well-formed messages must survive the object round trip.
    if message.content.is_some() == message.error.is_some() {
        return;
    }
    let (tree, objects, id) = message_to_objects(&message);
    assert_eq!(id, tree.object_id);
    assert_eq!(id, message_id(&message));
    let objects: HashMap<String, Bytes> = objects.into_iter().collect();
    let mut wire = message.to_wire_pb();
    if let Some(md) = wire.metadata.as_mut() {
        md.message_id = id.clone();
    }
    let decoded = message_from_objects(&wire, &tree, &objects).expect("our own objects decode");
    assert_eq!(message_id(&decoded), id, "decode(encode(m)) keeps the id");
}

const TYPES: [&str; 8] = ["ArrayChunk", "Array", "ArrayRecord", "ConfigRecord", "MetricRecord", "RecordDict", "Message", "Bogus"];
const MAX_TREE_NODES: usize = 512;

/// One object of an `object_decode` input.
struct Spec {
    children: Vec<usize>,
    bytes: Bytes,
    id: String,
}

/// Parses an `object_decode` input: a flags byte, then records
/// `[tag][n][child index; n][body length u16 LE][body]` until the input ends. Tag bits 0-2
/// pick the type (7 = an unknown type), bit 7 misstates the body length. A child index
/// points at an earlier record (modulo their number); ids are computed, so hashes match.
fn parse_input(data: &[u8]) -> (u8, Vec<Spec>) {
    let Some((&flags, mut rest)) = data.split_first() else { return (0, Vec::new()) };
    let mut specs: Vec<Spec> = Vec::new();
    while rest.len() >= 4 {
        let (tag, n) = (rest[0], rest[1] as usize);
        rest = &rest[2..];
        let idx: Vec<u8> = rest.iter().take(n).copied().collect();
        rest = &rest[idx.len()..];
        let children: Vec<usize> =
            if specs.is_empty() { Vec::new() } else { idx.iter().map(|&i| i as usize % specs.len()).collect() };
        let len = match rest {
            [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
            _ => 0,
        };
        rest = &rest[rest.len().min(2)..];
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        let ids: Vec<String> = children.iter().map(|&c| specs[c].id.clone()).collect();
        let type_name = TYPES[(tag & 7) as usize];
        let stated = body.len() + usize::from(tag & 0x80 != 0);
        let mut bytes = format!("{type_name} {} {stated}", ids.join(",")).into_bytes();
        bytes.push(0);
        bytes.extend_from_slice(body);
        let id = object_id(&bytes);
        specs.push(Spec { children, bytes: Bytes::from(bytes), id });
    }
    (flags, specs)
}

fn build_tree(specs: &[Spec], index: usize, budget: &mut usize) -> pb::ObjectTree {
    *budget = budget.saturating_sub(1);
    let mut children = Vec::new();
    for &c in &specs[index].children {
        if *budget == 0 {
            break;
        }
        children.push(build_tree(specs, c, budget));
    }
    pb::ObjectTree { object_id: specs[index].id.clone(), children }
}

/// `object_decode`: objects and an object tree as a peer pushes them (see [`parse_input`]).
///
/// Flags: bit 0 sets the wire message id to the root id, bit 1 to a wrong one; bit 2 drops
/// the root's last tree child; bit 3 leaves the root object out; bit 4 also goes through
/// an [`ObjectStore`] (preregister, put every object, decode from the store).
pub fn object_decode(data: &[u8]) {
    // The raw input itself as one object.
    let _ = ObjectHead::parse(data);
    let _ = validate_object(&object_id(data), data);
    let _ = validate_object("0000000000000000000000000000000000000000000000000000000000000000", data);

    let (flags, specs) = parse_input(data);
    let Some(root) = specs.len().checked_sub(1) else { return };
    for spec in &specs {
        let parsed = ObjectHead::parse(&spec.bytes);
        let valid = validate_object(&spec.id, &spec.bytes);
        assert_eq!(parsed.is_ok(), valid.is_ok(), "parse and validate agree on well-hashed bytes");
        if let Ok((object_type, children, body)) = parsed {
            let expected: Vec<&str> = spec.children.iter().map(|&c| specs[c].id.as_str()).collect();
            assert_eq!(children, expected);
            let (id, bytes) = encode_object(object_type, &children, body);
            assert_eq!((id.as_str(), &bytes), (spec.id.as_str(), &spec.bytes), "encode(parse(x)) == x");
        }
    }
    let mut budget = MAX_TREE_NODES;
    let mut tree = build_tree(&specs, root, &mut budget);
    if flags & 4 != 0 {
        tree.children.pop();
    }
    let mut objects: HashMap<String, Bytes> = specs.iter().map(|s| (s.id.clone(), s.bytes.clone())).collect();
    if flags & 8 != 0 {
        objects.remove(&specs[root].id);
    }
    let message_id = match flags & 3 {
        1 => tree.object_id.clone(),
        2 => "x".to_owned(),
        _ => String::new(),
    };
    let wire = pb::Message {
        metadata: Some(pb::Metadata { message_id, ..Default::default() }),
        content: None,
        error: None,
    };
    let decoded = message_from_objects(&wire, &tree, &objects);
    if let Ok(message) = &decoded {
        let _ = sepal_core::records::Message::to_wire_pb(message);
        let _ = message_to_objects(message);
    }

    if flags & 16 != 0 {
        let store = ObjectStore::new();
        let Ok(_missing) = store.preregister(1, &tree) else { return };
        for spec in &specs {
            let _ = store.put(&spec.id, spec.bytes.clone());
        }
        let _ = store.get(&tree.object_id);
        let _ = store.object_tree(&tree.object_id);
        let from_store = store.message(&wire, &tree);
        if flags & 8 == 0 {
            // Same objects, same answer (either both decode or both fail).
            assert_eq!(from_store.is_ok(), decoded.is_ok(), "store decode agrees with direct decode");
        }
        store.delete_run(1);
        assert!(store.is_empty() || store.len() > 0);
    }
}

/// Encodes objects (children before parents, as [`message_to_objects`] returns them) as an
/// `object_decode` input, for seeding the corpus.
pub fn encode_objects_input(flags: u8, objects: &[(String, Bytes)]) -> Vec<u8> {
    let mut out = vec![flags];
    let ids: Vec<&str> = objects.iter().map(|(id, _)| id.as_str()).collect();
    for (_, bytes) in objects {
        let (object_type, children, body) = ObjectHead::parse(bytes).expect("valid object");
        let tag = TYPES.iter().position(|t| *t == object_type.as_str()).unwrap() as u8;
        out.push(tag);
        out.push(children.len() as u8);
        for child in &children {
            out.push(ids.iter().position(|id| id == child).expect("child before parent") as u8);
        }
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}
