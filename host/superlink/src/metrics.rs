//! What a SuperLink shows at `--metrics-address`: the gRPC calls of its three APIs
//! ([`sepal_metrics::RpcMetrics`]), and gauges read from its state at each scrape: nodes
//! online, runs by status, messages and payload bytes in flight. `/healthz` answers 200
//! while the state can be read.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sepal_metrics::Exposition;

use crate::link::Link;
use crate::state::status::RunState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// The SuperLink's gauges.
#[derive(Clone, Default)]
struct Gauges {
    nodes_online: Gauge,
    runs: Family<StatusLabel, Gauge>,
    messages_in_flight: Gauge,
    payload_bytes: Gauge,
}

impl Gauges {
    fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register("sepal_nodes_online", "SuperNodes online now", g.nodes_online.clone());
        registry.register("sepal_runs", "Runs by status (pending, starting, running, finished)", g.runs.clone());
        registry.register(
            "sepal_messages_in_flight",
            "Instructions of active runs not yet answered or dropped",
            g.messages_in_flight.clone(),
        );
        registry.register(
            "sepal_payload_bytes",
            "Bytes of message payload objects held for active runs",
            g.payload_bytes.clone(),
        );
        g
    }

    /// Reads the gauges from the state; a failed read leaves them as they were.
    fn refresh(&self, link: &Link) {
        if let Err(e) = self.try_refresh(link) {
            tracing::warn!("metrics: cannot read the state: {e}");
        }
    }

    fn try_refresh(&self, link: &Link) -> crate::state::StateResult<()> {
        self.nodes_online.set(link.state.online_nodes()?.len() as i64);
        let mut by_status = [("pending", 0), ("starting", 0), ("running", 0), ("finished", 0)];
        for run_id in link.state.run_ids()? {
            let status = link.state.run_status(run_id)?.unwrap_or_default();
            let slot = match RunState::parse(&status.status) {
                Some(RunState::Pending) => 0,
                Some(RunState::Starting) => 1,
                Some(RunState::Running) => 2,
                Some(RunState::Finished) => 3,
                None => continue,
            };
            by_status[slot].1 += 1;
        }
        for (status, n) in by_status {
            self.runs.get_or_create(&StatusLabel { status: status.into() }).set(n);
        }
        let (mut messages, mut bytes) = (0, 0);
        for run_id in link.state.active_run_ids()? {
            messages += link.state.instruction_count(run_id)?;
            bytes += link.objects.run_bytes(run_id);
        }
        self.messages_in_flight.set(messages as i64);
        self.payload_bytes.set(bytes as i64);
        Ok(())
    }
}

/// What `/metrics` and `/healthz` serve: `registry` (which holds the servers' call
/// metrics) with the gauges of `link` added.
pub fn exposition(link: Arc<Link>, mut registry: Registry) -> Exposition {
    let gauges = Gauges::register(&mut registry);
    let for_health = link.clone();
    Exposition::new(
        registry,
        move || gauges.refresh(&link),
        move || for_health.state.run_ids().map(|_| ()).map_err(|e| format!("the state cannot be read: {e}")),
    )
}
