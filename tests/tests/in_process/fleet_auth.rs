//! SuperNode authentication on Fleet: the allow-list (`--auth-list-public-keys`) and
//! replayed signatures.

use std::net::SocketAddr;

use sepal_proto::pb;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_superlink::{Config, Isolation};
use sepal_tests::kit::{channel, TestLink};
use sepal_wire::auth::{Allowlist, Signer};
use sepal_wire::keys::NodeSigningKey;
use sepal_wire::time::{iso, now_iso};
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor as _;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

async fn start(node_allowlist: Option<Allowlist>) -> TestLink {
    TestLink::with(Config { node_allowlist, ..Config::new(Isolation::Process) }).await
}

async fn plain(addr: SocketAddr) -> FleetClient<Channel> {
    FleetClient::new(channel(addr).await)
}

fn random_key() -> NodeSigningKey {
    NodeSigningKey::P384(p384::ecdsa::SigningKey::random(&mut p384::elliptic_curve::rand_core::OsRng))
}

/// A P-256 key, as `ssh-keygen -t ecdsa` makes by default.
fn random_p256_key() -> NodeSigningKey {
    NodeSigningKey::P256(p256::ecdsa::SigningKey::random(&mut p384::elliptic_curve::rand_core::OsRng))
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, text: &str) {
    let status = result.expect_err("the request should have been refused");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert_eq!(status.message(), text);
}

const CREATE: pb::CreateNodeRequest = pb::CreateNodeRequest { heartbeat_interval: 30.0 };

fn heartbeat(node_id: u64) -> pb::SendNodeHeartbeatRequest {
    pb::SendNodeHeartbeatRequest { node: Some(pb::Node { node_id }), heartbeat_interval: 30.0 }
}

/// The key pair (P-256, `ssh-keygen -t ecdsa`'s default) goes through the OpenSSH files a
/// user would make, on both sides.
#[tokio::test]
async fn only_listed_keys_may_call_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let listed = random_p256_key();
    let (private, public) = sepal_wire::keys::encode_openssh(&listed, "listed@test");
    let (private_path, public_path) = (dir.path().join("k"), dir.path().join("k.pub"));
    std::fs::write(&private_path, private).unwrap();
    std::fs::write(&public_path, &public).unwrap();
    let (_, other) = sepal_wire::keys::encode_openssh(&random_key(), "other");
    let csv = dir.path().join("keys.csv");
    std::fs::write(&csv, format!("{public}\n\n{other}\n")).unwrap();
    let allowlist = Allowlist::from_csv_file(&csv).unwrap();
    assert_eq!(allowlist.len(), 2);
    let link = start(Some(allowlist)).await;

    // Unlisted, unsigned and badly signed requests; the allowlist is checked after the
    // metadata and before the signature.
    let mut stranger = link.fleet_client(Signer::fresh()).await;
    assert_status(stranger.create_node(CREATE).await, Code::Unauthenticated, "Public key not recognized");
    assert_status(
        plain(link.fleet).await.create_node(CREATE).await,
        Code::Unauthenticated,
        "Missing authentication metadata",
    );
    let signer = Signer::from_openssh(&private_path, &public_path).unwrap();
    let mut md = signer.clone().call(Request::new(())).unwrap().metadata().clone();
    md.insert("flwr-timestamp", now_iso().parse().unwrap());
    assert_status(send_create(link.fleet, &md).await, Code::Unauthenticated, "Invalid signature");
    let mut md = Signer::fresh().call(Request::new(())).unwrap().metadata().clone();
    md.insert("flwr-timestamp", now_iso().parse().unwrap());
    assert_status(send_create(link.fleet, &md).await, Code::Unauthenticated, "Public key not recognized");

    // The listed key works, and the server keeps serving strangers their refusal.
    let mut node = link.fleet_client(signer).await;
    let node_id = node.create_node(CREATE).await.unwrap().into_inner().node.unwrap().node_id;
    node.send_node_heartbeat(heartbeat(node_id)).await.unwrap();
    assert_status(
        stranger.send_node_heartbeat(heartbeat(node_id)).await,
        Code::Unauthenticated,
        "Public key not recognized",
    );
    node.send_node_heartbeat(heartbeat(node_id)).await.unwrap();
}

async fn send_create(addr: SocketAddr, md: &MetadataMap) -> Result<tonic::Response<pb::CreateNodeResponse>, Status> {
    let mut req = Request::new(CREATE);
    *req.metadata_mut() = md.clone();
    plain(addr).await.create_node(req).await
}

async fn send_heartbeat(addr: SocketAddr, md: &MetadataMap, node_id: u64) -> Result<(), Status> {
    let mut req = Request::new(heartbeat(node_id));
    *req.metadata_mut() = md.clone();
    plain(addr).await.send_node_heartbeat(req).await.map(|_| ())
}

/// A captured (key, timestamp, signature) triple is accepted again while its timestamp
/// is inside the window (as in Flower: there is no nonce), but only for the key's own
/// node; outside the window it is refused.
#[tokio::test]
async fn replayed_signatures() {
    let link = start(None).await;
    let alice_key = random_key();
    let (alice, bob) = (Signer::from_key(alice_key.clone()), Signer::fresh());
    let a =
        link.fleet_client(alice.clone()).await.create_node(CREATE).await.unwrap().into_inner().node.unwrap().node_id;
    let b = link.fleet_client(bob).await.create_node(CREATE).await.unwrap().into_inner().node.unwrap().node_id;

    let captured = alice.clone().call(Request::new(())).unwrap().metadata().clone();
    send_heartbeat(link.fleet, &captured, a).await.unwrap();
    send_heartbeat(link.fleet, &captured, a).await.unwrap();
    assert_status(send_heartbeat(link.fleet, &captured, b).await, Code::Unauthenticated, "Invalid node ID");
    assert_status(send_create(link.fleet, &captured).await, Code::Unauthenticated, "Public key already in use");

    // Alice's genuine signature from 400 s ago, replayed too late, for her own node.
    let old = iso(chrono::Utc::now() - chrono::Duration::seconds(400));
    let stale = sign_at(&alice_key, &old);
    assert_status(send_heartbeat(link.fleet, &stale, a).await, Code::Unauthenticated, "Invalid timestamp");
    assert_status(send_create(link.fleet, &stale).await, Code::Unauthenticated, "Invalid timestamp");
    // Her fresh requests still work.
    link.fleet_client(alice).await.send_node_heartbeat(heartbeat(a)).await.unwrap();
}

/// Flower's metadata for `key` signing `timestamp`.
fn sign_at(key: &NodeSigningKey, timestamp: &str) -> MetadataMap {
    let mut md = MetadataMap::new();
    Signer::from_key(key.clone()).sign(timestamp, &mut md).unwrap();
    md
}
