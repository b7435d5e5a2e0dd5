//! Error types of this crate.
//!
//! Each error says what was wrong and, where there is one, with which object, key or value.

use crate::objects::ObjectType;

/// A `.npy` payload could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    /// The bytes do not start with the `.npy` magic string.
    #[error("not a .npy file: {0}")]
    NotNpy(String),
    /// The format version is not 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {major}.{minor}")]
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The header dictionary could not be parsed.
    #[error("malformed .npy header: {0}")]
    BadHeader(String),
    /// The header names a dtype this crate does not read or write.
    #[error("unsupported .npy dtype {0:?}")]
    UnsupportedDtype(String),
    /// The array holds another element type than the one requested.
    #[error("array holds {found:?} elements, not {expected:?}")]
    WrongDtype {
        /// The numpy `descr` that was requested (for example `<f4`).
        expected: String,
        /// The numpy `descr` found in the header.
        found: String,
    },
    /// The number of values does not match the product of the shape.
    #[error("shape {shape:?} holds {expected} elements but {found} values were given")]
    ShapeMismatch {
        /// The requested shape.
        shape: Vec<usize>,
        /// The number of elements the shape holds.
        expected: usize,
        /// The number of values given.
        found: usize,
    },
    /// A dimension does not fit Flower's `int32` shape field, or the size overflows.
    #[error("shape {0:?} is too large")]
    ShapeTooLarge(Vec<usize>),
    /// The data after the header has the wrong length for its shape and dtype.
    #[error(".npy data holds {found} bytes but shape {shape:?} of {descr:?} needs {expected}")]
    DataLength {
        /// Shape from the header.
        shape: Vec<usize>,
        /// Dtype `descr` from the header.
        descr: String,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The Array's `stype` is not `numpy.ndarray`, so its data is not a `.npy` file.
    #[error("array stype is {0:?}, not \"numpy.ndarray\"")]
    NotNumpy(String),
}

/// A protobuf record or message could not be turned into this crate's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A record item has no value (its protobuf `oneof` is unset).
    #[error("{record} item {key:?} has no value")]
    MissingValue {
        /// The record kind (`ArrayRecord`, `MetricRecord`, `ConfigRecord`, `RecordDict`).
        record: &'static str,
        /// The item's key.
        key: String,
    },
    /// A `flwr.proto.Message` has no metadata.
    #[error("message has no metadata")]
    MissingMetadata,
}

/// An object, object tree or object id is invalid, or objects are inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// The string is not an object id (64 hexadecimal characters).
    #[error("invalid object id {0:?}: expected 64 hexadecimal characters")]
    InvalidId(String),
    /// The object's bytes do not hash to its id.
    #[error("object {id} does not match its content hash {actual}")]
    HashMismatch {
        /// The claimed id.
        id: String,
        /// The sha256 of the bytes.
        actual: String,
    },
    /// The object's bytes do not have the structure Flower expects.
    /// The message is Flower's own (`FAILED_PRECONDITION` text on `PushObject`).
    #[error("Object with ID '{object_id}' has an unexpected structure. {reason}")]
    Malformed {
        /// The object's id (sha256 of its bytes).
        object_id: String,
        /// What was wrong.
        reason: String,
    },
    /// An object named by the tree or by a parent is not available.
    #[error("object {0} is missing")]
    Missing(String),
    /// An object is another type than its position requires.
    #[error("object {id} has type {found} where {expected} is expected")]
    UnexpectedType {
        /// The object's id.
        id: String,
        /// The type its parent requires.
        expected: ObjectType,
        /// The type in its head.
        found: ObjectType,
    },
    /// The object tree does not list the children the object's head lists.
    #[error("object tree does not match object {id}: {reason}")]
    TreeMismatch {
        /// The object's id.
        id: String,
        /// What differs.
        reason: String,
    },
    /// Storing more would take a run past the bytes it may hold.
    #[error(
        "run {run_id} holds {held} bytes of messages and objects; {wanted} more would pass its limit of {limit} bytes"
    )]
    RunQuota {
        /// The run.
        run_id: u64,
        /// What the run holds now, in bytes (objects, plus [`crate::store::OBJECT_OVERHEAD`] each).
        held: usize,
        /// What storing would add.
        wanted: usize,
        /// The run's limit.
        limit: usize,
    },
    /// The message id on the wire differs from the id of its Message object.
    #[error("message id {wire:?} differs from its Message object id {object}")]
    MessageIdMismatch {
        /// The id in the wire metadata.
        wire: String,
        /// The tree root's id.
        object: String,
    },
}

impl ObjectError {
    /// Builds [`ObjectError::Malformed`].
    pub fn malformed(object_id: &str, reason: impl Into<String>) -> Self {
        ObjectError::Malformed { object_id: object_id.to_owned(), reason: reason.into() }
    }
}
