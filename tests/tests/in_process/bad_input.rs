//! Hostile and malformed requests get a precise status, and the SuperLink keeps serving.

use prost::Message as _;
use sepal_core::routing::now_secs;
use sepal_proto::pb;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_superlink::{Config, Isolation};
use sepal_tests::kit::{self, channel, PyProject, TestLink};
use sepal_wire::auth::Signer;
use tonic::codegen::http;
use tonic::{Code, Request, Status};

fn node(node_id: u64) -> Option<pb::Node> {
    Some(pb::Node { node_id })
}

pub(crate) fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, text: &str) {
    let status = result.expect_err("the request should have been refused");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert!(status.message().contains(text), "{:?} does not mention {text:?}", status.message());
}

/// A small valid FAB.
fn fab() -> pb::Fab {
    kit::fab(&PyProject::new("probe").config("num-server-rounds", "1"))
}

/// Submits a run and moves it to running as a ServerApp would; returns its id.
async fn running_run(link: &TestLink) -> u64 {
    let mut exec = link.exec_client().await;
    let run_id = exec
        .start_run(pb::StartRunRequest { fab: Some(fab()), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .run_id
        .unwrap();
    let mut sio = link.serverappio_client().await;
    let inputs = sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await.unwrap().into_inner();
    assert_eq!(inputs.run.unwrap().run_id, run_id);
    let running = pb::RunStatus { status: "running".into(), ..Default::default() };
    sio.update_run_status(pb::UpdateRunStatusRequest { run_id, run_status: Some(running) }).await.unwrap();
    run_id
}

fn instruction(run_id: u64, dst: u64) -> (pb::Message, pb::ObjectTree) {
    let meta = pb::Metadata {
        run_id,
        message_id: "a".repeat(64),
        src_node_id: 1,
        dst_node_id: dst,
        group_id: "1".into(),
        ttl: 60.0,
        message_type: "train".into(),
        created_at: now_secs(),
        ..Default::default()
    };
    let msg = pb::Message { metadata: Some(meta), content: Some(pb::RecordDict::default()), error: None };
    (msg, pb::ObjectTree { object_id: "a".repeat(64), children: vec![] })
}

#[tokio::test]
async fn fleet_refuses_unsigned_and_unknown_nodes() {
    let link = TestLink::start().await;
    let mut plain = FleetClient::new(channel(link.fleet).await);
    let res = plain.create_node(pb::CreateNodeRequest { heartbeat_interval: 30.0 }).await;
    assert_status(res, Code::Unauthenticated, "Missing authentication metadata");

    let mut client = link.fleet_client(Signer::fresh()).await;
    let res = client.pull_messages(pb::PullMessagesRequest { node: node(42), ..Default::default() }).await;
    assert_status(res, Code::Unauthenticated, "Invalid node ID");

    let created = client.create_node(pb::CreateNodeRequest { heartbeat_interval: 30.0 }).await.unwrap();
    let node_id = created.into_inner().node.unwrap().node_id;
    let res = client.pull_messages(pb::PullMessagesRequest { node: node(node_id + 1), ..Default::default() }).await;
    assert_status(res, Code::Unauthenticated, "Invalid node ID");
    let res = client.create_node(pb::CreateNodeRequest { heartbeat_interval: 30.0 }).await;
    assert_status(res, Code::Unauthenticated, "Public key already in use");

    let healthy = client.pull_messages(pb::PullMessagesRequest { node: node(node_id), ..Default::default() }).await;
    assert!(healthy.unwrap().into_inner().messages_list.is_empty());
}

#[tokio::test]
async fn exec_refuses_bad_fabs_and_still_accepts_a_good_one() {
    let link = TestLink::start().await;
    let mut exec = link.exec_client().await;
    let good = fab();

    let wrong_hash = pb::Fab { hash_str: "0".repeat(64), content: good.content.clone() };
    let res = exec.start_run(pb::StartRunRequest { fab: Some(wrong_hash), ..Default::default() }).await;
    // A submission that cannot start is PERMISSION_DENIED "Run not started: <reason>", the
    // one refusal Flower's `flwr run` prints readably.
    assert_status(res, Code::PermissionDenied, "Run not started: FAB hash mismatch");

    let huge = pb::Fab { hash_str: String::new(), content: vec![0; 10 * 1024 * 1024 + 1] };
    let res = exec.start_run(pb::StartRunRequest { fab: Some(huge), ..Default::default() }).await;
    assert_status(res, Code::PermissionDenied, "limit is 10485760 bytes");

    let garbage = pb::Fab { hash_str: String::new(), content: b"not a zip".to_vec() };
    let res = exec.start_run(pb::StartRunRequest { fab: Some(garbage), ..Default::default() }).await;
    assert_status(res, Code::PermissionDenied, "invalid FAB");

    let mut overrides = std::collections::HashMap::new();
    overrides.insert("no-such-key".to_string(), pb::Scalar { scalar: Some(pb::scalar::Scalar::Bool(true)) });
    let res = exec
        .start_run(pb::StartRunRequest { fab: Some(good.clone()), override_config: overrides, ..Default::default() })
        .await;
    assert_status(res, Code::PermissionDenied, "no-such-key");

    let run_id = exec
        .start_run(pb::StartRunRequest { fab: Some(good), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    let runs = exec.list_runs(pb::ListRunsRequest::default()).await.unwrap().into_inner();
    assert_eq!(runs.run_dict.len(), 1, "only the good FAB became a run");
    assert_eq!(runs.run_dict[&run_id.unwrap()].status.as_ref().unwrap().status, "pending");
}

#[tokio::test]
async fn exec_unknown_or_finished_runs_are_refused() {
    let link = TestLink::start().await;
    let mut exec = link.exec_client().await;
    let res = exec.list_runs(pb::ListRunsRequest { run_id: Some(5) }).await;
    assert_status(res, Code::NotFound, "Run ID not found");
    assert_status(exec.stop_run(pb::StopRunRequest { run_id: 5 }).await, Code::NotFound, "Run ID not found");
    let res = exec.stream_logs(pb::StreamLogsRequest { run_id: 5, after_timestamp: 0.0 }).await;
    assert_status(res, Code::NotFound, "Run ID not found");
    assert_status(exec.get_login_details(pb::GetLoginDetailsRequest {}).await, Code::Unimplemented, "not enabled");

    let run_id = running_run(&link).await;
    assert!(exec.stop_run(pb::StopRunRequest { run_id }).await.unwrap().into_inner().success);
    let res = exec.stop_run(pb::StopRunRequest { run_id }).await;
    assert_status(res, Code::FailedPrecondition, "already finished");
    let runs = exec.list_runs(pb::ListRunsRequest { run_id: Some(run_id) }).await.unwrap().into_inner();
    let status = runs.run_dict[&run_id].status.clone().unwrap();
    assert_eq!((status.status.as_str(), status.sub_status.as_str()), ("finished", "stopped"));
}

#[tokio::test]
async fn serverappio_refuses_unknown_runs_and_malformed_messages() {
    let link = TestLink::start().await;
    let mut sio = link.serverappio_client().await;
    assert_status(sio.get_nodes(pb::GetNodesRequest { run_id: 5 }).await, Code::NotFound, "run 5 not found");
    let res = sio.push_logs(pb::PushLogsRequest { run_id: 5, logs: vec!["x".into()], ..Default::default() }).await;
    assert_status(res, Code::NotFound, "run 5 not found");

    let run_id = running_run(&link).await;
    let (_node, node_id) = link.register_node().await;

    let res = sio.push_messages(pb::PushAppMessagesRequest { run_id, ..Default::default() }).await;
    assert_status(res, Code::InvalidArgument, "must not be empty");

    let (mut expired, tree) = instruction(run_id, node_id);
    expired.metadata.as_mut().unwrap().created_at -= 120.0;
    let req = pb::PushAppMessagesRequest {
        run_id,
        messages_list: vec![expired],
        message_object_trees: vec![tree.clone()],
        ..Default::default()
    };
    assert_status(sio.push_messages(req).await, Code::InvalidArgument, "TTL has expired");

    let (msg, _) = instruction(run_id, node_id);
    let req = pb::PushAppMessagesRequest {
        run_id,
        messages_list: vec![msg.clone()],
        message_object_trees: vec![],
        ..Default::default()
    };
    assert_status(sio.push_messages(req).await, Code::InvalidArgument, "needs its tree");

    let res = sio
        .push_object(pb::PushObjectRequest {
            node: node(7),
            run_id,
            object_id: "a".repeat(64),
            object_content: Default::default(),
        })
        .await;
    assert_status(res, Code::FailedPrecondition, "Unexpected node ID");

    let req = pb::PushAppMessagesRequest {
        run_id,
        messages_list: vec![msg],
        message_object_trees: vec![tree],
        ..Default::default()
    };
    let res = sio.push_messages(req).await.unwrap().into_inner();
    assert_eq!(res.message_ids, vec!["a".repeat(64)]);
    assert_eq!(res.objects_to_push, vec!["a".repeat(64)], "the message object is still to be pushed");
}

#[tokio::test]
async fn fleet_replies_must_answer_a_real_instruction_from_its_node() {
    let link = TestLink::start().await;
    let run_id = running_run(&link).await;
    let mut alice = link.fleet_client(Signer::fresh()).await;
    let mut bob = link.fleet_client(Signer::fresh()).await;
    let create = pb::CreateNodeRequest { heartbeat_interval: 30.0 };
    let a = alice.create_node(create).await.unwrap().into_inner().node.unwrap().node_id;
    let b = bob.create_node(create).await.unwrap().into_inner().node.unwrap().node_id;
    let mut sio = link.serverappio_client().await;
    let (msg, tree) = instruction(run_id, a);
    let req = pb::PushAppMessagesRequest {
        run_id,
        messages_list: vec![msg],
        message_object_trees: vec![tree],
        ..Default::default()
    };
    sio.push_messages(req).await.unwrap();

    let reply = |src: u64, reply_to: &str, id: &str| {
        let meta = pb::Metadata {
            run_id,
            message_id: id.into(),
            src_node_id: src,
            dst_node_id: 1,
            reply_to_message_id: reply_to.into(),
            group_id: "1".into(),
            ttl: 30.0,
            message_type: "train".into(),
            created_at: now_secs(),
        };
        let msg = pb::Message { metadata: Some(meta), content: Some(pb::RecordDict::default()), error: None };
        (msg, pb::ObjectTree { object_id: id.into(), children: vec![] })
    };
    let push = |node_id: u64, (msg, tree): (pb::Message, pb::ObjectTree)| pb::PushMessagesRequest {
        node: node(node_id),
        messages_list: vec![msg],
        message_object_trees: vec![tree],
        ..Default::default()
    };

    // As in Flower, a reply that cannot be accepted is dropped with an OK answer (Flower's
    // SuperNodes stop on any error here): nothing is stored, nothing is to be pushed.
    let dropped = |res: Result<tonic::Response<pb::PushMessagesResponse>, Status>| {
        let res = res.expect("a dropped reply still gets OK").into_inner();
        assert!(res.results.is_empty() && res.objects_to_push.is_empty(), "{res:?}");
    };
    // To an instruction that does not exist; from the wrong node; claiming another sender;
    // expired (TTL <= 0, what a straggling Flower SuperNode sends); for another run.
    dropped(alice.push_messages(push(a, reply(a, &"f".repeat(64), &"b".repeat(64)))).await);
    dropped(bob.push_messages(push(b, reply(b, &"a".repeat(64), &"c".repeat(64)))).await);
    dropped(alice.push_messages(push(a, reply(b, &"a".repeat(64), &"c".repeat(64)))).await);
    let (mut late, tree) = reply(a, &"a".repeat(64), &"e".repeat(64));
    late.metadata.as_mut().unwrap().ttl = -3.0;
    dropped(alice.push_messages(push(a, (late, tree))).await);
    let (mut other_run, tree) = reply(a, &"a".repeat(64), &"e".repeat(64));
    other_run.metadata.as_mut().unwrap().run_id = run_id + 1;
    let res = alice.push_messages(push(a, (other_run, tree))).await;
    assert_status(res, Code::NotFound, "not found");
    let empty = sio
        .pull_messages(pb::PullAppMessagesRequest { run_id, message_ids: vec!["a".repeat(64)], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.messages_list.is_empty(), "no dropped reply reached the ServerApp");
    // A push without any message is malformed (Flower's SuperNodes never send one).
    let res = alice.push_messages(pb::PushMessagesRequest { node: node(a), ..Default::default() }).await;
    assert_status(res, Code::InvalidArgument, "must not be empty");

    let ok = alice.push_messages(push(a, reply(a, &"a".repeat(64), &"d".repeat(64)))).await.unwrap().into_inner();
    assert_eq!(ok.results.get(&"d".repeat(64)), Some(&0));
    let pulled = sio
        .pull_messages(pb::PullAppMessagesRequest { run_id, message_ids: vec!["a".repeat(64)], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pulled.messages_list[0].metadata.as_ref().unwrap().message_id, "d".repeat(64));
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() {
    let link = TestLink::start().await;
    let mut grpc = tonic::client::Grpc::new(channel(link.serverappio).await);
    grpc.ready().await.unwrap();
    // A Fab's field 1 is a string; GetNodesRequest's field 1 is a varint: the bytes cannot parse.
    let bytes = pb::Fab { hash_str: "x".into(), content: vec![] }.encode_to_vec();
    let codec = sepal_wire::codec::WireCodec::<RawBytes, pb::GetNodesResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/flwr.proto.ServerAppIo/GetNodes");
    let res = grpc.unary(Request::new(RawBytes(bytes)), path, codec).await;
    assert_status(res, Code::InvalidArgument, "malformed GetNodesRequest");

    let mut sio = link.serverappio_client().await;
    let healthy = sio.get_run_status(pb::GetRunStatusRequest::default()).await;
    assert!(healthy.is_ok(), "the server keeps serving");
}

/// A message that is already encoded: its bytes are sent as they are.
#[derive(Clone, PartialEq, Default)]
struct RawBytes(Vec<u8>);

impl std::fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBytes({} bytes)", self.0.len())
    }
}

impl prost::Message for RawBytes {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Only ever sent; nothing is decoded into it.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

#[tokio::test]
async fn oversized_input_is_resource_exhausted_and_the_server_keeps_serving() {
    let limits = sepal_superlink::InputLimits {
        max_object_bytes: 1000,
        max_objects_per_message: 3,
        max_run_config_entries: 2,
        ..Default::default()
    };
    let link = TestLink::with(Config { limits, ..Config::new(Isolation::Process) }).await;
    let mut exec = link.exec_client().await;
    let scalar = || pb::Scalar { scalar: Some(pb::scalar::Scalar::Bool(true)) };
    let overrides = (0..3).map(|i| (format!("k{i}"), scalar())).collect();
    let res = exec
        .start_run(pb::StartRunRequest { fab: Some(fab()), override_config: overrides, ..Default::default() })
        .await;
    assert_status(res, Code::PermissionDenied, "the limit is 2");

    let run_id = running_run(&link).await;
    let (_node, node_id) = link.register_node().await;
    let mut sio = link.serverappio_client().await;

    let (msg, mut tree) = instruction(run_id, node_id);
    tree.children = (0..4).map(|i| pb::ObjectTree { object_id: format!("{i:064x}"), children: vec![] }).collect();
    let req = pb::PushAppMessagesRequest {
        run_id,
        messages_list: vec![msg.clone()],
        message_object_trees: vec![tree],
        ..Default::default()
    };
    assert_status(sio.push_messages(req).await, Code::ResourceExhausted, "the limit is 3");

    let (_, tree) = instruction(run_id, node_id);
    let req = pb::PushAppMessagesRequest {
        run_id,
        messages_list: vec![msg],
        message_object_trees: vec![tree],
        ..Default::default()
    };
    sio.push_messages(req).await.unwrap();
    let big = pb::PushObjectRequest {
        node: node(1),
        run_id,
        object_id: "a".repeat(64),
        object_content: vec![0; 2000].into(),
    };
    assert_status(sio.push_object(big).await, Code::ResourceExhausted, "the limit is 1000");

    let healthy = sio.pull_object(pb::PullObjectRequest { node: node(1), run_id, object_id: "a".repeat(64) }).await;
    assert!(healthy.unwrap().into_inner().object_found, "the preregistered object is still there");
}
