//! [`TimedState`]: any [`LinkState`] with the duration of each call recorded in a
//! histogram by call name (`sepal_state_seconds`), for `--metrics-address`. It is where
//! an operator sees the database's latency as the SuperLink feels it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sepal_proto::pb;

use super::{
    Change, ChangeSink, InstructionRejected, LinkState, LiveMessage, NewRun, Pick, ReplyLookup, ReplyRejected,
    StateResult, StoredMessage,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    call: &'static str,
}

/// A state whose calls are timed.
pub struct TimedState {
    inner: Arc<dyn LinkState>,
    seconds: Family<CallLabel, Histogram>,
}

impl TimedState {
    /// Times `inner`'s calls into `sepal_state_seconds`, registered in `registry`.
    pub fn register(inner: Arc<dyn LinkState>, registry: &mut Registry) -> Self {
        let seconds = Family::new_with_constructor(seconds_histogram as fn() -> Histogram);
        registry.register(
            "sepal_state_seconds",
            "Seconds per call to the SuperLink's state (its database), by call",
            seconds.clone(),
        );
        TimedState { inner, seconds }
    }

    fn observe(&self, call: &'static str, started: Instant) {
        self.seconds.get_or_create(&CallLabel { call }).observe(started.elapsed().as_secs_f64());
    }
}

/// 10 µs (memory) to 1 s (a database in trouble).
fn seconds_histogram() -> Histogram {
    Histogram::new([0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
}

/// Implements the timed calls by forwarding each to the inner state and recording how
/// long it took; the rest are forwarded as they are.
macro_rules! timed_state {
    (
        timed { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )* }
        forwarded { $( fn $fname:ident(&self $(, $farg:ident : $fty:ty)*) -> $fret:ty; )* }
    ) => {
        #[allow(clippy::unused_unit)]
        impl LinkState for TimedState {
            $( fn $name(&self $(, $arg: $ty)*) -> $ret {
                let started = Instant::now();
                let out = self.inner.$name($($arg),*);
                self.observe(stringify!($name), started);
                out
            } )*
            $( fn $fname(&self $(, $farg: $fty)*) -> $fret {
                self.inner.$fname($($farg),*)
            } )*
        }
    };
}

timed_state! {
    timed {
        fn create_run(&self, new: NewRun) -> StateResult<u64>;
        fn run(&self, run_id: u64) -> StateResult<Option<pb::Run>>;
        fn run_status(&self, run_id: u64) -> StateResult<Option<pb::RunStatus>>;
        fn run_ids(&self) -> StateResult<Vec<u64>>;
        fn update_run_status(&self, run_id: u64, status: pb::RunStatus) -> StateResult<bool>;
        fn claim_pending_run(&self) -> StateResult<Option<u64>>;
        fn pending_run_ids(&self) -> StateResult<Vec<u64>>;
        fn active_run_ids(&self) -> StateResult<Vec<u64>>;
        fn ack_app_heartbeat(&self, run_id: u64, interval: f64) -> StateResult<bool>;
        fn serverapp_context(&self, run_id: u64) -> StateResult<Option<pb::Context>>;
        fn set_serverapp_context(&self, run_id: u64, context: pb::Context) -> StateResult<()>;
        fn federation_options(&self, run_id: u64) -> StateResult<Option<pb::ConfigRecord>>;
        fn add_log(&self, run_id: u64, text: &str) -> StateResult<()>;
        fn logs_after(&self, run_id: u64, after: f64) -> StateResult<(String, f64)>;
        fn store_fab(&self, hash: &str, content: Bytes) -> StateResult<()>;
        fn fab(&self, hash: &str) -> StateResult<Option<Bytes>>;
        fn create_node(&self, heartbeat_interval: f64) -> StateResult<u64>;
        fn delete_node(&self, node_id: u64) -> StateResult<()>;
        fn ack_node_heartbeat(&self, node_id: u64, interval: f64) -> StateResult<bool>;
        fn keep_node_online(&self, node_id: u64, interval: f64) -> StateResult<bool>;
        fn online_nodes(&self) -> StateResult<Vec<u64>>;
        fn bind_public_key(&self, node_id: u64, key: &[u8]) -> StateResult<()>;
        fn node_for_key(&self, key: &[u8]) -> StateResult<Option<u64>>;
        fn store_instruction(&self, msg: StoredMessage) -> StateResult<Result<String, InstructionRejected>>;
        fn next_instruction(&self, node_id: u64, pick: &Pick) -> StateResult<Option<StoredMessage>>;
        fn store_reply(&self, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>>;
        fn take_replies(&self, instruction_ids: &[String]) -> StateResult<Vec<ReplyLookup>>;
        fn delete_messages(&self, instruction_ids: &[String]) -> StateResult<()>;
        fn instruction_ids_of_run(&self, run_id: u64) -> StateResult<Vec<String>>;
        fn instruction_count(&self, run_id: u64) -> StateResult<usize>;
        fn drop_run_messages(&self, run_id: u64) -> StateResult<usize>;
        fn live_messages(&self) -> StateResult<Vec<LiveMessage>>;
        fn keep_objects(&self, objects: &[(String, Bytes)]) -> StateResult<()>;
        fn kept_objects(&self, ids: &[String]) -> StateResult<Vec<(String, Bytes)>>;
        fn forget_objects(&self, ids: &[String]) -> StateResult<()>;
        fn kept_object_sizes(&self) -> StateResult<Vec<(String, u64)>>;
        fn lease_run(&self, run_id: u64, owner: &str, ttl: f64) -> StateResult<bool>;
    }
    forwarded {
        fn keeps_objects(&self) -> bool;
        fn shared(&self) -> bool;
        fn announce(&self, change: Change) -> ();
        fn listen(&self, sink: ChangeSink) -> StateResult<()>;
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::state::memory::MemoryState;

    #[test]
    fn calls_are_timed_by_name_and_answered_by_the_inner_state() {
        let mut registry = Registry::default();
        let state = TimedState::register(Arc::new(MemoryState::new()), &mut registry);
        let run_id = state.create_run(NewRun::default()).unwrap();
        assert!(state.run(run_id).unwrap().is_some());
        assert!(state.run(run_id.wrapping_add(1)).unwrap().is_none());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"sepal_state_seconds_count{call="create_run"} 1"#), "{text}");
        assert!(text.contains(r#"sepal_state_seconds_count{call="run"} 2"#), "{text}");
    }
}
