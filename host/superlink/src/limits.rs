//! How much input the SuperLink accepts where it enters, and how much one run may hold.
//! Each refusal is a RESOURCE_EXHAUSTED status that names the size and the limit; the
//! server keeps serving.

/// Size limits on requests, and quotas per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest FAB accepted by StartRun (Flower: 10 MiB).
    pub max_fab_bytes: usize,
    /// Largest single object (an array chunk is at most 20 MiB in Flower 1.20; other
    /// objects are small unless a record holds huge lists).
    pub max_object_bytes: usize,
    /// Most objects in one message's tree.
    pub max_objects_per_message: usize,
    /// Most messages in one push.
    pub max_messages_per_push: usize,
    /// Most run-config overrides in one StartRun.
    pub max_run_config_entries: usize,
    /// Largest encoded run-config overrides in one StartRun.
    pub max_run_config_bytes: usize,
    /// Most bytes of message payload objects kept in the state database (`--database`),
    /// so that messages in flight survive a restart; past it, objects are held in memory
    /// only.
    pub max_kept_object_bytes: u64,
    /// Most bytes one run may hold in messages and payload objects (each object also
    /// costs [`sepal_core::store::OBJECT_OVERHEAD`]), Wasm and Python ServerApps alike.
    pub max_run_bytes: usize,
    /// Most instructions one run may have stored at once (sent and not yet answered and
    /// pulled).
    pub max_run_messages: usize,
    /// Most runs whose ServerApps run at once; later runs wait, pending.
    pub max_concurrent_runs: usize,
    /// Bytes a run may hold before its replies' uploads wait their turn (see
    /// [`crate::link::ReplyQueues`]).
    pub reply_buffer_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_fab_bytes: 10 * 1024 * 1024,
            max_object_bytes: 256 * 1024 * 1024,
            max_objects_per_message: 100_000,
            max_messages_per_push: 100_000,
            max_run_config_entries: 1_000,
            max_run_config_bytes: 1024 * 1024,
            max_kept_object_bytes: 4 << 30,
            max_run_bytes: 4 << 30,
            max_run_messages: 100_000,
            max_concurrent_runs: 16,
            reply_buffer_bytes: 128 << 20,
        }
    }
}

/// The RESOURCE_EXHAUSTED error for `what` of `size` over `limit`.
pub(crate) fn too_large(what: &str, size: usize, limit: usize) -> crate::error::Error {
    crate::error::Error::ResourceExhausted(format!("{what} is {size}; the limit is {limit}"))
}
