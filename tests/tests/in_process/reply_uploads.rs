//! Back-pressure on reply uploads (`--reply-buffer-mb`, docs/sandbox.md): once a run holds
//! more than its reply buffer, its replies upload one at a time, in the order its ServerApp
//! takes them, so that a slow ServerApp does not make the SuperLink hold every reply.

use std::time::Duration;

use bytes::Bytes;
use sepal_core::message_to_objects;
use sepal_core::records::{Array, ArrayRecord, Message, Metadata, RecordDict};
use sepal_core::routing::route_reply;
use sepal_proto::pb;
use sepal_superlink::{Config, InputLimits, Isolation};
use sepal_tests::kit::{self, PlayedServerApp, PyProject, SignedFleet, TestLink};
use tokio::task::JoinHandle;

/// The reply buffer of these tests; each reply holds two arrays of 1.6 MB.
const BUFFER: usize = 1 << 20;

/// Long enough for a push that is not held back to be answered on a loaded machine.
const SETTLE: Duration = Duration::from_millis(300);

fn content(seed: f32) -> RecordDict {
    let values = |sign: f32| -> Vec<f32> { (0..400_000).map(|i| seed + sign * i as f32).collect() };
    let array = |v: Vec<f32>| Array::from_f32(&v, &[v.len()]).expect("a float32 array");
    let arrays = ArrayRecord::new().with("a", array(values(1.0))).with("b", array(values(-1.0)));
    RecordDict::new().with("arrays", arrays.into())
}

async fn link() -> TestLink {
    let limits = InputLimits { reply_buffer_bytes: BUFFER, ..InputLimits::default() };
    TestLink::with(Config { limits, ..Config::new(Isolation::Process) }).await
}

/// A node's reply whose message is pushed: its objects, small ones first, the two array
/// chunks last.
struct Reply {
    fleet: SignedFleet,
    node_id: u64,
    run_id: u64,
    id: String,
    objects: Vec<(String, Bytes)>,
}

impl Reply {
    /// Pulls the node's instruction and pushes its reply message (not its objects).
    async fn pushed(mut fleet: SignedFleet, node_id: u64, seed: f32) -> Reply {
        let node = Some(pb::Node { node_id });
        let pulled = fleet.pull_messages(pb::PullMessagesRequest { node, message_ids: vec![] });
        let ins = pulled.await.expect("PullMessages").into_inner().messages_list.remove(0);
        let ins_meta = ins.metadata.expect("an instruction has metadata");
        let mut reply = Message::with_content(Metadata::default(), content(seed));
        route_reply(&mut reply, &ins_meta, node_id);
        let (tree, mut objects, id) = message_to_objects(&reply);
        let mut wire = reply.to_wire_pb();
        wire.metadata.as_mut().expect("a reply has metadata").message_id = id.clone();
        let req = pb::PushMessagesRequest {
            node,
            messages_list: vec![wire],
            message_object_trees: vec![tree],
            ..Default::default()
        };
        let wanted = fleet.push_messages(req).await.expect("PushMessages").into_inner().objects_to_push;
        objects.retain(|(id, _)| wanted.contains(id));
        objects.sort_by_key(|(_, content)| content.len());
        Reply { fleet, node_id, run_id: ins_meta.run_id, id, objects }
    }

    /// Pushes the next object in a task; whether it was stored, once answered.
    fn push_next(&mut self) -> JoinHandle<bool> {
        let (object_id, object_content) = self.objects.remove(0);
        let mut fleet = self.fleet.clone();
        let req = pb::PushObjectRequest {
            node: Some(pb::Node { node_id: self.node_id }),
            run_id: self.run_id,
            object_id,
            object_content,
        };
        tokio::spawn(async move { fleet.push_object(req).await.expect("PushObject").into_inner().stored })
    }

    /// Pushes every object left, one after the other.
    async fn push_rest(&mut self) {
        while !self.objects.is_empty() {
            assert!(answered(self.push_next()).await, "a pushed object is stored");
        }
    }

    /// Pushes objects until the first one is held back; that push.
    async fn push_until_held(&mut self) -> JoinHandle<bool> {
        loop {
            let mut push = self.push_next();
            tokio::time::sleep(SETTLE).await;
            if !push.is_finished() {
                return push;
            }
            assert!((&mut push).await.unwrap(), "a pushed object is stored");
            assert!(!self.objects.is_empty(), "no object was held back past the reply buffer");
        }
    }
}

/// The answer of a push that may have to wait.
async fn answered(push: JoinHandle<bool>) -> bool {
    tokio::time::timeout(Duration::from_secs(30), push).await.expect("the push was answered").expect("push task")
}

/// A run with two nodes, an instruction to each, and both replies' messages pushed, the
/// first node's first: (ServerApp, the instruction ids, the replies).
async fn two_replies(link: &TestLink) -> (PlayedServerApp, [String; 2], [Reply; 2]) {
    let (fleet_a, a) = link.register_node().await;
    let (fleet_b, b) = link.register_node().await;
    let mut server = PlayedServerApp::start(link, kit::fab(&PyProject::new("uploads")), Default::default()).await;
    let ins = [server.send(a, RecordDict::new(), 60.0).await, server.send(b, RecordDict::new(), 60.0).await];
    let first = Reply::pushed(fleet_a, a, 1.0).await;
    let second = Reply::pushed(fleet_b, b, 2.0).await;
    (server, ins, [first, second])
}

#[tokio::test]
async fn past_the_reply_buffer_replies_upload_in_the_order_the_server_app_takes_them() {
    let link = link().await;
    let (mut server, ins, [mut first, mut second]) = two_replies(&link).await;
    // The second reply uploads while the run holds less than the buffer, then waits.
    let held = second.push_until_held().await;
    // The first reply is the one to take next: it uploads whatever the run holds.
    first.push_rest().await;
    assert!(!held.is_finished(), "the second reply still waits");
    // A run beside it uploads as usual.
    let (fleet, node) = link.register_node().await;
    let mut other = PlayedServerApp::start(&link, kit::fab(&PyProject::new("beside")), Default::default()).await;
    let other_ins = other.send(node, RecordDict::new(), 60.0).await;
    let mut beside = Reply::pushed(fleet, node, 3.0).await;
    beside.push_rest().await;
    assert!(other.receive(&other_ins).await.content == Some(content(3.0)), "the run beside gets its reply");

    // Asked for both, the ServerApp gets them oldest first.
    let req = pb::PullAppMessagesRequest {
        run_id: server.run_id,
        message_ids: vec![ins[1].clone(), ins[0].clone()],
        ..Default::default()
    };
    let res = server.sio.pull_messages(req).await.expect("PullMessages").into_inner();
    let order: Vec<&str> = res.message_object_trees.iter().map(|t| t.object_id.as_str()).collect();
    assert_eq!(order, [first.id.as_str(), second.id.as_str()]);

    // Once the ServerApp has taken the first, the second goes on.
    let got = server.take(&res.messages_list[0], &res.message_object_trees[0]).await;
    assert!(got.content == Some(content(1.0)), "the first reply arrives whole");
    assert!(answered(held).await, "the held object is stored once the first reply is taken");
    second.push_rest().await;
    let got = server.take(&res.messages_list[1], &res.message_object_trees[1]).await;
    assert!(got.content == Some(content(2.0)), "the second reply arrives whole");
}

#[tokio::test]
async fn a_reply_the_server_app_asks_for_uploads_out_of_turn() {
    let link = link().await;
    let (mut server, ins, [_first, mut second]) = two_replies(&link).await;
    let held = second.push_until_held().await;
    let rest = tokio::spawn(async move { second.push_rest().await });
    // The ServerApp takes the second reply first, though the first has not uploaded: its
    // pulls let the second one through.
    let got = tokio::time::timeout(Duration::from_secs(60), server.receive(&ins[1])).await;
    let got = got.expect("the ServerApp got the reply it asked for");
    assert!(got.content == Some(content(2.0)), "the reply arrives whole");
    assert!(answered(held).await);
    rest.await.expect("the rest of the reply was pushed");
}
