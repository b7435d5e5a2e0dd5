//! Flower's content-addressed object encoding (byte-exact with flwr 1.20.0).
//!
//! An object is `"<Type> <child ids joined by ','> <body length>"`, a `0x00` byte, then
//! the body; its id is the lowercase hex sha256 of all of it. A message becomes a graph
//! Message → RecordDict → records → Arrays → ArrayChunks, and a [`pb::ObjectTree`]
//! mirrors that graph (each node lists its unique children in first-occurrence order).
//!
//! | type | children | body |
//! |---|---|---|
//! | `ArrayChunk` | — | one slice (≤ [`MAX_ARRAY_CHUNK_SIZE`]) of an Array's data |
//! | `Array` | unique chunk ids | JSON `dtype`, `shape`, `stype`, `arraychunk_ids` |
//! | `ArrayRecord` | unique Array ids | JSON `{key: array id}` |
//! | `MetricRecord`, `ConfigRecord` | — | the record's protobuf |
//! | `RecordDict` | unique record ids | JSON `{key: record id}` |
//! | `Message` | the RecordDict id, or none | `flwr.proto.Message`: metadata (no id), error |

mod decode;
mod encode;
mod json;
mod recent;
mod spliced;

use std::fmt;

use sha2::{Digest, Sha256};

pub(crate) use decode::{encoded_message_from_checked_objects, message_from_checked_objects};
pub use decode::{encoded_message_from_objects, message_from_objects};
pub use encode::{encode_object, message_id, message_to_objects, message_to_objects_with, KnownChunks};
pub use recent::RecentArrays;

#[cfg(doc)]
use sepal_proto::pb;

use crate::error::ObjectError;

/// Size of the consecutive slices an Array's data is cut into (Flower 1.20: 20 MiB, fixed).
pub const MAX_ARRAY_CHUNK_SIZE: usize = 20_971_520;

/// The seven object types of Flower 1.20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// A slice of an Array's data.
    ArrayChunk,
    /// An Array's metadata; its data is in its chunks.
    Array,
    /// An ArrayRecord.
    ArrayRecord,
    /// A ConfigRecord.
    ConfigRecord,
    /// A MetricRecord.
    MetricRecord,
    /// A RecordDict.
    RecordDict,
    /// A Message (metadata and error; content is its child).
    Message,
}

impl ObjectType {
    const ALL: [ObjectType; 7] = [
        ObjectType::ArrayChunk,
        ObjectType::Array,
        ObjectType::ArrayRecord,
        ObjectType::ConfigRecord,
        ObjectType::MetricRecord,
        ObjectType::RecordDict,
        ObjectType::Message,
    ];

    /// The name in the object head (the Python class name).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::ArrayChunk => "ArrayChunk",
            ObjectType::Array => "Array",
            ObjectType::ArrayRecord => "ArrayRecord",
            ObjectType::ConfigRecord => "ConfigRecord",
            ObjectType::MetricRecord => "MetricRecord",
            ObjectType::RecordDict => "RecordDict",
            ObjectType::Message => "Message",
        }
    }

    /// The type with this head name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lowercase hex sha256 of `bytes`: the id of an object with these bytes.
pub fn object_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `s` can be an object id: 64 hex digits (upper case accepted, as Flower does).
pub fn is_valid_object_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The head of an object: its type and child ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// The object's type.
    pub object_type: ObjectType,
    /// Child ids in head order.
    pub children: Vec<String>,
}

impl ObjectHead {
    /// Splits object bytes into type, child ids and body, checking the structure Flower
    /// checks on receipt: a `0x00` divider, a UTF-8 head of three space-separated parts,
    /// valid child ids, a known type and a body of the stated length.
    ///
    /// The error's object id is the sha256 of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<(ObjectType, Vec<String>, &[u8]), ObjectError> {
        parse_parts(bytes).map_err(|reason| ObjectError::malformed(&object_id(bytes), reason))
    }

    /// The head bytes, including the `0x00` divider, for a body of `body_len` bytes.
    pub fn to_bytes(&self, body_len: usize) -> Vec<u8> {
        let head = format!("{} {} {}", self.object_type, self.children.join(","), body_len);
        let mut out = head.into_bytes();
        out.push(0);
        out
    }
}

fn parse_parts(bytes: &[u8]) -> Result<(ObjectType, Vec<String>, &[u8]), String> {
    let split = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or("Unexpected format for object content. Head and body could not be split.".to_owned())?;
    let (head, body) = (&bytes[..split], &bytes[split + 1..]);
    let head = std::str::from_utf8(head).map_err(|_| "Object head is not UTF-8.".to_owned())?;
    let parts: Vec<&str> = head.split(' ').collect();
    let [type_name, children, body_len] = parts[..] else {
        return Err("Unexpected format for object head.".to_owned());
    };
    let children = parse_children(children)?;
    let object_type =
        ObjectType::from_name(type_name).ok_or_else(|| format!("Object of type {type_name} is not supported."))?;
    let stated: Option<usize> = body_len.bytes().all(|b| b.is_ascii_digit()).then(|| body_len.parse().ok()).flatten();
    if stated != Some(body.len()) {
        return Err(format!("Object content length expected {body_len} bytes but got {} bytes.", body.len()));
    }
    Ok((object_type, children, body))
}

fn parse_children(list: &str) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|id| match is_valid_object_id(id) {
            true => Ok(id.to_owned()),
            false => Err(format!("Detected invalid object ID ({id}) in children.")),
        })
        .collect()
}

/// Flower's check of an object on receipt: `bytes` hash to `id`, and
/// [`ObjectHead::parse`] accepts them.
pub fn validate_object(id: &str, bytes: &[u8]) -> Result<(), ObjectError> {
    let actual = object_id(bytes);
    if actual != id {
        return Err(ObjectError::HashMismatch { id: id.to_owned(), actual });
    }
    parse_parts(bytes).map(|_| ()).map_err(|reason| ObjectError::malformed(id, reason))
}

#[cfg(test)]
mod tests;
