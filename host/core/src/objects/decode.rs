//! Objects → message (Flower's `inflate`), verifying every object on the way.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use prost::Message as _;
use sepal_proto::pb;

use super::json::Json;
use super::spliced::{encode_with_array_data, ArrayData};
use super::{validate_object, ObjectHead, ObjectType};
use crate::error::ObjectError;
use crate::records::{
    Array, ArrayRecord, ConfigRecord, Error, Message, Metadata, MetricRecord, OrderedMap, Record, RecordDict,
};

/// Rebuilds a message from its object tree and objects.
///
/// Every object of the tree must be in `objects`, hash to its id, have a valid head of the
/// type its position requires, list exactly the children the tree lists, and have a body
/// consistent with them. Metadata and error come from the Message object (that is what its
/// id covers); `metadata.message_id` is set to the tree root's id. `wire` is the message as
/// Push/PullMessages carried it; its `message_id`, when set, must equal the root id.
pub fn message_from_objects(
    wire: &pb::Message,
    tree: &pb::ObjectTree,
    objects: &HashMap<String, Bytes>,
) -> Result<Message, ObjectError> {
    decode(wire, tree, objects, HashSet::new())
}

/// [`message_from_objects`] for objects that were checked against their ids when they were
/// stored (an [`ObjectStore`](crate::store::ObjectStore) hashes every object it takes in, or
/// made it itself): everything but the hashes is checked, so each object is hashed once per
/// process, not once more per read.
pub(crate) fn message_from_checked_objects(
    wire: &pb::Message,
    tree: &pb::ObjectTree,
    objects: &HashMap<String, Bytes>,
) -> Result<Message, ObjectError> {
    decode(wire, tree, objects, objects.keys().cloned().collect())
}

/// What [`message_from_objects`] decodes (checking every object the same way), as the
/// protobuf bytes a Wasm app is handed (`flwr.proto.Message`), with the message's metadata.
/// Each array's data is copied once: from its chunks straight into the encoding.
pub fn encoded_message_from_objects(
    wire: &pb::Message,
    tree: &pb::ObjectTree,
    objects: &HashMap<String, Bytes>,
) -> Result<(Metadata, Vec<u8>), ObjectError> {
    encode_for_app(wire, tree, objects, HashSet::new())
}

/// [`encoded_message_from_objects`] for objects checked when they were stored (see
/// [`message_from_checked_objects`]).
pub(crate) fn encoded_message_from_checked_objects(
    wire: &pb::Message,
    tree: &pb::ObjectTree,
    objects: &HashMap<String, Bytes>,
) -> Result<(Metadata, Vec<u8>), ObjectError> {
    encode_for_app(wire, tree, objects, objects.keys().cloned().collect())
}

fn encode_for_app(
    wire: &pb::Message,
    tree: &pb::ObjectTree,
    objects: &HashMap<String, Bytes>,
    verified: HashSet<String>,
) -> Result<(Metadata, Vec<u8>), ObjectError> {
    let mut decoder = Decoder::new(objects, verified, Some(Vec::new()));
    let message = decoder.decode(wire, tree)?;
    let data = decoder.deferred.unwrap_or_default();
    let encoded = encode_with_array_data(&pb::Message::from(&message), &data)
        .ok_or_else(|| malformed(&tree.object_id, "its arrays do not match their data"))?;
    Ok((message.metadata, encoded))
}

fn decode(
    wire: &pb::Message,
    tree: &pb::ObjectTree,
    objects: &HashMap<String, Bytes>,
    verified: HashSet<String>,
) -> Result<Message, ObjectError> {
    Decoder::new(objects, verified, None).decode(wire, tree)
}

struct Decoder<'a> {
    objects: &'a HashMap<String, Bytes>,
    verified: HashSet<String>,
    /// Arrays decoded so far, by id, with their chunks.
    arrays: HashMap<String, (Array, Vec<Bytes>)>,
    /// When set, arrays are decoded without their data (empty), and the chunks of each
    /// go here, in the order the arrays come.
    deferred: Option<ArrayData>,
}

/// A verified object: its type and its body.
struct Node {
    object_type: ObjectType,
    body: Bytes,
}

fn malformed(id: &str, reason: impl Into<String>) -> ObjectError {
    ObjectError::malformed(id, reason)
}

impl<'a> Decoder<'a> {
    fn new(objects: &'a HashMap<String, Bytes>, verified: HashSet<String>, deferred: Option<ArrayData>) -> Self {
        Decoder { objects, verified, arrays: HashMap::new(), deferred }
    }

    fn decode(&mut self, wire: &pb::Message, tree: &pb::ObjectTree) -> Result<Message, ObjectError> {
        let wire_id = wire.metadata.as_ref().map_or("", |m| m.message_id.as_str());
        if !wire_id.is_empty() && wire_id != tree.object_id {
            return Err(ObjectError::MessageIdMismatch { wire: wire_id.to_owned(), object: tree.object_id.clone() });
        }
        let mut message = self.message(tree)?;
        message.metadata.message_id = tree.object_id.clone();
        Ok(message)
    }

    /// Looks up and verifies the tree node's object; its type must be one of `allowed`.
    fn node(&mut self, tree: &pb::ObjectTree, allowed: &[ObjectType]) -> Result<Node, ObjectError> {
        let id = tree.object_id.as_str();
        let bytes = self.objects.get(id).ok_or_else(|| ObjectError::Missing(id.to_owned()))?;
        if !self.verified.contains(id) {
            validate_object(id, bytes)?;
            self.verified.insert(id.to_owned());
        }
        let (object_type, children, body) = ObjectHead::parse(bytes)?;
        if !allowed.contains(&object_type) {
            return Err(ObjectError::UnexpectedType { id: id.to_owned(), expected: allowed[0], found: object_type });
        }
        let listed: Vec<&str> = tree.children.iter().map(|t| t.object_id.as_str()).collect();
        if listed != children {
            return Err(ObjectError::TreeMismatch {
                id: id.to_owned(),
                reason: format!("the tree lists children {listed:?}, the head {children:?}"),
            });
        }
        let body = bytes.slice(bytes.len() - body.len()..);
        Ok(Node { object_type, body })
    }

    fn message(&mut self, tree: &pb::ObjectTree) -> Result<Message, ObjectError> {
        let id = &tree.object_id;
        let node = self.node(tree, &[ObjectType::Message])?;
        let proto = pb::Message::decode(node.body)
            .map_err(|e| malformed(id, format!("Message body is not a flwr.proto.Message: {e}")))?;
        let metadata = proto.metadata.unwrap_or_default().into();
        match (proto.error, tree.children.as_slice()) {
            (Some(error), []) => Ok(Message::with_error(metadata, Error::from(error))),
            (Some(_), _) => Err(malformed(id, "An error message must not have children.")),
            (None, [content]) => Ok(Message::with_content(metadata, self.record_dict(content)?)),
            (None, _) => Err(malformed(id, "A message needs one RecordDict child or an error.")),
        }
    }

    fn record_dict(&mut self, tree: &pb::ObjectTree) -> Result<RecordDict, ObjectError> {
        self.node(tree, &[ObjectType::RecordDict])?;
        let refs = self.references(tree)?;
        let mut out = RecordDict::new();
        for (key, child) in refs {
            out.insert(key, self.record(child)?);
        }
        Ok(out)
    }

    fn record(&mut self, tree: &pb::ObjectTree) -> Result<Record, ObjectError> {
        const RECORDS: [ObjectType; 3] = [ObjectType::ArrayRecord, ObjectType::MetricRecord, ObjectType::ConfigRecord];
        let id = &tree.object_id;
        let node = self.node(tree, &RECORDS)?;
        let bad = |e: prost::DecodeError| malformed(id, format!("bad record protobuf: {e}"));
        let missing = |e: crate::error::RecordError| malformed(id, e.to_string());
        Ok(match node.object_type {
            ObjectType::MetricRecord => {
                let proto = pb::MetricRecord::decode(node.body).map_err(bad)?;
                Record::Metric(MetricRecord::try_from(proto).map_err(missing)?)
            }
            ObjectType::ConfigRecord => {
                let proto = pb::ConfigRecord::decode(node.body).map_err(bad)?;
                Record::Config(ConfigRecord::try_from(proto).map_err(missing)?)
            }
            _ => Record::Array(self.array_record(tree)?),
        })
    }

    fn array_record(&mut self, tree: &pb::ObjectTree) -> Result<ArrayRecord, ObjectError> {
        let refs = self.references(tree)?;
        let mut out = ArrayRecord::new();
        for (key, child) in refs {
            out.insert(key, self.array(child)?);
        }
        Ok(out)
    }

    /// Parses a `{key: child id}` body; the ids must be exactly the node's children.
    fn references<'t>(&self, tree: &'t pb::ObjectTree) -> Result<Vec<(String, &'t pb::ObjectTree)>, ObjectError> {
        let id = &tree.object_id;
        let body = &self.objects[id.as_str()];
        let (_, _, body) = ObjectHead::parse(body)?;
        let map = string_map(body).map_err(|e| malformed(id, e))?;
        let mut refs = Vec::with_capacity(map.len());
        for (key, child_id) in map {
            let child = tree.children.iter().find(|t| t.object_id == child_id);
            let child =
                child.ok_or_else(|| malformed(id, format!("Body references {child_id}, which is not a child.")))?;
            refs.push((key, child));
        }
        check_all_used(id, tree, refs.iter().map(|(_, t)| t.object_id.as_str()))?;
        Ok(refs)
    }

    fn array(&mut self, tree: &pb::ObjectTree) -> Result<Array, ObjectError> {
        let id = &tree.object_id;
        if !self.arrays.contains_key(id) {
            let node = self.node(tree, &[ObjectType::Array])?;
            let meta = ArrayMeta::parse(&node.body).map_err(|e| malformed(id, e))?;
            let chunk_ids = meta.chunk_ids(tree).map_err(|e| malformed(id, e))?;
            check_all_used(id, tree, chunk_ids.iter().map(|t| t.object_id.as_str()))?;
            let chunks = self.chunks(&chunk_ids)?;
            let data = match (&self.deferred, chunks.as_slice()) {
                (Some(_), _) | (None, []) => Bytes::new(),
                (None, [one]) => one.clone(),
                (None, many) => Bytes::from(many.concat()),
            };
            let array = Array { dtype: meta.dtype, shape: meta.shape, stype: meta.stype, data };
            self.arrays.insert(id.clone(), (array, chunks));
        }
        let (array, chunks) = &self.arrays[id];
        if let Some(deferred) = &mut self.deferred {
            deferred.push(chunks.clone());
        }
        Ok(array.clone())
    }

    /// The bodies of the chunks, in order.
    fn chunks(&mut self, chunks: &[&pb::ObjectTree]) -> Result<Vec<Bytes>, ObjectError> {
        chunks.iter().map(|chunk| Ok(self.node(chunk, &[ObjectType::ArrayChunk])?.body)).collect()
    }
}

/// Flower's check that a body references every child of the head.
fn check_all_used<'a>(id: &str, tree: &pb::ObjectTree, used: impl Iterator<Item = &'a str>) -> Result<(), ObjectError> {
    let used: HashSet<&str> = used.collect();
    match tree.children.iter().find(|t| !used.contains(t.object_id.as_str())) {
        Some(t) => Err(malformed(id, format!("Child {} is not referenced by the body.", t.object_id))),
        None => Ok(()),
    }
}

/// Parses a JSON object of string values, with Python `dict` semantics for repeated keys.
fn string_map(body: &[u8]) -> Result<OrderedMap<String>, String> {
    let Json::Object(items) = Json::parse(body)? else {
        return Err("body is not a JSON object".into());
    };
    let mut map = OrderedMap::new();
    for (key, value) in items {
        let value = value.as_str().ok_or(format!("value of {key:?} is not a string"))?;
        map.insert(key, value.to_owned());
    }
    Ok(map)
}

/// The JSON body of an Array object.
struct ArrayMeta {
    dtype: String,
    shape: Vec<i32>,
    stype: String,
    chunk_indices: Vec<i64>,
}

impl ArrayMeta {
    fn parse(body: &[u8]) -> Result<Self, String> {
        let json = Json::parse(body)?;
        let text = |key: &str| {
            let value = json.get(key).and_then(Json::as_str);
            value.map(str::to_owned).ok_or(format!("{key:?} is missing or not a string"))
        };
        let ints = |key: &str| {
            match json.get(key) {
                Some(Json::Array(items)) => items.iter().map(Json::as_i64).collect::<Option<Vec<_>>>(),
                _ => None,
            }
            .ok_or(format!("{key:?} is missing or not a list of integers"))
        };
        let shape: Result<Vec<i32>, _> = ints("shape")?.into_iter().map(i32::try_from).collect();
        Ok(ArrayMeta {
            dtype: text("dtype")?,
            shape: shape.map_err(|_| "a shape dimension exceeds int32".to_owned())?,
            stype: text("stype")?,
            chunk_indices: ints("arraychunk_ids")?,
        })
    }

    /// The chunk tree nodes in data order.
    fn chunk_ids<'t>(&self, tree: &'t pb::ObjectTree) -> Result<Vec<&'t pb::ObjectTree>, String> {
        self.chunk_indices
            .iter()
            .map(|&i| {
                let child = usize::try_from(i).ok().and_then(|i| tree.children.get(i));
                child.ok_or(format!("arraychunk_ids index {i} has no child"))
            })
            .collect()
    }
}
