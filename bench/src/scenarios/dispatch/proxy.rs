//! A Fleet API proxy that timestamps dispatches at the wire, the same way for every
//! SuperNode: it sits between one SuperNode and the SuperLink, forwards every Fleet call
//! unchanged (request metadata included: Flower's signature headers, `sepal-wait-ms`), and
//! notes when a PullMessages response carrying an instruction leaves towards the SuperNode
//! and when the PushMessages request carrying its reply arrives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use sepal_proto::pb;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_proto::pb::fleet_server::{Fleet, FleetServer};
use sepal_wire::MAX_GRPC_MESSAGE;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

/// One instruction's trip through the SuperNode.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    /// The instruction's message id.
    pub message_id: String,
    /// When the PullMessages response carrying it left the proxy.
    pub landed: Instant,
    /// From `landed` to the arrival of the PushMessages request carrying its reply.
    pub latency: Duration,
}

/// Pairs instruction landings with reply pushes.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Pairs>,
}

#[derive(Debug, Default)]
struct Pairs {
    /// Landing time by instruction id (the first delivery counts).
    landed: HashMap<String, Instant>,
    /// Completed dispatches, one per instruction.
    done: Vec<Dispatch>,
}

impl Recorder {
    /// Instruction `message_id` left towards the SuperNode at `at`.
    pub fn landed(&self, message_id: &str, at: Instant) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.landed.entry(message_id.to_string()).or_insert(at);
    }

    /// A reply to `reply_to` arrived at `at`. Replies to unknown instructions and second
    /// replies are ignored.
    pub fn replied(&self, reply_to: &str, at: Instant) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&landed) = p.landed.get(reply_to) else {
            return;
        };
        if p.done.iter().any(|d| d.message_id == reply_to) {
            return;
        }
        p.done.push(Dispatch {
            message_id: reply_to.to_string(),
            landed,
            latency: at.saturating_duration_since(landed),
        });
    }

    /// The completed dispatches, in landing order.
    pub fn dispatches(&self) -> Vec<Dispatch> {
        let mut done = self.inner.lock().unwrap_or_else(|e| e.into_inner()).done.clone();
        done.sort_by_key(|d| d.landed);
        done
    }
}

/// A running proxy; dropping it stops it.
pub struct FleetProxy {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    shutdown: Option<oneshot::Sender<()>>,
    rt: Option<Runtime>,
}

impl FleetProxy {
    /// Listens on a fresh loopback port and forwards to the Fleet API at `upstream`
    /// (connecting lazily, so the SuperLink may start later).
    pub fn start(upstream: SocketAddr) -> Result<FleetProxy> {
        let addr = sepal_tests::free_addr();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fleet-proxy")
            .enable_all()
            .build()
            .context("starting the proxy's runtime")?;
        let in_rt = rt.enter();
        let incoming = TcpIncoming::bind(addr).with_context(|| format!("binding {addr}"))?.with_nodelay(Some(true));
        let channel = Endpoint::from_shared(format!("http://{upstream}"))?.tcp_nodelay(true).connect_lazy();
        let upstream = FleetClient::new(channel)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE);
        let recorder = Arc::new(Recorder::default());
        let service = FleetServer::new(Proxy { upstream, recorder: recorder.clone() })
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE);
        let (tx, rx) = oneshot::channel::<()>();
        rt.spawn(async move {
            let served = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("the Fleet proxy failed: {e}");
            }
        });
        drop(in_rt);
        Ok(FleetProxy { addr, recorder, shutdown: Some(tx), rt: Some(rt) })
    }

    /// Where SuperNodes should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dispatches seen so far, in landing order.
    pub fn dispatches(&self) -> Vec<Dispatch> {
        self.recorder.dispatches()
    }
}

impl Drop for FleetProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

struct Proxy {
    upstream: FleetClient<Channel>,
    recorder: Arc<Recorder>,
}

impl Proxy {
    fn client(&self) -> FleetClient<Channel> {
        self.upstream.clone()
    }
}

/// The request with the caller's metadata (minus what the gRPC layer sets itself), for
/// the upstream call.
fn forward<T>(req: Request<T>) -> Request<T> {
    let (mut metadata, _, message) = req.into_parts();
    for own in ["user-agent", "grpc-accept-encoding", "grpc-encoding"] {
        metadata.remove(own);
    }
    Request::from_parts(metadata, Default::default(), message)
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Fleet for Proxy {
    async fn create_node(&self, req: Request<pb::CreateNodeRequest>) -> Reply<pb::CreateNodeResponse> {
        self.client().create_node(forward(req)).await
    }
    async fn delete_node(&self, req: Request<pb::DeleteNodeRequest>) -> Reply<pb::DeleteNodeResponse> {
        self.client().delete_node(forward(req)).await
    }
    async fn send_node_heartbeat(
        &self,
        req: Request<pb::SendNodeHeartbeatRequest>,
    ) -> Reply<pb::SendNodeHeartbeatResponse> {
        self.client().send_node_heartbeat(forward(req)).await
    }
    async fn pull_messages(&self, req: Request<pb::PullMessagesRequest>) -> Reply<pb::PullMessagesResponse> {
        let res = self.client().pull_messages(forward(req)).await?;
        // As late as the proxy can: the response is encoded and written right after.
        let now = Instant::now();
        for m in &res.get_ref().messages_list {
            if let Some(meta) = &m.metadata {
                self.recorder.landed(&meta.message_id, now);
            }
        }
        Ok(res)
    }
    async fn push_messages(&self, req: Request<pb::PushMessagesRequest>) -> Reply<pb::PushMessagesResponse> {
        let now = Instant::now();
        for m in &req.get_ref().messages_list {
            if let Some(meta) = &m.metadata {
                self.recorder.replied(&meta.reply_to_message_id, now);
            }
        }
        self.client().push_messages(forward(req)).await
    }
    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Reply<pb::GetRunResponse> {
        self.client().get_run(forward(req)).await
    }
    async fn get_fab(&self, req: Request<pb::GetFabRequest>) -> Reply<pb::GetFabResponse> {
        self.client().get_fab(forward(req)).await
    }
    async fn push_object(&self, req: Request<pb::PushObjectRequest>) -> Reply<pb::PushObjectResponse> {
        self.client().push_object(forward(req)).await
    }
    async fn pull_object(&self, req: Request<pb::PullObjectRequest>) -> Reply<pb::PullObjectResponse> {
        self.client().pull_object(forward(req)).await
    }
    async fn confirm_message_received(
        &self,
        req: Request<pb::ConfirmMessageReceivedRequest>,
    ) -> Reply<pb::ConfirmMessageReceivedResponse> {
        self.client().confirm_message_received(forward(req)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_pair_with_their_landings_in_landing_order() {
        let r = Recorder::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        r.landed("b", t0 + ms(10));
        r.landed("a", t0);
        r.landed("a", t0 + ms(50)); // a re-delivery keeps the first landing
        r.replied("b", t0 + ms(13));
        r.replied("a", t0 + ms(7));
        r.replied("a", t0 + ms(90)); // a second reply is ignored
        r.replied("unknown", t0 + ms(1));
        let d = r.dispatches();
        assert_eq!(d.iter().map(|d| d.message_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(d.iter().map(|d| d.latency).collect::<Vec<_>>(), [ms(7), ms(3)]);
    }
}
