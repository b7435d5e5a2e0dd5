//! TLS on Fleet and Exec: an in-process SuperLink with a throwaway CA and server
//! certificate (SAN `IP:127.0.0.1` and `DNS:localhost`), a SuperNode registering over TLS,
//! a plaintext client refused, an Exec client over TLS, and ServerAppIo staying plaintext.

use std::time::Duration;

use sepal_proto::pb;
use sepal_proto::pb::exec_client::ExecClient;
use sepal_proto::pb::fleet_client::FleetClient;
use sepal_proto::pb::server_app_io_client::ServerAppIoClient;
use sepal_superlink::{Config as LinkConfig, Isolation as LinkIsolation, ServeError};
use sepal_supernode::Config;
use sepal_tests::kit::{self, make_certs, stranger_ca_pem, PyProject, TestLink, TestNode};
use sepal_wire::{ClientTls, ServerTls};
use tonic::transport::Channel;

async fn start_link(tls: ServerTls) -> TestLink {
    TestLink::with(LinkConfig { tls: Some(tls), ..LinkConfig::new(LinkIsolation::Process) }).await
}

async fn start_node(link: &TestLink, tls: ClientTls) -> TestNode {
    TestNode::start(Config { tls, ..TestNode::config(link) }).await
}

async fn exec_client(address: &str, tls: &ClientTls) -> Result<ExecClient<Channel>, tonic::transport::Error> {
    let channel = tls.endpoint(address)?.connect_timeout(Duration::from_secs(5)).connect().await?;
    Ok(ExecClient::new(channel))
}

fn fab() -> pb::Fab {
    kit::fab(&PyProject::new("probe"))
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
    let mut sio: ServerAppIoClient<Channel> = link.serverappio_client().await;
    sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await.unwrap();
    let running = pb::RunStatus { status: "running".into(), ..Default::default() };
    sio.update_run_status(pb::UpdateRunStatusRequest { run_id, run_status: Some(running) }).await.unwrap();

    // A SuperNode registers over TLS.
    let _first = start_node(&link, tls.clone()).await;
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
    let stranger = ClientTls::Ca(stranger_ca_pem());
    let err = match exec_client(&link.exec.to_string(), &stranger).await {
        Err(e) => format!("{e:?}"),
        Ok(mut client) => format!("{:?}", client.list_runs(pb::ListRunsRequest::default()).await.unwrap_err()),
    };
    assert!(err.contains("certificate") || err.contains("Certificate"), "{err}");

    // The server still serves TLS nodes afterwards.
    let _second = start_node(&link, tls.clone()).await;
    assert_eq!(wait_for_nodes(&mut sio, run_id, 2).await.len(), 2);
    exec.list_runs(pb::ListRunsRequest::default()).await.unwrap();

    link.stop().await.unwrap();
}

#[tokio::test]
async fn bad_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let missing = ServerTls { key: dir.path().join("nope.key"), ..certs.files.clone() };
    let e = missing.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-keyfile") && e.contains("nope.key"), "{e}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let e = ServerTls { cert: garbage.clone(), ..certs.files.clone() }.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-certfile") && e.contains("garbage.pem") && e.contains("no PEM certificate"), "{e}");
    let e = ServerTls { key: garbage.clone(), ..certs.files.clone() }.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-keyfile") && e.contains("no PEM private key"), "{e}");
    let e = ServerTls { ca: garbage.clone(), ..certs.files.clone() }.load().unwrap_err().to_string();
    assert!(e.contains("--ssl-ca-certfile"), "{e}");
    // serve() refuses to start with them.
    let res = start_link(ServerTls { key: garbage, ..certs.files.clone() }).await.stop().await;
    assert!(matches!(res, Err(ServeError::Tls(_))), "{res:?}");
    // The SuperNode side checks its CA file too.
    let e = ClientTls::ca_file("--root-certificates", &dir.path().join("garbage.pem")).unwrap_err().to_string();
    assert!(e.contains("--root-certificates") && e.contains("garbage.pem"), "{e}");
    assert!(ClientTls::ca_file("--root-certificates", &certs.files.ca).is_ok());
}
