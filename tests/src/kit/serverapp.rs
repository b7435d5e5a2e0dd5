//! [`PlayedServerApp`]: the test in the role of a ServerApp, over ServerAppIo, as
//! `flwr-serverapp` would be: it takes a run, sends instructions with their objects, and
//! collects the replies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sepal_core::records::{Message, Metadata, RecordDict};
use sepal_core::routing::{now_secs, SUPERLINK_NODE_ID};
use sepal_core::{message_from_objects, message_to_objects};
use sepal_proto::pb;
use sepal_proto::pb::server_app_io_client::ServerAppIoClient;
use tonic::transport::Channel;

use super::TestLink;

/// How long any one wait of a played ServerApp may take.
const WAIT: Duration = Duration::from_secs(120);

/// A run the test drives as its ServerApp.
pub struct PlayedServerApp {
    /// The ServerAppIo client.
    pub sio: ServerAppIoClient<Channel>,
    /// The run.
    pub run_id: u64,
}

fn superlink() -> Option<pb::Node> {
    Some(pb::Node { node_id: SUPERLINK_NODE_ID })
}

impl PlayedServerApp {
    /// Submits `fab` with `overrides` over Exec, takes the run over ServerAppIo and moves it
    /// to running.
    pub async fn start(link: &TestLink, fab: pb::Fab, overrides: HashMap<String, pb::Scalar>) -> Self {
        let req = pb::StartRunRequest { fab: Some(fab), override_config: overrides, ..Default::default() };
        let started = link.exec_client().await.start_run(req).await.unwrap_or_else(|e| panic!("StartRun: {e}"));
        let run_id = started.into_inner().run_id.expect("a run id");
        let mut sio = link.serverappio_client().await;
        let inputs = sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await.expect("PullAppInputs");
        assert_eq!(inputs.into_inner().run.map(|r| r.run_id), Some(run_id), "the pending run is ours");
        let running = pb::RunStatus { status: "running".into(), ..Default::default() };
        sio.update_run_status(pb::UpdateRunStatusRequest { run_id, run_status: Some(running) })
            .await
            .expect("UpdateRunStatus running");
        PlayedServerApp { sio, run_id }
    }

    /// Waits until at least `n` nodes are online; their ids.
    pub async fn wait_for_nodes(&mut self, n: usize) -> Vec<u64> {
        let deadline = Instant::now() + WAIT;
        loop {
            let req = pb::GetNodesRequest { run_id: self.run_id };
            let nodes = self.sio.get_nodes(req).await.expect("GetNodes").into_inner().nodes;
            if nodes.len() >= n {
                return nodes.into_iter().map(|n| n.node_id).collect();
            }
            assert!(Instant::now() < deadline, "{n} nodes never came online");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a `train` instruction with `content` to node `dst`, and its objects; its id.
    pub async fn send(&mut self, dst: u64, content: RecordDict, ttl: f64) -> String {
        let meta = Metadata {
            run_id: self.run_id,
            src_node_id: SUPERLINK_NODE_ID,
            dst_node_id: dst,
            group_id: "1".into(),
            ttl,
            message_type: "train".into(),
            created_at: now_secs(),
            ..Default::default()
        };
        let msg = Message::with_content(meta, content);
        let (tree, objects, id) = message_to_objects(&msg);
        let mut wire = msg.to_wire_pb();
        wire.metadata.as_mut().expect("a message has metadata").message_id = id.clone();
        let req = pb::PushAppMessagesRequest {
            run_id: self.run_id,
            messages_list: vec![wire],
            message_object_trees: vec![tree],
            ..Default::default()
        };
        let res = self.sio.push_messages(req).await.expect("PushMessages").into_inner();
        assert_eq!(res.message_ids, vec![id.clone()]);
        for (object_id, content) in objects.into_iter().filter(|(id, _)| res.objects_to_push.contains(id)) {
            let req =
                pb::PushObjectRequest { node: superlink(), run_id: self.run_id, object_id, object_content: content };
            assert!(self.sio.push_object(req).await.expect("PushObject").into_inner().stored);
        }
        id
    }

    /// Waits for the reply to `id`, pulls its objects (waiting for those still being
    /// uploaded) and confirms it, as Flower's grid does, and returns it.
    pub async fn receive(&mut self, id: &str) -> Message {
        let deadline = Instant::now() + WAIT;
        loop {
            let req =
                pb::PullAppMessagesRequest { run_id: self.run_id, message_ids: vec![id.into()], ..Default::default() };
            let res = self.sio.pull_messages(req).await.expect("PullMessages").into_inner();
            if let (Some(wire), Some(tree)) = (res.messages_list.first(), res.message_object_trees.first()) {
                return self.take(wire, tree).await;
            }
            assert!(Instant::now() < deadline, "no reply to {id}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pulls the objects of a pulled reply (waiting for those still being uploaded) and
    /// confirms it, as Flower's grid does; the whole reply.
    pub async fn take(&mut self, wire: &pb::Message, tree: &pb::ObjectTree) -> Message {
        let objects = self.pull_objects(tree, Instant::now() + WAIT).await;
        let req = pb::ConfirmMessageReceivedRequest {
            node: superlink(),
            run_id: self.run_id,
            message_object_id: tree.object_id.clone(),
        };
        self.sio.confirm_message_received(req).await.expect("ConfirmMessageReceived");
        message_from_objects(wire, tree, &objects).expect("a whole reply")
    }

    async fn pull_objects(&mut self, tree: &pb::ObjectTree, deadline: Instant) -> HashMap<String, Bytes> {
        let mut objects = HashMap::new();
        let mut stack = vec![tree];
        while let Some(t) = stack.pop() {
            let req = pb::PullObjectRequest { node: superlink(), run_id: self.run_id, object_id: t.object_id.clone() };
            let mut obj = self.sio.pull_object(req.clone()).await.expect("PullObject").into_inner();
            // The sender pushes the message before its objects.
            while obj.object_found && !obj.object_available && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                obj = self.sio.pull_object(req.clone()).await.expect("PullObject").into_inner();
            }
            assert!(obj.object_available, "reply object {} never arrived", t.object_id);
            objects.insert(t.object_id.clone(), obj.object_content);
            stack.extend(t.children.iter());
        }
        objects
    }
}
