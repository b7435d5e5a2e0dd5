//! The SuperNode end to end against an in-process Sepal SuperLink, with the test playing
//! the ServerApp (over ServerAppIo) and the ClientApp (over ClientAppIo, as an external
//! process-isolation app would). No Python needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use sepal_core::records::{ConfigValue, Message, Metadata, MetricValue, Record, RecordDict};
use sepal_core::routing::now_secs;
use sepal_core::{message_from_objects, message_to_objects};
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_client::ClientAppIoClient;
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::{Config as LinkConfig, Isolation as LinkIsolation};
use sepal_supernode::Config;
use sepal_tests::kit::{self, channel, PlayedServerApp, PyProject, TestLink, TestNode};

/// A SuperNode of `link` with `partition-id=0` and the given ClientApp timeout.
async fn start_node(link: &TestLink, timeout: Option<Duration>) -> TestNode {
    TestNode::start(Config { clientapp_timeout: timeout, ..TestNode::partition(link, 0, 1) }).await
}

fn fab() -> pb::Fab {
    kit::fab(&PyProject::new("probe").config("lr", "0.1").config("rounds", "2"))
}

/// The test as the ServerApp of a run of [`fab`] with `rounds = 5`.
async fn serverapp(link: &TestLink) -> PlayedServerApp {
    let rounds = pb::Scalar { scalar: Some(pb::scalar::Scalar::Sint64(5)) };
    PlayedServerApp::start(link, fab(), [("rounds".to_string(), rounds)].into()).await
}

/// Plays `flwr-clientapp` once: takes the pending instruction, adds `counter` to the
/// context state (kept per run by the node) and replies with the counter and lr.
async fn client_app_once(addr: SocketAddr) {
    let mut io = ClientAppIoClient::new(channel(addr).await);
    let (run_id, token) = loop {
        let runs = io.get_run_ids_with_pending_messages(pb::GetRunIdsWithPendingMessagesRequest {}).await.unwrap();
        if let Some(&run_id) = runs.into_inner().run_ids.first() {
            let token = io.request_token(pb::RequestTokenRequest { run_id }).await.unwrap().into_inner().token;
            assert!(!token.is_empty());
            assert_eq!(io.request_token(pb::RequestTokenRequest { run_id }).await.unwrap().into_inner().token, "");
            break (run_id, token);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let inputs =
        io.pull_client_app_inputs(pb::PullAppInputsRequest { token: token.clone() }).await.unwrap().into_inner();
    let mut context = inputs.context.unwrap();
    assert_eq!(context.run_config["rounds"].scalar, Some(pb::scalar::Scalar::Sint64(5)), "override fused");
    assert_eq!(context.run_config["lr"].scalar, Some(pb::scalar::Scalar::Double(0.1)), "FAB default");
    assert!(context.node_config.contains_key("partition-id"));
    assert_eq!(inputs.fab.unwrap().hash_str, inputs.run.unwrap().fab_hash);

    let pulled =
        io.pull_message(pb::PullAppMessagesRequest { token: token.clone(), ..Default::default() }).await.unwrap();
    let pulled = pulled.into_inner();
    let (wire, tree) = (&pulled.messages_list[0], &pulled.message_object_trees[0]);
    let mut objects = HashMap::new();
    let node = Some(pb::Node { node_id: context.node_id });
    let mut stack = vec![tree];
    while let Some(t) = stack.pop() {
        let req = pb::PullObjectRequest { node, run_id, object_id: t.object_id.clone() };
        objects.insert(t.object_id.clone(), io.pull_object(req).await.unwrap().into_inner().object_content);
        stack.extend(t.children.iter());
    }
    let instruction = message_from_objects(wire, tree, &objects).unwrap();
    let confirm = pb::ConfirmMessageReceivedRequest { node, run_id, message_object_id: tree.object_id.clone() };
    io.confirm_message_received(confirm).await.unwrap();

    let mut state: RecordDict = context.state.take().unwrap_or_default().try_into().unwrap();
    let count = match state.metric_record("counter").and_then(|r| r.get("n")) {
        Some(MetricValue::Sint64(n)) => n + 1,
        _ => 1,
    };
    state.insert("counter", Record::Metric([("n".to_string(), MetricValue::Sint64(count))].into_iter().collect()));
    context.state = Some((&state).into());

    let ins = &instruction.metadata;
    let now = now_secs();
    let meta = Metadata {
        run_id,
        src_node_id: context.node_id,
        dst_node_id: 1,
        reply_to_message_id: ins.message_id.clone(),
        group_id: ins.group_id.clone(),
        ttl: ins.created_at + ins.ttl - now,
        message_type: ins.message_type.clone(),
        created_at: now,
        ..Default::default()
    };
    let lr = instruction.content.as_ref().unwrap().config_record("config").unwrap().get("lr").cloned().unwrap();
    let content = RecordDict::new().with(
        "metrics",
        Record::Config(
            [("count".to_string(), ConfigValue::Sint64(count)), ("lr".to_string(), lr)].into_iter().collect(),
        ),
    );
    let reply = Message::with_content(meta, content);
    let (tree, objects, id) = message_to_objects(&reply);
    let mut wire = reply.to_wire_pb();
    wire.metadata.as_mut().unwrap().message_id = id;
    let req = pb::PushAppMessagesRequest {
        token: token.clone(),
        messages_list: vec![wire],
        message_object_trees: vec![tree],
        ..Default::default()
    };
    let wanted = io.push_message(req).await.unwrap().into_inner().objects_to_push;
    for (object_id, content) in objects {
        if wanted.contains(&object_id) {
            let req = pb::PushObjectRequest { node: None, run_id, object_id, object_content: content };
            assert!(io.push_object(req).await.unwrap().into_inner().stored);
        }
    }
    let outputs = pb::PushAppOutputsRequest { token, run_id, context: Some(context) };
    io.push_client_app_outputs(outputs).await.unwrap();
}

fn lr_content(lr: f64) -> RecordDict {
    RecordDict::new()
        .with("config", Record::Config([("lr".to_string(), ConfigValue::Double(lr))].into_iter().collect()))
}

fn count_of(reply: &Message) -> i64 {
    match reply.content.as_ref().unwrap().config_record("metrics").unwrap().get("count") {
        Some(ConfigValue::Sint64(n)) => *n,
        other => panic!("unexpected count {other:?}"),
    }
}

#[tokio::test]
async fn instruction_reaches_the_clientapp_and_state_persists_across_rounds() {
    let link = TestLink::start().await;
    let supernode = start_node(&link, None).await;
    let mut server = serverapp(&link).await;
    let node = server.wait_for_nodes(1).await[0];
    for round in 1..=2 {
        let id = server.send(node, lr_content(0.25), 60.0).await;
        client_app_once(supernode.clientappio).await;
        let reply = server.receive(&id).await;
        assert!(reply.error.is_none(), "{:?}", reply.error);
        assert_eq!(reply.metadata.src_node_id, node);
        assert_eq!(count_of(&reply), round, "context.state carried the counter into round {round}");
        let lr = reply.content.as_ref().unwrap().config_record("metrics").unwrap().get("lr").cloned();
        assert_eq!(lr, Some(ConfigValue::Double(0.25)), "the instruction's content reached the app");
    }
    link.stop().await.unwrap();
}

#[tokio::test]
async fn a_clientapp_that_never_answers_yields_an_error_reply_in_time() {
    let link = TestLink::start().await;
    let supernode = start_node(&link, Some(Duration::from_millis(500))).await;
    let mut server = serverapp(&link).await;
    let node = server.wait_for_nodes(1).await[0];
    let id = server.send(node, lr_content(0.1), 60.0).await;
    let reply = server.receive(&id).await;
    let error = reply.error.expect("an error reply");
    assert!(error.reason.contains("did not reply"), "{}", error.reason);

    // The node keeps serving: the next instruction is answered normally.
    let id = server.send(node, lr_content(0.1), 60.0).await;
    client_app_once(supernode.clientappio).await;
    assert!(server.receive(&id).await.error.is_none());
    link.stop().await.unwrap();
}

#[tokio::test]
async fn nodes_rejoin_a_restarted_superlink_by_themselves() {
    let link = TestLink::start().await;
    let addrs = link.addrs();
    let supernode = start_node(&link, None).await;
    let mut server = serverapp(&link).await;
    server.wait_for_nodes(1).await;
    link.stop().await.unwrap();

    // A new SuperLink with empty state on the same addresses.
    let config = LinkConfig::new(LinkIsolation::Process);
    let link = TestLink::serve(config, std::sync::Arc::new(MemoryState::new()), addrs).await;
    let mut server = serverapp(&link).await;
    let node = tokio::time::timeout(Duration::from_secs(30), server.wait_for_nodes(1)).await.expect("node rejoined")[0];
    let id = server.send(node, lr_content(0.5), 60.0).await;
    client_app_once(supernode.clientappio).await;
    assert_eq!(count_of(&server.receive(&id).await), 1, "a fresh run starts with fresh state");
    link.stop().await.unwrap();
}
