//! Flower messages, records and the content-addressed object store.
//!
//! Sepal speaks Flower 1.20.0's protocol, in which a message travels as content-addressed
//! objects whose ids must equal the ids Python Flower computes. This crate holds the
//! message model, that byte-exact object encoding and the store the SuperLink and
//! SuperNode keep objects in. It has no async runtime dependency, so the Wasm guest SDK can
//! use it too.
//!
//! # Layout
//!
//! - [`records`]: [`Message`], [`Metadata`], [`Error`], [`RecordDict`] and the three record
//!   kinds ([`ArrayRecord`], [`MetricRecord`], [`ConfigRecord`]), ordered like Python dicts,
//!   with conversions to and from the `flwr.proto` types.
//! - [`npy`]: the `.npy` files that numpy Arrays carry, byte-identical to `numpy.save`.
//! - [`objects`]: the object encoding ([`message_to_objects`], [`message_from_objects`],
//!   [`message_id`]) and Flower's check of received objects ([`validate_object`]).
//! - [`routing`]: the routing rules a host applies to the messages a Wasm app hands it
//!   ([`routing::prepare_instruction`], [`routing::route_reply`]).
//! - [`store`]: [`ObjectStore`], with preregistration, pending objects, reference-counted
//!   deletion and per-run cleanup.
//! - [`error`]: the error types.

pub mod error;
pub mod npy;
pub mod objects;
pub mod parallel;
pub mod records;
pub mod routing;
pub mod store;

pub use error::{NpyError, ObjectError, RecordError};
pub use objects::{
    encoded_message_from_objects, is_valid_object_id, message_from_objects, message_id, message_to_objects,
    validate_object, ObjectHead, ObjectType, MAX_ARRAY_CHUNK_SIZE,
};
pub use records::{
    Array, ArrayRecord, ConfigRecord, ConfigValue, Error, Message, Metadata, MetricRecord, MetricValue, OrderedMap,
    Record, RecordDict,
};
pub use store::{ObjectLookup, ObjectStore};
