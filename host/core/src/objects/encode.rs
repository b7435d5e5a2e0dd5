//! Message → objects (Flower's `deflate`).

use std::collections::HashSet;

use bytes::Bytes;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message as _;
use sepal_proto::pb;
use sha2::{Digest, Sha256};

use super::{json, object_id, ObjectHead, ObjectType, MAX_ARRAY_CHUNK_SIZE};
use crate::parallel;
use crate::records::{Array, ArrayRecord, Error, Message, Metadata, Record, RecordDict};

/// The bytes and id of one object.
pub fn encode_object(object_type: ObjectType, children: &[String], body: &[u8]) -> (String, Bytes) {
    let head = ObjectHead { object_type, children: children.to_vec() };
    let mut bytes = head.to_bytes(body.len());
    bytes.extend_from_slice(body);
    (object_id(&bytes), Bytes::from(bytes))
}

/// Encodes a message as objects.
///
/// Returns the object tree, every object once as `(id, bytes)` in post-order (children
/// before parents, first occurrence wins), and the message id (the Message object's id).
/// `metadata.message_id` is not part of the encoding.
pub fn message_to_objects(message: &Message) -> (pb::ObjectTree, Vec<(String, Bytes)>, String) {
    message_to_objects_with(message, None)
}

/// [`message_to_objects`] that takes the chunks of array data it has seen before from
/// `known` instead of cutting and hashing the data again.
pub fn message_to_objects_with(
    message: &Message,
    known: Option<&mut dyn KnownChunks>,
) -> (pb::ObjectTree, Vec<(String, Bytes)>, String) {
    let mut enc = Encoder::new(true, known);
    let tree = enc.message(message);
    let id = tree.object_id.clone();
    (tree, enc.objects, id)
}

/// The message's id: its Message object's id (computed without keeping the objects).
pub fn message_id(message: &Message) -> String {
    Encoder::new(false, None).message(message).object_id
}

/// Array data an encoder has seen before. A ServerApp sends the same model to every node,
/// each message encoded on its own: without this, a 1 GiB model would be copied into
/// chunks and hashed (0.7 s here) once per node.
pub trait KnownChunks {
    /// The chunk objects `(id, bytes)` of `data`, in order, if they are at hand and equal
    /// to it byte for byte (see `chunk_matches`).
    fn chunks_of(&mut self, data: &Bytes) -> Option<Vec<(String, Bytes)>>;
    /// `data` was just cut into the chunks `ids`, in order.
    fn learn(&mut self, data: &Bytes, ids: &[String]);
}

/// The data of the chunk at `index` of `data`.
pub(crate) fn chunk_data(data: &Bytes, index: usize) -> Option<Bytes> {
    let start = index.checked_mul(MAX_ARRAY_CHUNK_SIZE).filter(|s| *s < data.len())?;
    Some(data.slice(start..data.len().min(start + MAX_ARRAY_CHUNK_SIZE)))
}

/// Whether `object` is exactly the ArrayChunk object of `slice`: then it has the id that
/// hashing `slice` would give, without hashing (a comparison is several times faster).
pub(crate) fn chunk_matches(object: &[u8], slice: &[u8]) -> bool {
    let head = chunk_head(slice.len());
    object.len() == head.len() + slice.len() && object[..head.len()] == head[..] && object[head.len()..] == *slice
}

/// Collects objects in post-order, each once.
struct Encoder<'k> {
    keep: bool,
    seen: HashSet<String>,
    objects: Vec<(String, Bytes)>,
    known: Option<&'k mut dyn KnownChunks>,
}

fn leaf(object_id: String) -> pb::ObjectTree {
    pb::ObjectTree { object_id, children: Vec::new() }
}

/// Drops repeated subtrees, keeping first occurrences.
fn unique(trees: Vec<pb::ObjectTree>) -> Vec<pb::ObjectTree> {
    let mut seen = HashSet::new();
    trees.into_iter().filter(|t| seen.insert(t.object_id.clone())).collect()
}

fn ids(trees: &[pb::ObjectTree]) -> Vec<String> {
    trees.iter().map(|t| t.object_id.clone()).collect()
}

impl<'k> Encoder<'k> {
    fn new(keep: bool, known: Option<&'k mut dyn KnownChunks>) -> Self {
        Encoder { keep, seen: HashSet::new(), objects: Vec::new(), known }
    }

    fn add(&mut self, id: &str, bytes: impl FnOnce() -> Bytes) {
        if self.keep && !self.seen.contains(id) {
            self.seen.insert(id.to_owned());
            self.objects.push((id.to_owned(), bytes()));
        }
    }

    /// Emits an object whose children have been emitted; returns its tree node.
    fn emit(&mut self, ty: ObjectType, children: Vec<pb::ObjectTree>, body: &[u8]) -> pb::ObjectTree {
        let (id, bytes) = encode_object(ty, &ids(&children), body);
        self.add(&id, || bytes);
        pb::ObjectTree { object_id: id, children }
    }

    fn message(&mut self, m: &Message) -> pb::ObjectTree {
        let children = match (&m.error, &m.content) {
            (None, Some(content)) => vec![self.record_dict(content)],
            _ => Vec::new(),
        };
        let body = message_body(&m.metadata, m.error.as_ref());
        self.emit(ObjectType::Message, children, &body)
    }

    fn record_dict(&mut self, rd: &RecordDict) -> pb::ObjectTree {
        let trees: Vec<pb::ObjectTree> = rd.iter().map(|(_, r)| self.record(r)).collect();
        let refs = rd.keys().zip(trees.iter().map(|t| t.object_id.as_str()));
        let body = json::string_map(refs);
        self.emit(ObjectType::RecordDict, unique(trees), body.as_bytes())
    }

    fn record(&mut self, r: &Record) -> pb::ObjectTree {
        match r {
            Record::Array(ar) => self.array_record(ar),
            Record::Metric(mr) => {
                let body = pb::MetricRecord::from(mr).encode_to_vec();
                self.emit(ObjectType::MetricRecord, Vec::new(), &body)
            }
            Record::Config(cr) => {
                let body = pb::ConfigRecord::from(cr).encode_to_vec();
                self.emit(ObjectType::ConfigRecord, Vec::new(), &body)
            }
        }
    }

    fn array_record(&mut self, ar: &ArrayRecord) -> pb::ObjectTree {
        let trees: Vec<pb::ObjectTree> = ar.iter().map(|(_, a)| self.array(a)).collect();
        let refs = ar.keys().zip(trees.iter().map(|t| t.object_id.as_str()));
        let body = json::string_map(refs);
        self.emit(ObjectType::ArrayRecord, unique(trees), body.as_bytes())
    }

    fn array(&mut self, a: &Array) -> pb::ObjectTree {
        let chunk_ids = match self.known.as_mut().and_then(|k| k.chunks_of(&a.data)) {
            Some(chunks) => chunks.into_iter().map(|(id, bytes)| self.add_chunk(id, || bytes)).collect(),
            None => {
                let ids = self.chunks(&a.data);
                if let Some(known) = self.known.as_mut() {
                    known.learn(&a.data, &ids);
                }
                ids
            }
        };
        let children = unique(chunk_ids.iter().cloned().map(leaf).collect());
        let indices: Vec<usize> =
            chunk_ids.iter().map(|id| children.iter().position(|t| t.object_id == *id).unwrap_or(0)).collect();
        let body = array_body(a, &indices);
        self.emit(ObjectType::Array, children, body.as_bytes())
    }

    /// Cuts `data` into chunk objects: hashes every chunk without copying it, then copies
    /// those kept (each distinct chunk once). Both steps spread over the CPUs: a 1 GiB
    /// model is 0.7 s of hashing on one core.
    fn chunks(&mut self, data: &Bytes) -> Vec<String> {
        let slices: Vec<Bytes> = (0..).map_while(|i| chunk_data(data, i)).collect();
        let ids = parallel::map(&slices, |slice| {
            hex::encode(Sha256::new().chain_update(chunk_head(slice.len())).chain_update(slice).finalize())
        });
        let mut kept = Vec::new();
        for (id, slice) in ids.iter().zip(&slices) {
            if self.keep && !self.seen.contains(id) && !kept.iter().any(|(k, _)| k == id) {
                kept.push((id.clone(), slice));
            }
        }
        let copies =
            parallel::map(&kept, |(_, slice)| Bytes::from([chunk_head(slice.len()).as_slice(), slice].concat()));
        for ((id, _), bytes) in kept.into_iter().zip(copies) {
            self.add(&id, || bytes);
        }
        ids
    }

    fn add_chunk(&mut self, id: String, bytes: impl FnOnce() -> Bytes) -> String {
        self.add(&id, bytes);
        id
    }
}

/// The head of an ArrayChunk object whose data is `len` bytes.
fn chunk_head(len: usize) -> Vec<u8> {
    ObjectHead { object_type: ObjectType::ArrayChunk, children: Vec::new() }.to_bytes(len)
}

/// `{"dtype": …, "shape": […], "stype": …, "arraychunk_ids": […]}`.
fn array_body(a: &Array, chunk_indices: &[usize]) -> String {
    let mut body = String::from("{\"dtype\": ");
    json::write_str(&mut body, &a.dtype);
    body.push_str(", \"shape\": ");
    body.push_str(&json::list(&a.shape));
    body.push_str(", \"stype\": ");
    json::write_str(&mut body, &a.stype);
    body.push_str(", \"arraychunk_ids\": ");
    body.push_str(&json::list(chunk_indices));
    body.push('}');
    body
}

/// `flwr.proto.Message{metadata (message_id ""), error}` as Python's upb writes it.
///
/// Written by hand because upb emits a `-0.0` double (its bits are not zero) where prost
/// would skip it as a default value.
fn message_body(md: &Metadata, error: Option<&Error>) -> Vec<u8> {
    let mut meta = Vec::new();
    put_varint(&mut meta, 1, md.run_id);
    put_varint(&mut meta, 3, md.src_node_id);
    put_varint(&mut meta, 4, md.dst_node_id);
    put_str(&mut meta, 5, &md.reply_to_message_id);
    put_str(&mut meta, 6, &md.group_id);
    put_double(&mut meta, 7, md.ttl);
    put_str(&mut meta, 8, &md.message_type);
    put_double(&mut meta, 9, md.created_at);
    let mut body = Vec::new();
    put_len(&mut body, 1, &meta);
    if let Some(e) = error {
        let mut err = Vec::new();
        put_varint(&mut err, 1, ((e.code << 1) ^ (e.code >> 63)) as u64);
        put_str(&mut err, 2, &e.reason);
        put_len(&mut body, 3, &err);
    }
    body
}

fn put_varint(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn put_double(buf: &mut Vec<u8>, tag: u32, value: f64) {
    if value.to_bits() != 0 {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn put_str(buf: &mut Vec<u8>, tag: u32, value: &str) {
    if !value.is_empty() {
        put_len(buf, tag, value.as_bytes());
    }
}

fn put_len(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    put_len_header(buf, tag, value.len());
    buf.extend_from_slice(value);
}

/// The key and length of a length-delimited field, whose `len` bytes come next.
pub(super) fn put_len_header(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}
