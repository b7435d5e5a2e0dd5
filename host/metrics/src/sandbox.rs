//! What a process running Wasm apps counts of them: invocations by app side and outcome,
//! and how long they ran (`sepal_sandbox_invocations_total`,
//! `sepal_sandbox_invocation_seconds`), fed by the executor's observer.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sepal_executor::{Invocation, Observer, Side};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    side: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabel {
    side: &'static str,
}

/// Wasm app invocations, registered in a registry.
#[derive(Clone)]
pub struct SandboxMetrics {
    invocations: Family<InvocationLabels, Counter>,
    seconds: Family<SideLabel, Histogram>,
}

impl SandboxMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let seconds = Family::new_with_constructor(seconds_histogram as fn() -> Histogram);
        let m = Self { invocations: Family::default(), seconds };
        registry.register(
            "sepal_sandbox_invocations",
            "Wasm app invocations (one ClientApp message, one ServerApp run) by side and outcome: ok, or the cause of the failure",
            m.invocations.clone(),
        );
        registry.register("sepal_sandbox_invocation_seconds", "How long Wasm app invocations ran", m.seconds.clone());
        m
    }

    /// Counts one invocation.
    pub fn record(&self, invocation: &Invocation) {
        let side = match invocation.side {
            Side::Client => "clientapp",
            Side::Server => "serverapp",
        };
        self.invocations.get_or_create(&InvocationLabels { side, outcome: invocation.outcome }).inc();
        self.seconds.get_or_create(&SideLabel { side }).observe(invocation.seconds);
    }

    /// An executor observer that records here.
    pub fn observer(&self) -> Observer {
        let this = self.clone();
        Arc::new(move |invocation| this.record(invocation))
    }
}

/// 100 µs (a warm ClientApp message) to an hour (a long ServerApp run).
fn seconds_histogram() -> Histogram {
    Histogram::new([0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0])
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn invocations_are_counted_by_side_and_outcome() {
        let mut registry = Registry::default();
        let metrics = SandboxMetrics::register(&mut registry);
        let observe = metrics.observer();
        observe(&Invocation { side: Side::Client, outcome: "ok", seconds: 0.002 });
        observe(&Invocation { side: Side::Client, outcome: "ok", seconds: 0.003 });
        observe(&Invocation { side: Side::Server, outcome: "deadline", seconds: 5.0 });
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"sepal_sandbox_invocations_total{side="clientapp",outcome="ok"} 2"#), "{text}");
        assert!(text.contains(r#"sepal_sandbox_invocations_total{side="serverapp",outcome="deadline"} 1"#), "{text}");
        assert!(text.contains(r#"sepal_sandbox_invocation_seconds_count{side="clientapp"} 2"#), "{text}");
    }
}
