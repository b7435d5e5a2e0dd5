//! Python apps' polls are held (briefly) until there is something to answer, since they
//! sleep between empty answers: a ServerApp's PullMessages until its replies arrive, its
//! PullAppInputs until a run is submitted, a ClientApp's GetRunIdsWithPendingMessages
//! until an instruction comes.

use std::time::Duration;

use sepal_core::message_to_objects;
use sepal_core::records::{ConfigRecord, ConfigValue, Message, Metadata, RecordDict};
use sepal_core::routing::route_reply;
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_client::ClientAppIoClient;
use sepal_tests::kit::{self, PlayedServerApp, PyProject, TestLink, TestNode};

#[tokio::test]
async fn a_pull_issued_before_the_reply_returns_it() {
    let link = TestLink::start().await;
    let (mut fleet, node_id) = link.register_node().await;
    let mut server = PlayedServerApp::start(&link, kit::fab(&PyProject::new("probe")), Default::default()).await;
    let content = RecordDict::new().with("config", ConfigRecord::new().with("x", ConfigValue::Sint64(1)).into());
    let id = server.send(node_id, content.clone(), 60.0).await;

    // The ServerApp pulls before the node has even pulled the instruction.
    let (mut sio, run_id) = (server.sio.clone(), server.run_id);
    let ids = vec![id.clone()];
    let held = tokio::spawn(async move {
        let req = pb::PullAppMessagesRequest { run_id, message_ids: ids, ..Default::default() };
        sio.pull_messages(req).await.unwrap().into_inner()
    });

    // The node answers.
    let pulled = fleet.pull_messages(pb::PullMessagesRequest { node: Some(pb::Node { node_id }), message_ids: vec![] });
    let instruction = pulled.await.unwrap().into_inner().messages_list.remove(0);
    let mut reply = Message::with_content(Metadata::default(), content);
    route_reply(&mut reply, instruction.metadata.as_ref().unwrap(), node_id);
    let (tree, _, reply_id) = message_to_objects(&reply);
    let mut wire = reply.to_wire_pb();
    wire.metadata.as_mut().unwrap().message_id = reply_id.clone();
    let req = pb::PushMessagesRequest {
        node: Some(pb::Node { node_id }),
        messages_list: vec![wire],
        message_object_trees: vec![tree],
        ..Default::default()
    };
    fleet.push_messages(req).await.unwrap();

    // That one pull brings the reply.
    let res = held.await.unwrap();
    assert_eq!(res.messages_list.len(), 1, "the held pull returned the reply");
    assert_eq!(res.messages_list[0].metadata.as_ref().unwrap().reply_to_message_id, id);
}

#[tokio::test]
async fn a_pull_for_a_reply_that_does_not_come_returns_empty_after_a_short_hold() {
    let link = TestLink::start().await;
    let (_node, node_id) = link.register_node().await;
    let mut server = PlayedServerApp::start(&link, kit::fab(&PyProject::new("probe")), Default::default()).await;
    let id = server.send(node_id, RecordDict::new(), 60.0).await;
    let req = pb::PullAppMessagesRequest { run_id: server.run_id, message_ids: vec![id], ..Default::default() };
    let res = server.sio.pull_messages(req).await.unwrap().into_inner();
    assert!(res.messages_list.is_empty(), "nothing to return, and the call still ends");
}

/// Flower's `flwr-clientapp` in process isolation asks which runs have an instruction, and
/// sleeps 1 s when none has: its ask is held until the instruction comes.
#[tokio::test]
async fn a_clientapp_asking_before_the_instruction_comes_gets_its_run() {
    let link = TestLink::start().await;
    let node = TestNode::start(TestNode::config(&link)).await;
    let mut server = PlayedServerApp::start(&link, kit::fab(&PyProject::new("probe")), Default::default()).await;
    let node_id = server.wait_for_nodes(1).await[0];

    let mut io = ClientAppIoClient::new(kit::channel(node.clientappio).await);
    let held = tokio::spawn(async move {
        io.get_run_ids_with_pending_messages(pb::GetRunIdsWithPendingMessagesRequest {}).await.unwrap().into_inner()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.send(node_id, RecordDict::new(), 60.0).await;
    assert_eq!(held.await.unwrap().run_ids, vec![server.run_id], "the held ask returned the run");
}

/// Flower's `flwr-serverapp` in process isolation asks for a pending run, and sleeps 3 s
/// when there is none: its ask is held until a run is submitted.
#[tokio::test]
async fn a_serverapp_asking_before_a_run_is_submitted_gets_it() {
    let link = TestLink::start().await;
    let mut sio = link.serverappio_client().await;
    let held = tokio::spawn(async move { sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let run_id = link.start_run(kit::fab(&PyProject::new("probe"))).await;
    let inputs = held.await.unwrap().unwrap().into_inner();
    assert_eq!(inputs.run.map(|r| r.run_id), Some(run_id), "the held ask returned the run");
}
