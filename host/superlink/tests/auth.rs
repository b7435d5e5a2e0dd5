//! SuperNode authentication on Fleet: the allowlist (`--auth-list-public-keys`) and
//! replayed signatures.

use std::net::SocketAddr;
use std::sync::Arc;

use sepal_proto::pb;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_superlink::auth::{parse_openssh_public_key, Allowlist};
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::{serve, Config, Isolation, Listeners};
use sepal_supernode::signer::{openssh, Signer};
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor as _;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

struct Link {
    fleet: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(node_allowlist: Option<Allowlist>) -> Link {
    let any = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind(any, any, any).await.unwrap();
    let fleet = listeners.fleet.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = Config { node_allowlist, ..Config::new(Isolation::Process) };
    tokio::spawn(serve(config, listeners, Arc::new(MemoryState::new()), async {
        let _ = rx.await;
    }));
    Link { fleet, _stop: tx }
}

async fn plain(addr: SocketAddr) -> FleetClient<Channel> {
    FleetClient::new(Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap())
}

async fn signed(
    addr: SocketAddr,
    signer: Signer,
) -> FleetClient<tonic::service::interceptor::InterceptedService<Channel, Signer>> {
    FleetClient::with_interceptor(
        Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap(),
        signer,
    )
}

fn random_key() -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)
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

/// The key pair goes through the OpenSSH files a user would make, on both sides.
#[tokio::test]
async fn only_listed_keys_may_call_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let listed = random_key();
    let (private, public) = openssh::encode(&listed, "listed@test");
    let (private_path, public_path) = (dir.path().join("k"), dir.path().join("k.pub"));
    std::fs::write(&private_path, private).unwrap();
    std::fs::write(&public_path, &public).unwrap();
    let (_, other) = openssh::encode(&random_key(), "other");
    let csv = dir.path().join("keys.csv");
    std::fs::write(&csv, format!("{public}\n\n{other}\n")).unwrap();
    let allowlist = Allowlist::from_csv_file(&csv).unwrap();
    assert_eq!(allowlist.len(), 2);
    let link = start(Some(allowlist)).await;

    // Unlisted, unsigned and badly signed requests; the allowlist is checked after the
    // metadata and before the signature.
    let mut stranger = signed(link.fleet, Signer::fresh()).await;
    assert_status(stranger.create_node(CREATE).await, Code::Unauthenticated, "Public key not recognized");
    assert_status(
        plain(link.fleet).await.create_node(CREATE).await,
        Code::Unauthenticated,
        "Missing authentication metadata",
    );
    let signer = Signer::from_openssh(&private_path, &public_path).unwrap();
    let mut md = signer.clone().call(Request::new(())).unwrap().metadata().clone();
    md.insert("flwr-timestamp", chrono::Utc::now().to_rfc3339().parse().unwrap());
    assert_status(send_create(link.fleet, &md).await, Code::Unauthenticated, "Invalid signature");
    let mut md = Signer::fresh().call(Request::new(())).unwrap().metadata().clone();
    md.insert("flwr-timestamp", chrono::Utc::now().to_rfc3339().parse().unwrap());
    assert_status(send_create(link.fleet, &md).await, Code::Unauthenticated, "Public key not recognized");

    // The listed key works, and the server keeps serving strangers their refusal.
    let mut node = signed(link.fleet, signer).await;
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
        signed(link.fleet, alice.clone()).await.create_node(CREATE).await.unwrap().into_inner().node.unwrap().node_id;
    let b = signed(link.fleet, bob).await.create_node(CREATE).await.unwrap().into_inner().node.unwrap().node_id;

    let captured = alice.clone().call(Request::new(())).unwrap().metadata().clone();
    send_heartbeat(link.fleet, &captured, a).await.unwrap();
    send_heartbeat(link.fleet, &captured, a).await.unwrap();
    assert_status(send_heartbeat(link.fleet, &captured, b).await, Code::Unauthenticated, "Invalid node ID");
    assert_status(send_create(link.fleet, &captured).await, Code::Unauthenticated, "Public key already in use");

    // Alice's genuine signature from 400 s ago, replayed too late, for her own node.
    let old = (chrono::Utc::now() - chrono::Duration::seconds(400)).format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    let stale = sign_at(&alice_key, &old);
    assert_status(send_heartbeat(link.fleet, &stale, a).await, Code::Unauthenticated, "Invalid timestamp");
    assert_status(send_create(link.fleet, &stale).await, Code::Unauthenticated, "Invalid timestamp");
    // Her fresh requests still work.
    signed(link.fleet, alice).await.send_node_heartbeat(heartbeat(a)).await.unwrap();
}

/// Flower's metadata for `key` signing `timestamp`.
fn sign_at(key: &p384::ecdsa::SigningKey, timestamp: &str) -> MetadataMap {
    use ecdsa::signature::hazmat::PrehashSigner;
    use sha2::Digest;
    let signature: p384::ecdsa::Signature = key.sign_prehash(&sha2::Sha256::digest(timestamp.as_bytes())).unwrap();
    let mut md = MetadataMap::new();
    let pem = sepal_superlink::auth::public_key_pem(key.verifying_key());
    md.insert_bin("flwr-public-key-bin", tonic::metadata::BinaryMetadataValue::from_bytes(pem.as_bytes()));
    md.insert("flwr-timestamp", timestamp.parse().unwrap());
    md.insert_bin(
        "flwr-signature-bin",
        tonic::metadata::BinaryMetadataValue::from_bytes(signature.to_der().as_bytes()),
    );
    md
}

#[test]
fn allowlist_csv_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = openssh::encode(&random_key(), "ok");
    let csv = dir.path().join("keys.csv");
    std::fs::write(
        &csv,
        format!("{good}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"),
    )
    .unwrap();
    let err = Allowlist::from_csv_file(&csv).unwrap_err().to_string();
    assert!(err.contains("keys.csv, line 2") && err.contains("only ecdsa-sha2-nistp384"), "{err}");
    std::fs::write(&csv, format!("{good}\nnot a key\n")).unwrap();
    let err = Allowlist::from_csv_file(&csv).unwrap_err().to_string();
    assert!(err.contains("keys.csv, line 2") && err.contains("not an OpenSSH public key"), "{err}");
    std::fs::write(&csv, "\n").unwrap();
    assert!(Allowlist::from_csv_file(&csv).unwrap_err().to_string().contains("no public key listed"));
    let err = Allowlist::from_csv_file(&dir.path().join("missing.csv")).unwrap_err().to_string();
    assert!(err.starts_with("cannot read") && err.contains("missing.csv"), "{err}");
    // Several keys in one row, quoted cells.
    let (_, second) = openssh::encode(&random_key(), "two");
    std::fs::write(&csv, format!("{good},\"{second}\"\n")).unwrap();
    let list = Allowlist::from_csv_file(&csv).unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.contains(&parse_openssh_public_key(&good).unwrap()));
}
