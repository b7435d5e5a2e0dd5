//! One ClientApp message: the instruction and the run's context in, the routed reply and
//! the new context out.
//!
//! What the app returns is untrusted: it is decoded with limits, must carry either content
//! or an error, gets its routing from the host ([`route_reply`]: an app cannot reply for
//! another node, run or message), and of the context it returns only the state is kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use sepal_core::records::{Message, Metadata};
use sepal_core::routing::{now_secs, route_reply};
use sepal_proto::pb;
use sepal_sandbox::{decode_reply, ClientComponent, LogSink};

use crate::{AppFailure, Executor, Side};

/// How long a ClientApp may take on the instruction `ins`: until it expires, less a margin
/// (5 % of its TTL, 0.5-60 s) so that an error reply still arrives in time, and at most
/// the operator's `timeout` if one is set.
pub fn time_to_reply(ins: &pb::Metadata, timeout: Option<Duration>) -> Duration {
    let margin = (ins.ttl * 0.05).clamp(0.5, 60.0);
    let left = Duration::from_secs_f64((ins.created_at + ins.ttl - margin - now_secs()).clamp(0.0, 1e9));
    timeout.map_or(left, |t| t.min(left))
}

/// An instruction as a ClientApp is handed it: its protobuf bytes (`flwr.proto.Message`,
/// content inline), and its metadata, which the reply is routed by. Encode it straight from
/// the message's objects (`ObjectStore::take_encoded_message`, `encoded_message_from_objects`):
/// the model is then copied once.
#[derive(Debug, Clone)]
pub struct Instruction {
    /// The message's metadata (its id is the id of its Message object).
    pub metadata: pb::Metadata,
    /// The whole message, encoded.
    pub encoded: Vec<u8>,
}

impl From<(Metadata, Vec<u8>)> for Instruction {
    /// What `ObjectStore::take_encoded_message` and `encoded_message_from_objects` return.
    fn from((metadata, encoded): (Metadata, Vec<u8>)) -> Self {
        Instruction { metadata: pb::Metadata::from(&metadata), encoded }
    }
}

impl Executor {
    /// Runs `component` on `instruction` with the run's `context`, as
    /// node `node_id`, for at most `time_left` (see [`time_to_reply`]) and the operator's
    /// limits. Returns the reply, routed as node `node_id`'s answer to the instruction, and
    /// the context with the app's new state.
    pub async fn handle_message(
        &self,
        component: &ClientComponent,
        instruction: Instruction,
        context: &pb::Context,
        node_id: u64,
        time_left: Duration,
        log: Arc<dyn LogSink>,
    ) -> Result<(Message, pb::Context), AppFailure> {
        let limits = self.settings.limits.clone().with_deadline_at_most(time_left);
        let Instruction { metadata: instruction_meta, encoded } = instruction;
        let started = Instant::now();
        let ran = self
            .sandbox
            .client_runner()
            .handle(component, &encoded, &context.encode_to_vec(), &limits, &self.settings.grants, log)
            .await;
        let (reply, context_out) = ran.inspect_err(|e| self.observe(Side::Client, started, e.kind()))?;
        let handled = finish_reply(&instruction_meta, context, node_id, reply, &context_out);
        self.observe(Side::Client, started, if handled.is_ok() { "ok" } else { "invalid_output" });
        handled
    }
}

/// The app's reply and context, checked and routed as node `node_id`'s answer.
fn finish_reply(
    instruction: &pb::Metadata,
    context: &pb::Context,
    node_id: u64,
    reply: Vec<u8>,
    context_out: &[u8],
) -> Result<(Message, pb::Context), AppFailure> {
    // From the owned buffer: the reply's arrays become slices of it, not copies.
    let reply: pb::Message = decode_reply(bytes::Bytes::from(reply))?;
    let mut reply =
        Message::try_from(reply).map_err(|e| AppFailure::Raised(format!("the app's reply is invalid: {e}")))?;
    if reply.content.is_some() == reply.error.is_some() {
        return Err(AppFailure::Raised("the app's reply must carry either content or an error".into()));
    }
    route_reply(&mut reply, instruction, node_id);
    let returned: pb::Context = decode_reply(context_out)?;
    // Only the state is the app's to change; identity and configs stay the node's.
    Ok((reply, pb::Context { state: returned.state, ..context.clone() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_window_keeps_a_margin_and_the_operators_timeout() {
        let now = now_secs();
        let ins = pb::Metadata { created_at: now, ttl: 100.0, ..Default::default() };
        let left = time_to_reply(&ins, None).as_secs_f64();
        assert!((93.0..=95.0).contains(&left), "{left}");
        assert_eq!(time_to_reply(&ins, Some(Duration::from_secs(10))), Duration::from_secs(10));
        let expired = pb::Metadata { created_at: now - 200.0, ttl: 100.0, ..Default::default() };
        assert_eq!(time_to_reply(&expired, None), Duration::ZERO);
    }
}
