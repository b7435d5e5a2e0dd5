//! TLS on Fleet and Exec: an in-process SuperLink with a throwaway CA and server
//! certificate (made here with rcgen; SAN `IP:127.0.0.1` and `DNS:localhost`), a SuperNode
//! registering over TLS, a plaintext client refused, an Exec client over TLS, and
//! ServerAppIo staying plaintext.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sepal_proto::pb;
use sepal_proto::pb::exec_client::ExecClient;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_proto::pb::server_app_io_client::ServerAppIoClient;
use sepal_superlink::state::memory::MemoryState;
use sepal_superlink::{Isolation as LinkIsolation, Listeners, TlsFiles};
use sepal_supernode::retry::RetryPolicy;
use sepal_supernode::{ClientTls, Config, Isolation};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// A CA and a server certificate it signed, written as PEM files into `dir`.
struct Certs {
    ca_pem: Vec<u8>,
    files: TlsFiles,
}

fn ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "Sepal test CA");
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

fn make_certs(dir: &Path) -> Certs {
    let ca = ca();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "sepal-superlink");
    let cert = params.signed_by(&key, &ca).unwrap();
    let write = |name: &str, text: String| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = TlsFiles {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
    };
    Certs { ca_pem: ca.pem().into_bytes(), files }
}

struct Link {
    sio: SocketAddr,
    fleet: SocketAddr,
    exec: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), sepal_superlink::ServeError>>,
}

async fn start_link(tls: TlsFiles) -> Link {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind(any, any, any).await.unwrap();
    let (sio, fleet, exec) = (
        listeners.serverappio.local_addr().unwrap(),
        listeners.fleet.local_addr().unwrap(),
        listeners.exec.local_addr().unwrap(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = sepal_superlink::Config { tls: Some(tls), ..sepal_superlink::Config::new(LinkIsolation::Process) };
    let task = tokio::spawn(sepal_superlink::serve(config, listeners, Arc::new(MemoryState::new()), async {
        let _ = rx.await;
    }));
    Link { sio, fleet, exec, stop: Some(tx), task }
}

async fn start_node(fleet: SocketAddr, tls: ClientTls) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        superlink: fleet.to_string(),
        tls,
        node_config: Default::default(),
        clientappio: listener.local_addr().unwrap(),
        isolation: Isolation::Process,
        clientapp_bin: "unused".into(),
        flwr_dir: None,
        retry: RetryPolicy::default(),
        clientapp_timeout: None,
        wasm_limits: sepal_sandbox::Limits::default(),
        wasm_grants: sepal_sandbox::Grants::none(),
    };
    tokio::spawn(sepal_supernode::serve(config, listener, std::future::pending()));
}

async fn exec_client(address: &str, tls: &ClientTls) -> Result<ExecClient<Channel>, tonic::transport::Error> {
    let channel = tls.endpoint(address)?.connect_timeout(Duration::from_secs(5)).connect().await?;
    Ok(ExecClient::new(channel))
}

fn fab() -> pb::Fab {
    let dir = tempfile::tempdir().unwrap();
    let manifest = "[project]\nname = \"probe\"\nversion = \"1.0.0\"\n\n[tool.flwr.app]\npublisher = \"sepal\"\n\n\
                    [tool.flwr.app.components]\nserverapp = \"probe.server:app\"\nclientapp = \"probe.client:app\"\n";
    std::fs::write(dir.path().join("pyproject.toml"), manifest).unwrap();
    let (content, hash_str, _) = sepal_fab::build_fab(dir.path()).unwrap();
    pb::Fab { hash_str, content }
}

async fn wait_for_nodes(sio: &mut ServerAppIoClient<Channel>, run_id: u64, n: usize) -> Vec<u64> {
    for _ in 0..200 {
        let nodes = sio.get_nodes(pb::GetNodesRequest { run_id }).await.unwrap().into_inner().nodes;
        if nodes.len() >= n {
            return nodes.into_iter().map(|n| n.node_id).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} nodes never came online over TLS");
}

#[tokio::test]
async fn fleet_and_exec_over_tls_serverappio_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let link = start_link(certs.files.clone()).await;
    let tls = ClientTls::Ca(certs.ca_pem.clone());

    // Exec over TLS, verified by IP SAN; start a run to have nodes listed for.
    let mut exec = exec_client(&link.exec.to_string(), &tls).await.unwrap();
    let req = pb::StartRunRequest { fab: Some(fab()), ..Default::default() };
    let run_id = exec.start_run(req).await.unwrap().into_inner().run_id.unwrap();
    let runs = exec.list_runs(pb::ListRunsRequest::default()).await.unwrap().into_inner().run_dict;
    assert!(runs.contains_key(&run_id), "{runs:?}");
    // ... and by DNS SAN.
    let mut by_name = exec_client(&format!("localhost:{}", link.exec.port()), &tls).await.unwrap();
    by_name.list_runs(pb::ListRunsRequest::default()).await.unwrap();

    // ServerAppIo stays plaintext.
    let sio_channel = Channel::from_shared(format!("http://{}", link.sio)).unwrap().connect().await.unwrap();
    let mut sio = ServerAppIoClient::new(sio_channel);
    sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await.unwrap();
    let running = pb::RunStatus { status: "running".into(), ..Default::default() };
    sio.update_run_status(pb::UpdateRunStatusRequest { run_id, run_status: Some(running) }).await.unwrap();

    // A SuperNode registers over TLS.
    start_node(link.fleet, tls.clone()).await;
    assert_eq!(wait_for_nodes(&mut sio, run_id, 1).await.len(), 1);

    // A plaintext Fleet client is refused.
    let plain = Channel::from_shared(format!("http://{}", link.fleet)).unwrap().connect_timeout(Duration::from_secs(5));
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(channel) => {
            let req = pb::CreateNodeRequest { heartbeat_interval: 30.0 };
            let res = tokio::time::timeout(Duration::from_secs(10), FleetClient::new(channel).create_node(req)).await;
            match res {
                Ok(Err(status)) => {
                    eprintln!("plaintext Fleet call refused: {status:?}");
                    true
                }
                Ok(Ok(_)) => false,
                Err(_) => panic!("a plaintext call to the TLS Fleet API hung"),
            }
        }
    };
    assert!(refused, "a plaintext client reached the TLS Fleet API");
    // So is an Exec client that does not trust the server's CA.
    let stranger = ClientTls::Ca(ca().pem().into_bytes());
    let err = match exec_client(&link.exec.to_string(), &stranger).await {
        Err(e) => format!("{e:?}"),
        Ok(mut client) => format!("{:?}", client.list_runs(pb::ListRunsRequest::default()).await.unwrap_err()),
    };
    assert!(err.contains("certificate") || err.contains("Certificate"), "{err}");

    // The server still serves TLS nodes afterwards.
    start_node(link.fleet, tls.clone()).await;
    assert_eq!(wait_for_nodes(&mut sio, run_id, 2).await.len(), 2);
    exec.list_runs(pb::ListRunsRequest::default()).await.unwrap();

    let _ = link.stop.unwrap().send(());
    link.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let missing = TlsFiles { key: dir.path().join("nope.key"), ..certs.files.clone() };
    let e = missing.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-keyfile") && e.contains("nope.key"), "{e}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let e = TlsFiles { cert: garbage.clone(), ..certs.files.clone() }.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-certfile") && e.contains("garbage.pem") && e.contains("no PEM certificate"), "{e}");
    let e = TlsFiles { key: garbage.clone(), ..certs.files.clone() }.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-keyfile") && e.contains("no PEM private key"), "{e}");
    let e = TlsFiles { ca: garbage.clone(), ..certs.files.clone() }.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-ca-certfile"), "{e}");
    // serve() refuses to start with them.
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind(any, any, any).await.unwrap();
    let config = sepal_superlink::Config {
        tls: Some(TlsFiles { key: garbage, ..certs.files.clone() }),
        ..sepal_superlink::Config::new(LinkIsolation::Process)
    };
    let res = sepal_superlink::serve(config, listeners, Arc::new(MemoryState::new()), std::future::pending()).await;
    assert!(matches!(res, Err(sepal_superlink::ServeError::Tls(_))));
    // The SuperNode side checks its CA file too.
    let e = ClientTls::ca_file("--root-certificates", &dir.path().join("garbage.pem")).unwrap_err().to_string();
    assert!(e.contains("--root-certificates") && e.contains("garbage.pem"), "{e}");
    assert!(ClientTls::ca_file("--root-certificates", &certs.files.ca).is_ok());
}
