//! Sepal's inline objects on Fleet: a Sepal SuperNode that asks gets an instruction's
//! objects with the instruction and may push its reply's objects with the reply, saving a
//! round trip per object; a SuperNode that does not ask (Flower's) sees Flower's protocol.

use sepal_core::message_to_objects;
use sepal_core::records::{ConfigRecord, ConfigValue, Message, Metadata, RecordDict};
use sepal_core::routing::{now_secs, route_reply};
use sepal_proto::pb;
use sepal_tests::kit::{self, PlayedServerApp, PyProject, TestLink};
use sepal_wire::INLINE_OBJECTS_HEADER;
use tonic::metadata::MetadataValue;
use tonic::Request;

fn content() -> RecordDict {
    RecordDict::new().with("config", ConfigRecord::new().with("lr", ConfigValue::Double(0.1)).into())
}

fn node(node_id: u64) -> Option<pb::Node> {
    Some(pb::Node { node_id })
}

/// A run with one registered node and one instruction for it; the node's Fleet client.
async fn one_instruction(link: &TestLink) -> (PlayedServerApp, kit::SignedFleet, u64, String) {
    let (fleet, node_id) = link.register_node().await;
    let mut server = PlayedServerApp::start(link, kit::fab(&PyProject::new("probe")), Default::default()).await;
    let id = server.send(node_id, content(), 60.0).await;
    (server, fleet, node_id, id)
}

fn pull(node_id: u64, inline: bool) -> Request<pb::PullMessagesRequest> {
    let mut req = Request::new(pb::PullMessagesRequest { node: node(node_id), message_ids: vec![] });
    if inline {
        req.metadata_mut().insert(INLINE_OBJECTS_HEADER, MetadataValue::from_static("1"));
    }
    req
}

#[tokio::test]
async fn a_supernode_that_does_not_ask_gets_flowers_protocol() {
    let link = TestLink::start().await;
    let (_server, mut fleet, node_id, id) = one_instruction(&link).await;
    let res = fleet.pull_messages(pull(node_id, false)).await.unwrap();
    assert!(!res.metadata().contains_key(INLINE_OBJECTS_HEADER));
    let res = res.into_inner();
    assert!(res.sepal_objects.is_empty());
    assert_eq!(res.message_object_trees[0].object_id, id);
    // The objects wait for PullObject until the node confirms.
    let req = pb::PullObjectRequest { node: node(node_id), run_id: 0, object_id: id.clone() };
    let run_id = res.messages_list[0].metadata.as_ref().unwrap().run_id;
    let obj = fleet.pull_object(pb::PullObjectRequest { run_id, ..req }).await.unwrap().into_inner();
    assert!(obj.object_available);
}

#[tokio::test]
async fn a_sepal_supernode_gets_the_objects_inline_and_pushes_its_reply_inline() {
    let link = TestLink::start().await;
    let (mut server, mut fleet, node_id, id) = one_instruction(&link).await;
    let res = fleet.pull_messages(pull(node_id, true)).await.unwrap();
    assert!(res.metadata().contains_key(INLINE_OBJECTS_HEADER), "the SuperLink offers inline pushes");
    let res = res.into_inner();
    let tree = &res.message_object_trees[0];
    let inline: Vec<&str> = res.sepal_objects.iter().map(|o| o.object_id.as_str()).collect();
    assert!(sepal_core::store::covers(tree, inline.iter().copied()), "every object came with the message");
    // The delivery counted as the confirmation: the SuperLink dropped the objects.
    let wire = &res.messages_list[0];
    let run_id = wire.metadata.as_ref().unwrap().run_id;
    let gone = pb::PullObjectRequest { node: node(node_id), run_id, object_id: id.clone() };
    assert!(!fleet.pull_object(gone).await.unwrap().into_inner().object_found);

    // The reply, with all its objects inline: nothing is left to push.
    let mut reply = Message::with_content(Metadata::default(), content());
    route_reply(&mut reply, wire.metadata.as_ref().unwrap(), node_id);
    assert!(reply.metadata.created_at <= now_secs());
    let (reply_tree, objects, reply_id) = message_to_objects(&reply);
    let mut reply_wire = reply.to_wire_pb();
    reply_wire.metadata.as_mut().unwrap().message_id = reply_id;
    let req = pb::PushMessagesRequest {
        node: node(node_id),
        messages_list: vec![reply_wire],
        message_object_trees: vec![reply_tree],
        sepal_objects: objects
            .into_iter()
            .map(|(object_id, content)| pb::InlineObject { object_id, object_content: content })
            .collect(),
    };
    let pushed = fleet.push_messages(req).await.unwrap().into_inner();
    assert!(pushed.objects_to_push.is_empty(), "{:?}", pushed.objects_to_push);
    let got = server.receive(&id).await;
    assert_eq!(got.content, Some(content()), "the ServerApp gets the whole reply");
}
