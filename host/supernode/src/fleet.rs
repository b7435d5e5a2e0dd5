//! The SuperNode's connection to the SuperLink's Fleet API.
//!
//! Every call is signed ([`Signer`]) and retried while the SuperLink is unreachable
//! ([`RetryPolicy`]). The channel connects lazily and reconnects by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sepal_proto::pb;
use sepal_proto::pb::fleet_client::FleetClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use sepal_wire::auth::Signer;
use sepal_wire::{
    ClientTls, INLINE_OBJECTS_HEADER, MAX_GRPC_MESSAGE, PULL_HEARTBEAT_INTERVAL, PULL_IS_HEARTBEAT_HEADER,
};
use tonic::metadata::MetadataValue;

use crate::retry::RetryPolicy;

/// Flower's node heartbeat interval (seconds).
pub const HEARTBEAT_INTERVAL: f64 = 30.0;

type Client = FleetClient<InterceptedService<Channel, Signer>>;

/// A signed, retrying Fleet client.
#[derive(Clone)]
pub struct Fleet {
    client: Client,
    retry: RetryPolicy,
    /// Whether the SuperLink takes reply objects inline (a Sepal SuperLink).
    inline_push: Arc<AtomicBool>,
    /// Whether the SuperLink counts held pulls as heartbeats (it said so on the last pull).
    pull_is_heartbeat: Arc<AtomicBool>,
    /// When the last held pull was sent.
    last_pull: Arc<Mutex<Option<Instant>>>,
}

/// An instruction as pulled: the message, its object tree, and those of its objects the
/// SuperLink carried inline.
#[derive(Debug)]
pub struct Pulled {
    /// The instruction (content-less wire form).
    pub message: pb::Message,
    /// Its object tree.
    pub tree: pb::ObjectTree,
    /// Objects carried inline, by id (a Sepal SuperLink; empty from Flower's).
    pub objects: Vec<(String, Bytes)>,
}

fn node(node_id: u64) -> Option<pb::Node> {
    Some(pb::Node { node_id })
}

impl Fleet {
    /// A client for the Fleet API at `address` (`host:port`), secured as `tls` says.
    pub fn new(
        address: &str,
        tls: &ClientTls,
        signer: Signer,
        retry: RetryPolicy,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = tls.endpoint(address)?.connect_timeout(Duration::from_secs(10)).connect_lazy();
        let client = FleetClient::with_interceptor(channel, signer)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE);
        Ok(Self {
            client,
            retry,
            inline_push: Arc::default(),
            pull_is_heartbeat: Arc::default(),
            last_pull: Arc::default(),
        })
    }

    /// Registers this node; returns its id.
    pub async fn create_node(&self) -> Result<u64, Status> {
        let res = self
            .retry
            .run("CreateNode", || {
                let mut c = self.client.clone();
                async move { c.create_node(pb::CreateNodeRequest { heartbeat_interval: HEARTBEAT_INTERVAL }).await }
            })
            .await?;
        res.into_inner().node.map(|n| n.node_id).ok_or_else(|| Status::internal("CreateNode answered without a node"))
    }

    /// Unregisters the node (one attempt: used on shutdown).
    pub async fn delete_node(&self, node_id: u64) -> Result<(), Status> {
        self.client.clone().delete_node(pb::DeleteNodeRequest { node: node(node_id) }).await.map(|_| ())
    }

    /// Tells the SuperLink the node is alive (one attempt; the caller schedules).
    pub async fn heartbeat(&self, node_id: u64) -> Result<bool, Status> {
        let req = pb::SendNodeHeartbeatRequest { node: node(node_id), heartbeat_interval: HEARTBEAT_INTERVAL };
        Ok(self.client.clone().send_node_heartbeat(req).await?.into_inner().success)
    }

    /// Pulls at most one instruction, asking the SuperLink to wait up to `wait` for one,
    /// and (a Sepal SuperLink) to carry its objects inline and to pass over the runs the
    /// node is `busy` with.
    pub async fn pull(&self, node_id: u64, wait: Duration, busy: &[u64]) -> Result<Option<Pulled>, Status> {
        *self.last_pull.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let res = self
            .retry
            .run("PullMessages", || {
                let mut c = self.client.clone();
                let mut req = Request::new(pb::PullMessagesRequest { node: node(node_id), message_ids: vec![] });
                sepal_wire::ask_to_wait(&mut req, wait);
                sepal_wire::name_busy_runs(&mut req, busy);
                req.metadata_mut().insert(INLINE_OBJECTS_HEADER, MetadataValue::from_static("1"));
                // The wait is a hint; never let a held call outlive it by much.
                req.set_timeout(wait + Duration::from_secs(10));
                async move { c.pull_messages(req).await }
            })
            .await?;
        let offers_inline = res.metadata().contains_key(INLINE_OBJECTS_HEADER);
        self.inline_push.store(offers_inline, Ordering::Relaxed);
        self.pull_is_heartbeat.store(res.metadata().contains_key(PULL_IS_HEARTBEAT_HEADER), Ordering::Relaxed);
        let res = res.into_inner();
        let objects = res.sepal_objects.into_iter().map(|o| (o.object_id, o.object_content)).collect();
        let first = res.messages_list.into_iter().zip(res.message_object_trees).next();
        Ok(first.map(|(message, tree)| Pulled { message, tree, objects }))
    }

    /// Whether the SuperLink counts held pulls as heartbeats and one was sent within the
    /// last [`PULL_HEARTBEAT_INTERVAL`] seconds. The SuperLink extends liveness when a pull
    /// arrives (by twice that interval), so the node is online for at least that long again
    /// and a heartbeat now would add nothing. The pull still held counts: it was granted on
    /// arrival, not when it returns.
    pub fn pulled_as_heartbeat_lately(&self) -> bool {
        let last = *self.last_pull.lock().unwrap_or_else(|e| e.into_inner());
        self.pull_is_heartbeat.load(Ordering::Relaxed)
            && last.is_some_and(|sent| sent.elapsed().as_secs_f64() < PULL_HEARTBEAT_INTERVAL)
    }

    /// Whether the SuperLink takes a reply's objects inline (it said so on the last pull).
    pub fn takes_inline_objects(&self) -> bool {
        self.inline_push.load(Ordering::Relaxed)
    }

    /// Sends a reply, with `objects` inline (only when [`Fleet::takes_inline_objects`]);
    /// returns the ids of the objects the SuperLink still needs.
    pub async fn push_reply(
        &self,
        node_id: u64,
        reply: pb::Message,
        tree: pb::ObjectTree,
        objects: Vec<pb::InlineObject>,
    ) -> Result<Vec<String>, Status> {
        let req = pb::PushMessagesRequest {
            node: node(node_id),
            messages_list: vec![reply],
            message_object_trees: vec![tree],
            sepal_objects: objects,
        };
        let res = self
            .retry
            .run("PushMessages", || {
                let mut c = self.client.clone();
                let req = req.clone();
                async move { c.push_messages(req).await }
            })
            .await?;
        Ok(res.into_inner().objects_to_push)
    }

    /// The run's identity and override config.
    pub async fn get_run(&self, node_id: u64, run_id: u64) -> Result<pb::Run, Status> {
        let res = self
            .retry
            .run("GetRun", || {
                let mut c = self.client.clone();
                async move { c.get_run(pb::GetRunRequest { node: node(node_id), run_id }).await }
            })
            .await?;
        res.into_inner().run.ok_or_else(|| Status::not_found(format!("the SuperLink does not know run {run_id}")))
    }

    /// The FAB with this hash.
    pub async fn get_fab(&self, node_id: u64, hash: &str, run_id: u64) -> Result<Bytes, Status> {
        let res = self
            .retry
            .run("GetFab", || {
                let mut c = self.client.clone();
                let req = pb::GetFabRequest { node: node(node_id), hash_str: hash.to_string(), run_id };
                async move { c.get_fab(req).await }
            })
            .await?;
        let fab = res.into_inner().fab.ok_or_else(|| Status::not_found(format!("the SuperLink has no FAB {hash}")))?;
        Ok(fab.content.into())
    }

    /// Fetches one object.
    pub async fn pull_object(
        &self,
        node_id: u64,
        run_id: u64,
        object_id: &str,
    ) -> Result<pb::PullObjectResponse, Status> {
        let res = self
            .retry
            .run("PullObject", || {
                let mut c = self.client.clone();
                let req = pb::PullObjectRequest { node: node(node_id), run_id, object_id: object_id.to_string() };
                async move { c.pull_object(req).await }
            })
            .await?;
        Ok(res.into_inner())
    }

    /// Uploads one object; returns whether the SuperLink stored it.
    pub async fn push_object(
        &self,
        node_id: u64,
        run_id: u64,
        object_id: &str,
        content: Bytes,
    ) -> Result<bool, Status> {
        let res = self
            .retry
            .run("PushObject", || {
                let mut c = self.client.clone();
                let req = pb::PushObjectRequest {
                    node: node(node_id),
                    run_id,
                    object_id: object_id.to_string(),
                    object_content: content.clone(), // a reference count, not a copy
                };
                async move { c.push_object(req).await }
            })
            .await?;
        Ok(res.into_inner().stored)
    }

    /// Tells the SuperLink the instruction and all its objects arrived.
    pub async fn confirm(&self, node_id: u64, run_id: u64, message_id: &str) -> Result<(), Status> {
        self.retry
            .run("ConfirmMessageReceived", || {
                let mut c = self.client.clone();
                let req = pb::ConfirmMessageReceivedRequest {
                    node: node(node_id),
                    run_id,
                    message_object_id: message_id.to_string(),
                };
                async move { c.confirm_message_received(req).await }
            })
            .await
            .map(|_| ())
    }
}
