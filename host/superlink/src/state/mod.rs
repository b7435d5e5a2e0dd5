//! The SuperLink's state: runs, nodes, messages, logs and FABs, behind one trait.
//!
//! Payload objects are not here: they live in the content-addressed
//! [`sepal_core::store::ObjectStore`]. This state keeps each message's metadata and the
//! shape of its object tree, which is what the Fleet and ServerAppIo services route on.
//!
//! The backends are [`memory::MemoryState`], [`sqlite::SqliteState`] (`--database <file>`)
//! and [`postgres::PgState`] (`--database postgresql://...`); every backend passes the
//! shared behaviour suite in `conformance` (public with the `conformance` feature, for
//! backends tested against a real server elsewhere).

pub mod memory;
pub mod postgres;
pub mod sqlite;
pub mod status;
pub mod timed;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::collections::HashMap;

use bytes::Bytes;
use rand::Rng;
use sepal_proto::pb;

pub use status::RunState;

pub use sepal_core::routing::SUPERLINK_NODE_ID;

/// A heartbeat interval so large that a run is never considered inactive.
pub const HEARTBEAT_NEVER: f64 = 1e300;

/// How many missed heartbeats are tolerated before a node or run counts as gone.
pub const HEARTBEAT_PATIENCE: f64 = 2.0;

/// Details written on a run whose ServerApp stopped sending heartbeats.
pub const NO_HEARTBEAT_DETAILS: &str = "No heartbeat received from the run.";

/// Replies may outlive their instruction by this much (seconds) because of clock skew.
pub const MESSAGE_TTL_TOLERANCE: f64 = 1e-1;

/// Errors of the state itself (not protocol outcomes, which are return values).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No run with this id.
    #[error("run {0} not found")]
    RunNotFound(u64),
    /// No node with this id.
    #[error("node {0} not found")]
    NodeNotFound(u64),
    /// A public key may belong to one node only.
    #[error("public key already in use")]
    PublicKeyInUse,
    /// The backend failed (I/O, database); the text says how.
    #[error("state backend failed: {0}")]
    Backend(String),
}

/// Result type of state operations.
pub type StateResult<T> = Result<T, StateError>;

/// What a new run starts with.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// `<publisher>/<name>` from the FAB manifest.
    pub fab_id: String,
    /// The FAB's version.
    pub fab_version: String,
    /// sha256 of the FAB.
    pub fab_hash: String,
    /// Run config overrides given at submission.
    pub override_config: HashMap<String, pb::Scalar>,
    /// Federation options given at submission.
    pub federation_options: pb::ConfigRecord,
    /// The submitting account (empty without user authentication).
    pub flwr_aid: String,
}

/// A message as the state keeps it: metadata (and error, if any) plus its object tree.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// The content-less wire message (`content` is an empty RecordDict or absent).
    pub message: pb::Message,
    /// The tree of objects that carry the payload.
    pub tree: pb::ObjectTree,
}

/// A message stored now, as [`LinkState::live_messages`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveMessage {
    /// The message and its tree.
    pub message: StoredMessage,
    /// An instruction that was handed to its node (always `false` for a reply).
    pub delivered: bool,
}

impl StoredMessage {
    /// The message's metadata (every stored message has one).
    pub fn metadata(&self) -> &pb::Metadata {
        self.message.metadata.as_ref().expect("stored messages always carry metadata")
    }

    /// The message id (its object id).
    pub fn id(&self) -> &str {
        &self.metadata().message_id
    }
}

/// Why an instruction was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionRejected {
    /// The run does not exist.
    #[error("run {0} not found")]
    UnknownRun(u64),
    /// The destination node is not registered.
    #[error("destination node {0} is not registered")]
    UnknownNode(u64),
}

/// Why a reply was not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplyRejected {
    /// No instruction with this id was ever stored.
    #[error("message {0} that this reply answers does not exist")]
    UnknownInstruction(String),
    /// The instruction existed but has expired or was already answered.
    #[error("message {0} that this reply answers has expired or was already answered")]
    Gone(String),
    /// The reply comes from a node the instruction was not sent to.
    #[error("message {instruction} was sent to node {addressee}, not to node {sender}")]
    WrongNode {
        /// Instruction id.
        instruction: String,
        /// The node the instruction went to.
        addressee: u64,
        /// The node that replied.
        sender: u64,
    },
    /// The reply claims another run than its instruction.
    #[error("reply names run {reply_run} but message {instruction} belongs to run {run}")]
    WrongRun {
        /// Instruction id.
        instruction: String,
        /// Run of the instruction.
        run: u64,
        /// Run named by the reply.
        reply_run: u64,
    },
    /// The reply's TTL reaches past its instruction's expiry.
    #[error("reply TTL {ttl:.2}s exceeds the {max:.2}s left to message {instruction}")]
    TtlTooLong {
        /// Instruction id.
        instruction: String,
        /// The reply's TTL.
        ttl: f64,
        /// The largest allowed TTL.
        max: f64,
    },
}

/// Checks a reply against the instruction it answers (same for every backend): it must
/// come from the node the instruction went to, name the same run, arrive before the
/// instruction expires, and not outlive it.
pub(crate) fn check_reply(ins: &pb::Metadata, reply: &pb::Metadata, now: f64) -> Result<(), ReplyRejected> {
    let instruction = || reply.reply_to_message_id.clone();
    if ins.dst_node_id != reply.src_node_id {
        return Err(ReplyRejected::WrongNode {
            instruction: instruction(),
            addressee: ins.dst_node_id,
            sender: reply.src_node_id,
        });
    }
    if ins.run_id != reply.run_id {
        return Err(ReplyRejected::WrongRun { instruction: instruction(), run: ins.run_id, reply_run: reply.run_id });
    }
    if ins.created_at + ins.ttl <= now {
        return Err(ReplyRejected::Gone(instruction()));
    }
    let max = ins.created_at + ins.ttl - reply.created_at;
    if reply.ttl > 0.0 && reply.ttl - max > MESSAGE_TTL_TOLERANCE {
        return Err(ReplyRejected::TtlTooLong { instruction: instruction(), ttl: reply.ttl, max });
    }
    Ok(())
}

/// Whether a message's TTL has run out by `now` (a NaN TTL or stamp never expires, as in
/// Flower's float comparison).
pub(crate) fn expired(meta: &pb::Metadata, now: f64) -> bool {
    meta.created_at + meta.ttl < now
}

/// A random id above the SuperLink's that `taken` does not know (runs and nodes alike).
pub(crate) fn random_id(taken: impl Fn(u64) -> StateResult<bool>) -> StateResult<u64> {
    let mut rng = rand::thread_rng();
    loop {
        let id: u64 = rng.gen();
        if id > SUPERLINK_NODE_ID && !taken(id)? {
            return Ok(id);
        }
    }
}

/// A change that other SuperLink processes sharing the state (replicas) must hear of, so
/// that what waits on it there wakes: see [`LinkState::announce`] and [`LinkState::listen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A run was submitted.
    RunSubmitted,
    /// A run's status or log changed.
    RunChanged(u64),
    /// An instruction for this node was stored, or the node finished one.
    Instruction(u64),
    /// A reply of this run was stored.
    Reply(u64),
    /// A node registered or left.
    NodeChanged,
    /// A pushed object was stored.
    ObjectStored,
}

/// Receives the changes other processes announce.
pub type ChangeSink = std::sync::Arc<dyn Fn(Change) + Send + Sync>;

/// Which run a node's next instruction comes from: runs take turns. Among the running
/// runs with an instruction waiting for the node, not in `skip_runs`, the first after
/// `after_run` in id order (wrapping around), so that one run's many instructions cannot
/// hold back another's. Within a run, the oldest instruction goes first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pick {
    /// The run the node was last served from.
    pub after_run: Option<u64>,
    /// Runs the node cannot take more work from now (a Sepal SuperNode says which).
    pub skip_runs: Vec<u64>,
}

impl Pick {
    /// Whether `run_id` comes after [`Pick::after_run`] in a turn: its place in the order
    /// the backends share (runs after the last one served first, then the rest, each part
    /// by id).
    pub fn turn_key(&self, run_id: u64) -> (bool, u64) {
        (self.after_run.is_some_and(|after| run_id <= after), run_id)
    }
}

/// The answer to one requested instruction id when the ServerApp pulls replies.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyLookup {
    /// A real reply arrived.
    Reply(StoredMessage),
    /// No reply yet and the instruction is still live: nothing to return.
    Waiting,
    /// The instruction is unknown or expired (Flower's error code 3).
    InstructionUnavailable {
        /// The requested instruction id.
        instruction_id: String,
    },
    /// The reply expired before it was pulled (error code 4).
    ReplyUnavailable {
        /// Metadata of the instruction.
        instruction: pb::Metadata,
    },
    /// The destination node is offline or gone (error code 5).
    NodeUnavailable {
        /// Metadata of the instruction.
        instruction: pb::Metadata,
    },
}

/// The SuperLink's state.
///
/// Every method is synchronous and short; implementations synchronise internally.
/// Unknown ids are reported as [`StateError`] where the caller must fail, and as
/// `Option`/`bool`/`Rejected` values where Flower treats them as ordinary outcomes.
pub trait LinkState: Send + Sync + 'static {
    // === runs ===

    /// Creates a pending run with a random id and an empty ServerApp context.
    fn create_run(&self, new: NewRun) -> StateResult<u64>;

    /// The run, with its status brought up to date (a starting or running run whose
    /// ServerApp missed its heartbeats becomes finished:failed).
    fn run(&self, run_id: u64) -> StateResult<Option<pb::Run>>;

    /// The run's status only, brought up to date as [`LinkState::run`] does. Every Fleet
    /// and ServerAppIo call checks it, so backends that hold runs in memory answer it
    /// without copying the whole run.
    fn run_status(&self, run_id: u64) -> StateResult<Option<pb::RunStatus>> {
        Ok(self.run(run_id)?.map(|run| run.status.unwrap_or_default()))
    }

    /// Every run id.
    fn run_ids(&self) -> StateResult<Vec<u64>>;

    /// Applies a status change if Flower's transition rules allow it; returns whether
    /// it did. Entering starting/running/finished stamps the matching timestamp.
    fn update_run_status(&self, run_id: u64, status: pb::RunStatus) -> StateResult<bool>;

    /// Moves one pending run to starting and returns it, or `None` if none is pending.
    fn claim_pending_run(&self) -> StateResult<Option<u64>>;

    /// Ids of the runs that are pending.
    fn pending_run_ids(&self) -> StateResult<Vec<u64>>;

    /// Ids of the runs whose stored status is starting or running, oldest first (a run
    /// whose ServerApp went silent is among them until [`LinkState::run`] fails it).
    fn active_run_ids(&self) -> StateResult<Vec<u64>>;

    /// Records a ServerApp heartbeat; `false` unless the run is starting or running.
    fn ack_app_heartbeat(&self, run_id: u64, interval: f64) -> StateResult<bool>;

    /// The ServerApp context of a run.
    fn serverapp_context(&self, run_id: u64) -> StateResult<Option<pb::Context>>;

    /// Replaces the ServerApp context of a run.
    fn set_serverapp_context(&self, run_id: u64, context: pb::Context) -> StateResult<()>;

    /// The federation options a run was submitted with.
    fn federation_options(&self, run_id: u64) -> StateResult<Option<pb::ConfigRecord>>;

    /// Appends text to a run's log, stamped with the current time.
    fn add_log(&self, run_id: u64, text: &str) -> StateResult<()>;

    /// Log text stored strictly after `after` (Unix seconds), and the stamp of the
    /// latest entry returned (0 when nothing is returned).
    fn logs_after(&self, run_id: u64, after: f64) -> StateResult<(String, f64)>;

    // === FABs ===

    /// Stores a FAB under its hash (idempotent).
    fn store_fab(&self, hash: &str, content: Bytes) -> StateResult<()>;

    /// The FAB with this hash.
    fn fab(&self, hash: &str) -> StateResult<Option<Bytes>>;

    // === nodes ===

    /// Registers a node with a random id, online for `heartbeat_interval` seconds.
    fn create_node(&self, heartbeat_interval: f64) -> StateResult<u64>;

    /// Removes a node and its public key binding.
    fn delete_node(&self, node_id: u64) -> StateResult<()>;

    /// Extends a node's liveness to `now + HEARTBEAT_PATIENCE * interval`.
    fn ack_node_heartbeat(&self, node_id: u64, interval: f64) -> StateResult<bool>;

    /// Extends a node's liveness to at least `now + HEARTBEAT_PATIENCE * interval`, never
    /// shortening it (a held pull is a sign of life, but must not undo a heartbeat that
    /// promised longer). False if the node does not exist.
    fn keep_node_online(&self, node_id: u64, interval: f64) -> StateResult<bool>;

    /// Nodes whose liveness has not lapsed, sorted.
    fn online_nodes(&self) -> StateResult<Vec<u64>>;

    /// Binds a public key to a node (one node per key).
    fn bind_public_key(&self, node_id: u64, key: &[u8]) -> StateResult<()>;

    /// The node a public key is bound to.
    fn node_for_key(&self, key: &[u8]) -> StateResult<Option<u64>>;

    // === messages ===

    /// Stores an instruction (ServerApp -> node) and returns its id.
    fn store_instruction(&self, msg: StoredMessage) -> StateResult<Result<String, InstructionRejected>>;

    /// Hands out an undelivered, unexpired instruction for a node, marking it delivered:
    /// the oldest of the run [`Pick`] chooses. Instructions of runs that are not running
    /// are never handed out.
    fn next_instruction(&self, node_id: u64, pick: &Pick) -> StateResult<Option<StoredMessage>>;

    /// Stores a reply (node -> ServerApp) after checking it against its instruction.
    fn store_reply(&self, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>>;

    /// Answers a pull for replies, one entry per requested id in request order. Every
    /// instruction answered here (really or with an error) is deleted with its reply.
    fn take_replies(&self, instruction_ids: &[String]) -> StateResult<Vec<ReplyLookup>>;

    /// Deletes instructions (and their replies).
    fn delete_messages(&self, instruction_ids: &[String]) -> StateResult<()>;

    /// Ids of every stored instruction of a run, oldest first.
    fn instruction_ids_of_run(&self, run_id: u64) -> StateResult<Vec<String>>;

    /// How many instructions of a run are stored (delivered or not, answered or not).
    fn instruction_count(&self, run_id: u64) -> StateResult<usize>;

    /// Deletes every instruction and reply of a run that is over, and what tells its late
    /// replies apart (a run that is over takes no reply); returns how many instructions
    /// were deleted.
    fn drop_run_messages(&self, run_id: u64) -> StateResult<usize>;

    /// The instructions and replies stored now (at start, the objects they need are put
    /// back in the object store).
    fn live_messages(&self) -> StateResult<Vec<LiveMessage>>;

    // === payload objects ===
    //
    // The object store is in memory. A backend that survives restarts also keeps the
    // objects' bytes, so that messages in flight at a restart keep their payload; the
    // in-memory backend keeps none (its objects die with the process, as it does).

    /// Whether this backend keeps payload objects across restarts.
    fn keeps_objects(&self) -> bool {
        false
    }

    /// Keeps an object's bytes (replacing nothing: an id names its bytes).
    fn keep_objects(&self, _objects: &[(String, Bytes)]) -> StateResult<()> {
        Ok(())
    }

    /// The kept objects among `ids`.
    fn kept_objects(&self, _ids: &[String]) -> StateResult<Vec<(String, Bytes)>> {
        Ok(Vec::new())
    }

    /// Forgets kept objects.
    fn forget_objects(&self, _ids: &[String]) -> StateResult<()> {
        Ok(())
    }

    /// Every kept object's id and size.
    fn kept_object_sizes(&self) -> StateResult<Vec<(String, u64)>> {
        Ok(Vec::new())
    }

    // === replicas ===
    //
    // A backend that several SuperLink processes may share (PostgreSQL) passes changes
    // between them and leases each run's ServerApp to one of them. A backend of one
    // process has nobody to tell, and that process owns every run.

    /// Whether other SuperLink processes may share this state.
    fn shared(&self) -> bool {
        false
    }

    /// Tells the other processes sharing this state of a change made here (without
    /// waiting: a change that cannot be sent is logged, and their waiters' own deadlines
    /// still bound how long they wait).
    fn announce(&self, _change: Change) {}

    /// Calls `sink` with every change another process announces, from now on.
    fn listen(&self, _sink: ChangeSink) -> StateResult<()> {
        Ok(())
    }

    /// Takes or renews the lease on a run's ServerApp for `owner` until `ttl` seconds from
    /// now, if nobody else holds an unexpired one; whether `owner` holds it now.
    fn lease_run(&self, _run_id: u64, _owner: &str, _ttl: f64) -> StateResult<bool> {
        Ok(true)
    }
}
