//! The load generator: K simulated SuperNodes against a SuperLink's Fleet API.
//!
//! Each node has its own channel (its own HTTP/2 connection) and its own P-384 key, as a
//! Flower 1.20 SuperNode does: it registers (CreateNode with the default 30 s heartbeat
//! interval), then, until the window ends, sends SendNodeHeartbeat and empty PullMessages
//! (nothing is queued: what idle nodes do all day) as fast as it can or at an idle Flower
//! SuperNode's pace ([`Mode`]), and finally unregisters (DeleteNode). Every request is
//! signed as Flower's SuperNode signs it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sepal_proto::pb;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_wire::auth::Signer;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::measure::Latencies;

/// Flower 1.20's SuperNode heartbeat interval (`HEARTBEAT_DEFAULT_INTERVAL`, seconds).
const HEARTBEAT_INTERVAL: f64 = 30.0;

/// At most this many CreateNode/DeleteNode calls (and new connections) at once.
const SETUP_CONCURRENCY: usize = 50;

/// CreateNode attempts per node before registration fails.
const CREATE_ATTEMPTS: usize = 3;

/// A pause after a failed request, so a node whose connection broke does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Each node signs as a Sepal SuperNode does: one signed timestamp per
/// [`sepal_wire::auth::RESIGN_AFTER`], which keeps the generator's P-384 signing off the
/// shared cores.
type Client = FleetClient<InterceptedService<Channel, Signer>>;

/// One registered simulated node.
pub struct Node {
    client: Client,
    id: u64,
}

/// What a load window produced.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered successfully within the window.
    pub ok: u64,
    /// Latency of each successful request.
    pub latencies: Latencies,
    /// Failed requests by kind (gRPC code, `timeout`, `heartbeat rejected`): count and
    /// the first message seen.
    pub errors: BTreeMap<String, (u64, String)>,
}

impl Stats {
    /// All failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    fn error(&mut self, kind: &str, message: &str) {
        self.errors.entry(kind.to_string()).or_insert_with(|| (0, message.to_string())).0 += 1;
    }

    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.latencies.extend(other.latencies);
        for (kind, (n, msg)) in other.errors {
            self.errors.entry(kind).or_insert((0, msg)).0 += n;
        }
    }
}

/// `k` fresh node keys (P-384 key generation is slow in a debug build: both cores help).
fn signers(k: usize) -> Vec<Signer> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(k.max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || (t..k).step_by(threads).map(|_| Signer::fresh()).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("key generation does not panic")).collect()
    })
}

/// Connects `k` nodes to the Fleet API at `addr`, each on its own connection, and registers
/// each (CreateNode). Fails if any node cannot register within [`CREATE_ATTEMPTS`].
pub async fn register(addr: SocketAddr, k: usize, timeout: Duration) -> Result<Vec<Node>> {
    let signers = tokio::task::spawn_blocking(move || signers(k)).await.context("generating node keys")?;
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for signer in signers {
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            register_one(addr, signer, timeout).await
        });
    }
    let mut nodes = Vec::with_capacity(k);
    while let Some(res) = tasks.join_next().await {
        nodes.push(res.context("a registration task failed")??);
    }
    Ok(nodes)
}

async fn register_one(addr: SocketAddr, signer: Signer, timeout: Duration) -> Result<Node> {
    let channel =
        Endpoint::from_shared(format!("http://{addr}"))?.connect_timeout(timeout).tcp_nodelay(true).connect_lazy();
    let mut client = FleetClient::with_interceptor(channel, signer);
    let mut last = String::new();
    for _ in 0..CREATE_ATTEMPTS {
        let req = pb::CreateNodeRequest { heartbeat_interval: HEARTBEAT_INTERVAL };
        match tokio::time::timeout(timeout, client.create_node(req)).await {
            Ok(Ok(res)) => match res.into_inner().node {
                Some(pb::Node { node_id }) if node_id != 0 => return Ok(Node { client, id: node_id }),
                _ => last = "CreateNode answered without a node id".into(),
            },
            Ok(Err(status)) => last = format!("{:?}: {}", status.code(), status.message()),
            Err(_) => last = format!("no answer within {timeout:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("CreateNode failed {CREATE_ATTEMPTS} times; last: {last}")
}

/// How the simulated nodes send their requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each node sends its next request as soon as the previous one is answered,
    /// alternating SendNodeHeartbeat and PullMessages: saturates the SuperLink.
    Saturate,
    /// Each node behaves like an idle Flower 1.20 SuperNode: an empty pull, then
    /// [`IDLE_PULL_PAUSE`]; a heartbeat every [`IDLE_HEARTBEAT_EVERY`]. Nodes start
    /// evenly spread over those periods.
    Idle,
}

/// An idle Flower SuperNode sleeps 3 s after an empty pull (`start_client_internal`).
pub const IDLE_PULL_PAUSE: Duration = Duration::from_secs(3);

/// Flower's heartbeat period: (interval 30 s - call timeout 5 s) × 0.8 on average.
pub const IDLE_HEARTBEAT_EVERY: Duration = Duration::from_secs(20);

/// Runs every node in `mode` for `window`; a request slower than `timeout` counts as an
/// error. Requests still in flight when the window ends are dropped uncounted, so the
/// figures cover exactly `window`.
pub async fn load(nodes: Vec<Node>, mode: Mode, window: Duration, timeout: Duration) -> (Vec<Node>, Stats) {
    let start = Instant::now();
    let end = start + window;
    let k = nodes.len() as u32;
    let mut tasks = JoinSet::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let w = Window { start, end, timeout };
        match mode {
            Mode::Saturate => tasks.spawn(saturate(node, w)),
            Mode::Idle => tasks.spawn(idle(node, i as u32, k, w)),
        };
    }
    let mut nodes = Vec::new();
    let mut total = Stats::default();
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok((node, stats)) => {
                nodes.push(node);
                total.merge(stats);
            }
            Err(e) => total.error("generator task failed", &e.to_string()),
        }
    }
    (nodes, total)
}

/// One request's outcome.
enum Outcome {
    Ok,
    Failed(&'static str, String),
    /// The window ended first: not counted.
    Cut,
}

/// The load window and the per-request timeout.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    timeout: Duration,
}

impl Stats {
    /// Records a request sent at `sent`; false when the window is over.
    async fn record(&mut self, outcome: Outcome, sent: Instant, w: Window) -> bool {
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latencies.push(sent.elapsed());
            }
            Outcome::Failed(kind, message) => {
                self.error(kind, &message);
                tokio::time::sleep_until((Instant::now() + ERROR_PAUSE).min(w.end)).await;
            }
            Outcome::Cut => return false,
        }
        true
    }
}

async fn saturate(mut node: Node, w: Window) -> (Node, Stats) {
    let mut stats = Stats::default();
    let mut heartbeat = true;
    while Instant::now() < w.end {
        let sent = Instant::now();
        let outcome = if heartbeat { send_heartbeat(&mut node, sent, w).await } else { pull(&mut node, sent, w).await };
        heartbeat = !heartbeat;
        if !stats.record(outcome, sent, w).await {
            break;
        }
    }
    (node, stats)
}

/// Node `i` of `k` as an idle Flower SuperNode, its first pull and heartbeat offset by
/// `i / k` of their periods.
async fn idle(mut node: Node, i: u32, k: u32, w: Window) -> (Node, Stats) {
    let mut stats = Stats::default();
    let mut next_pull = w.start + IDLE_PULL_PAUSE * i / k.max(1);
    let mut next_heartbeat = w.start + IDLE_HEARTBEAT_EVERY * i / k.max(1);
    loop {
        let heartbeat = next_heartbeat < next_pull;
        let due = next_pull.min(next_heartbeat);
        if due >= w.end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let sent = Instant::now();
        let outcome = if heartbeat { send_heartbeat(&mut node, sent, w).await } else { pull(&mut node, sent, w).await };
        if !stats.record(outcome, sent, w).await {
            break;
        }
        if heartbeat {
            next_heartbeat = Instant::now() + IDLE_HEARTBEAT_EVERY;
        } else {
            next_pull = Instant::now() + IDLE_PULL_PAUSE;
        }
    }
    (node, stats)
}

/// Awaits `call` (sent at `sent`) until its timeout or the window's end, whichever is first.
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, Status>>,
    sent: Instant,
    w: Window,
) -> Result<T, Outcome> {
    let timed_out_at = sent + w.timeout;
    match tokio::time::timeout_at(timed_out_at.min(w.end), call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(status)) => Err(Outcome::Failed(code_name(&status), status.message().to_string())),
        Err(_) if timed_out_at <= w.end => Err(Outcome::Failed("timeout", format!("no answer within {:?}", w.timeout))),
        Err(_) => Err(Outcome::Cut),
    }
}

async fn send_heartbeat(node: &mut Node, sent: Instant, w: Window) -> Outcome {
    let req = pb::SendNodeHeartbeatRequest {
        node: Some(pb::Node { node_id: node.id }),
        heartbeat_interval: HEARTBEAT_INTERVAL,
    };
    match bounded(node.client.send_node_heartbeat(req), sent, w).await {
        Ok(res) if res.get_ref().success => Outcome::Ok,
        Ok(_) => Outcome::Failed("heartbeat rejected", "SendNodeHeartbeat answered success=false".into()),
        Err(outcome) => outcome,
    }
}

async fn pull(node: &mut Node, sent: Instant, w: Window) -> Outcome {
    let req = pb::PullMessagesRequest { node: Some(pb::Node { node_id: node.id }), message_ids: vec![] };
    match bounded(node.client.pull_messages(req), sent, w).await {
        Ok(res) if res.get_ref().messages_list.is_empty() => Outcome::Ok,
        Ok(_) => Outcome::Failed("unexpected message", "PullMessages returned a message; none was queued".into()),
        Err(outcome) => outcome,
    }
}

fn code_name(status: &Status) -> &'static str {
    use tonic::Code;
    match status.code() {
        Code::Unavailable => "Unavailable",
        Code::Unauthenticated => "Unauthenticated",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::Internal => "Internal",
        Code::Cancelled => "Cancelled",
        Code::NotFound => "NotFound",
        Code::PermissionDenied => "PermissionDenied",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::InvalidArgument => "InvalidArgument",
        Code::Unknown => "Unknown",
        _ => "other gRPC error",
    }
}

/// Unregisters every node (DeleteNode, one attempt each); returns how many failed.
pub async fn unregister(nodes: Vec<Node>, timeout: Duration) -> usize {
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for mut node in nodes {
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let req = pb::DeleteNodeRequest { node: Some(pb::Node { node_id: node.id }) };
            tokio::time::timeout(timeout, node.client.delete_node(req)).await.ok()?.ok()
        });
    }
    let mut failed = 0;
    while let Some(res) = tasks.join_next().await {
        if !matches!(res, Ok(Some(_))) {
            failed += 1;
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge_and_count_errors() {
        let mut a = Stats { ok: 2, ..Default::default() };
        a.error("timeout", "first");
        let mut b = Stats { ok: 3, ..Default::default() };
        b.latencies.push(Duration::from_millis(1));
        b.error("timeout", "second");
        b.error("Unavailable", "down");
        a.merge(b);
        assert_eq!(a.ok, 5);
        assert_eq!(a.latencies.len(), 1);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.errors["timeout"], (2, "first".to_string()));
    }
}
