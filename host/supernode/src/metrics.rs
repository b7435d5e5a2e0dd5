//! What a SuperNode shows at `--metrics-address`: the messages it handled, by outcome,
//! and how long each took from arrival to reply pushed; how long its pulls took; the Wasm
//! ClientApp invocations ([`sepal_metrics::SandboxMetrics`]); its ClientAppIo calls;
//! whether it is registered with its SuperLink (`/healthz`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sepal_metrics::Exposition;

use crate::node::NodeState;

/// What became of a message.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// The ClientApp's reply was pushed.
    Replied,
    /// The ClientApp failed (or its inputs could not be had): an error reply was pushed.
    Failed,
    /// Its run was no longer running: nothing was pushed.
    Ignored,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PullLabel {
    result: &'static str,
}

/// The SuperNode's message metrics.
#[derive(Clone)]
pub struct NodeMetrics {
    messages: Family<OutcomeLabel, Counter>,
    seconds: Histogram,
    pulls: Family<PullLabel, Histogram>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        // 1 ms (a warm Wasm message) to 10 min (Flower's default ClientApp time).
        let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 600.0];
        let pulls = Family::new_with_constructor(pull_histogram as fn() -> Histogram);
        Self { messages: Family::default(), seconds: Histogram::new(buckets), pulls }
    }
}

/// 1 ms to a held pull's whole wait (20 s) and a slow link's retries beyond.
fn pull_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 20.0, 60.0])
}

impl NodeMetrics {
    /// Registers `sepal_supernode_messages_total`, `sepal_supernode_message_seconds` and
    /// `sepal_supernode_pull_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sepal_supernode_pull_seconds",
            "Seconds per PullMessages call, by result (message, or empty: a held pull waits for work)",
            self.pulls.clone(),
        );
        registry.register(
            "sepal_supernode_messages",
            "Messages handled, by outcome (replied, failed: an error reply, ignored: run over)",
            self.messages.clone(),
        );
        registry.register(
            "sepal_supernode_message_seconds",
            "Seconds from a message's arrival to its reply pushed",
            self.seconds.clone(),
        );
    }

    /// Times one pull; `brought` says whether it brought a message.
    pub fn record_pull(&self, brought: bool, took: Duration) {
        let result = if brought { "message" } else { "empty" };
        self.pulls.get_or_create(&PullLabel { result }).observe(took.as_secs_f64());
    }

    /// Counts one handled message.
    pub fn record(&self, outcome: Outcome, took: Duration) {
        let outcome = match outcome {
            Outcome::Replied => "replied",
            Outcome::Failed => "failed",
            Outcome::Ignored => "ignored",
        };
        self.messages.get_or_create(&OutcomeLabel { outcome }).inc();
        if !matches!(outcome, "ignored") {
            self.seconds.observe(took.as_secs_f64());
        }
    }
}

/// What `/metrics` and `/healthz` serve: healthy while the node is registered.
pub fn exposition(registry: Registry, state: Arc<NodeState>) -> Exposition {
    Exposition::new(
        registry,
        || {},
        move || {
            if state.node_id() == 0 {
                Err("not registered with the SuperLink".to_string())
            } else {
                Ok(())
            }
        },
    )
}
