//! The SuperNode end to end against an in-process Sepal SuperLink, with the test playing
//! the ServerApp (over ServerAppIo) and the ClientApp (over ClientAppIo, as an external
//! process-isolation app would). No Python needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sepal_core::records::{ConfigValue, Message, Metadata, MetricValue, Record, RecordDict};
use sepal_core::{message_from_objects, message_to_objects};
use sepal_proto::pb;
use sepal_proto::pb::client_app_io_client::ClientAppIoClient;
use sepal_proto::pb::exec_client::ExecClient;
use sepal_proto::pb::server_app_io_client::ServerAppIoClient;
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::{Isolation as LinkIsolation, Listeners};
use sepal_supernode::retry::RetryPolicy;
use sepal_supernode::{Config, Isolation};
use tokio::net::TcpListener;
use tonic::transport::Channel;

struct Link {
    sio: SocketAddr,
    fleet: SocketAddr,
    exec: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), sepal_superlink::ServeError>>,
}

/// Starts a SuperLink (process isolation) on the given addresses (port 0 = any).
async fn start_link(sio: SocketAddr, fleet: SocketAddr, exec: SocketAddr) -> Link {
    let listeners = Listeners::bind(sio, fleet, exec).await.unwrap();
    let (sio, fleet, exec) = (
        listeners.serverappio.local_addr().unwrap(),
        listeners.fleet.local_addr().unwrap(),
        listeners.exec.local_addr().unwrap(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = sepal_superlink::Config::new(LinkIsolation::Process);
    let task = tokio::spawn(sepal_superlink::serve(config, listeners, Arc::new(MemoryState::new()), async {
        let _ = rx.await;
    }));
    Link { sio, fleet, exec, stop: Some(tx), task }
}

impl Link {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.task.await;
    }
}

/// Starts a SuperNode (process isolation) against `fleet`; returns its ClientAppIo address.
async fn start_node(fleet: SocketAddr, partition: i64, timeout: Option<Duration>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node_config = sepal_fab::parse_config_overrides(&format!("partition-id={partition}")).unwrap();
    let config = Config {
        superlink: fleet.to_string(),
        tls: sepal_supernode::ClientTls::Insecure,
        node_config: sepal_fab::to_scalars(&node_config),
        clientappio: addr,
        isolation: Isolation::Process,
        clientapp_bin: "unused".into(),
        flwr_dir: None,
        retry: RetryPolicy::default(),
        clientapp_timeout: timeout,
        wasm_limits: sepal_sandbox::Limits::default(),
        wasm_grants: sepal_sandbox::Grants::none(),
    };
    tokio::spawn(sepal_supernode::serve(config, listener, std::future::pending()));
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn fab() -> pb::Fab {
    let dir = tempfile::tempdir().unwrap();
    let manifest = "[project]\nname = \"probe\"\nversion = \"1.0.0\"\n\n[tool.flwr.app]\npublisher = \"sepal\"\n\n\
                    [tool.flwr.app.components]\nserverapp = \"probe.server:app\"\nclientapp = \"probe.client:app\"\n\n\
                    [tool.flwr.app.config]\nlr = 0.1\nrounds = 2\n";
    std::fs::write(dir.path().join("pyproject.toml"), manifest).unwrap();
    let (content, hash_str, _) = sepal_fab::build_fab(dir.path()).unwrap();
    pb::Fab { hash_str, content }
}

/// The ServerApp side: a running run and a ServerAppIo client.
struct ServerApp {
    sio: ServerAppIoClient<Channel>,
    run_id: u64,
}

impl ServerApp {
    async fn start(link: &Link) -> Self {
        let mut exec = ExecClient::new(channel(link.exec).await);
        let mut overrides = HashMap::new();
        overrides.insert("rounds".to_string(), pb::Scalar { scalar: Some(pb::scalar::Scalar::Sint64(5)) });
        let req = pb::StartRunRequest { fab: Some(fab()), override_config: overrides, ..Default::default() };
        let run_id = exec.start_run(req).await.unwrap().into_inner().run_id.unwrap();
        let mut sio = ServerAppIoClient::new(channel(link.sio).await);
        sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await.unwrap();
        let running = pb::RunStatus { status: "running".into(), ..Default::default() };
        sio.update_run_status(pb::UpdateRunStatusRequest { run_id, run_status: Some(running) }).await.unwrap();
        Self { sio, run_id }
    }

    async fn wait_for_nodes(&mut self, n: usize) -> Vec<u64> {
        for _ in 0..200 {
            let nodes =
                self.sio.get_nodes(pb::GetNodesRequest { run_id: self.run_id }).await.unwrap().into_inner().nodes;
            if nodes.len() >= n {
                return nodes.into_iter().map(|n| n.node_id).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} nodes never came online");
    }

    /// Sends an instruction with `content` and returns its id.
    async fn send(&mut self, dst: u64, content: RecordDict, ttl: f64) -> String {
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        let meta = Metadata {
            run_id: self.run_id,
            src_node_id: 1,
            dst_node_id: dst,
            group_id: "1".into(),
            ttl,
            message_type: "train".into(),
            created_at: now,
            ..Default::default()
        };
        let msg = Message::with_content(meta, content);
        let (tree, objects, id) = message_to_objects(&msg);
        let mut wire = msg.to_wire_pb();
        wire.metadata.as_mut().unwrap().message_id = id.clone();
        let req = pb::PushAppMessagesRequest {
            run_id: self.run_id,
            messages_list: vec![wire],
            message_object_trees: vec![tree],
            ..Default::default()
        };
        let res = self.sio.push_messages(req).await.unwrap().into_inner();
        assert_eq!(res.message_ids, vec![id.clone()]);
        for (object_id, content) in objects {
            if res.objects_to_push.contains(&object_id) {
                let req = pb::PushObjectRequest {
                    node: Some(pb::Node { node_id: 1 }),
                    run_id: self.run_id,
                    object_id,
                    object_content: content.to_vec(),
                };
                assert!(self.sio.push_object(req).await.unwrap().into_inner().stored);
            }
        }
        id
    }

    /// Waits for the reply to `id` and returns it as a message.
    async fn receive(&mut self, id: &str) -> Message {
        for _ in 0..400 {
            let req =
                pb::PullAppMessagesRequest { run_id: self.run_id, message_ids: vec![id.into()], ..Default::default() };
            let res = self.sio.pull_messages(req).await.unwrap().into_inner();
            if let (Some(wire), Some(tree)) = (res.messages_list.first(), res.message_object_trees.first()) {
                let mut objects = HashMap::new();
                let mut stack = vec![tree];
                while let Some(t) = stack.pop() {
                    let req = pb::PullObjectRequest {
                        node: Some(pb::Node { node_id: 1 }),
                        run_id: self.run_id,
                        object_id: t.object_id.clone(),
                    };
                    // The sender pushes the message before its objects: wait for them, as Flower does.
                    let mut obj = self.sio.pull_object(req.clone()).await.unwrap().into_inner();
                    for _ in 0..100 {
                        if obj.object_available {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        obj = self.sio.pull_object(req.clone()).await.unwrap().into_inner();
                    }
                    assert!(obj.object_found && obj.object_available, "reply object {} arrives", t.object_id);
                    objects.insert(t.object_id.clone(), Bytes::from(obj.object_content));
                    stack.extend(t.children.iter());
                }
                return message_from_objects(wire, tree, &objects).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no reply to {id}");
    }
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
        objects
            .insert(t.object_id.clone(), Bytes::from(io.pull_object(req).await.unwrap().into_inner().object_content));
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
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
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
            let req = pb::PushObjectRequest { node: None, run_id, object_id, object_content: content.to_vec() };
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
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let link = start_link(any, any, any).await;
    let clientappio = start_node(link.fleet, 0, None).await;
    let mut server = ServerApp::start(&link).await;
    let node = server.wait_for_nodes(1).await[0];
    for round in 1..=2 {
        let id = server.send(node, lr_content(0.25), 60.0).await;
        client_app_once(clientappio).await;
        let reply = server.receive(&id).await;
        assert!(reply.error.is_none(), "{:?}", reply.error);
        assert_eq!(reply.metadata.src_node_id, node);
        assert_eq!(count_of(&reply), round, "context.state carried the counter into round {round}");
        let lr = reply.content.as_ref().unwrap().config_record("metrics").unwrap().get("lr").cloned();
        assert_eq!(lr, Some(ConfigValue::Double(0.25)), "the instruction's content reached the app");
    }
    link.stop().await;
}

#[tokio::test]
async fn a_clientapp_that_never_answers_yields_an_error_reply_in_time() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let link = start_link(any, any, any).await;
    let clientappio = start_node(link.fleet, 0, Some(Duration::from_millis(500))).await;
    let mut server = ServerApp::start(&link).await;
    let node = server.wait_for_nodes(1).await[0];
    let id = server.send(node, lr_content(0.1), 60.0).await;
    let reply = server.receive(&id).await;
    let error = reply.error.expect("an error reply");
    assert!(error.reason.contains("did not reply"), "{}", error.reason);

    // The node keeps serving: the next instruction is answered normally.
    let id = server.send(node, lr_content(0.1), 60.0).await;
    client_app_once(clientappio).await;
    assert!(server.receive(&id).await.error.is_none());
    link.stop().await;
}

#[tokio::test]
async fn nodes_rejoin_a_restarted_superlink_by_themselves() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let link = start_link(any, any, any).await;
    let (sio, fleet, exec) = (link.sio, link.fleet, link.exec);
    let clientappio = start_node(fleet, 0, None).await;
    let mut server = ServerApp::start(&link).await;
    server.wait_for_nodes(1).await;
    link.stop().await;

    // A new SuperLink with empty state on the same addresses.
    let link = start_link(sio, fleet, exec).await;
    let mut server = ServerApp::start(&link).await;
    let node = tokio::time::timeout(Duration::from_secs(30), server.wait_for_nodes(1)).await.expect("node rejoined")[0];
    let id = server.send(node, lr_content(0.5), 60.0).await;
    client_app_once(clientappio).await;
    assert_eq!(count_of(&server.receive(&id).await), 1, "a fresh run starts with fresh state");
    link.stop().await;
}
