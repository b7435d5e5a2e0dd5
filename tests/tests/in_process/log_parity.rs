//! A Wasm app behaves and logs the same in both isolation modes: the same ServerApp run in
//! the SuperLink (subprocess isolation) and in `sepal serverapp` (process isolation) leaves
//! the same lines in the run's log, which is what `flwr log` shows: the app's `log` calls
//! with their level, its stdout and stderr, the sandbox's truncation notices, and the
//! host's line for a failed run. One difference is by design: what reaches the SuperLink
//! over ServerAppIo is app text, so `sepal serverapp`'s sandbox notices arrive disarmed
//! (`APP     : SANDBOX : ...`).
//!
//! Whatever a ServerApp process uploads is stored neutralised, and the SuperLink writes
//! the line saying why a run failed.

use std::time::Duration;

use sepal_appio::{clientapp, serverapp};
use sepal_executor::Settings;
use sepal_proto::pb;
use sepal_sandbox::Limits;
use sepal_superlink::{Config as LinkConfig, Isolation as LinkIsolation};
use sepal_supernode::{Config as NodeConfig, Isolation as NodeIsolation};
use sepal_tests::kit::{self, TestLink, TestNode};
use sepal_tests::wasm_apps::NO_PYTHON;

const WAIT: Duration = Duration::from_secs(120);

/// The operator's settings in both modes: output cut at 2 KiB, so the sandbox's notice shows.
fn settings() -> Settings {
    let limits = Limits { stdout_bytes: 2048, stderr_bytes: 2048, ..Limits::default() };
    Settings { limits, ..Settings::default() }
}

/// The hostile app's ServerApp with run config `attack = <attack>`.
fn run_config(attack: &str) -> std::collections::HashMap<String, pb::Scalar> {
    let value = pb::Scalar { scalar: Some(pb::scalar::Scalar::String(attack.into())) };
    [("attack".to_string(), value)].into()
}

/// Runs the attack to its end with the app in-process; the log and the final status.
async fn in_process(attack: &str) -> (String, pb::RunStatus) {
    let wasm = settings();
    let config = LinkConfig {
        wasm: wasm.clone(),
        serverapp_bin: NO_PYTHON.into(),
        ..LinkConfig::new(LinkIsolation::Subprocess)
    };
    let link = TestLink::with(config).await;
    let node_config = NodeConfig { isolation: NodeIsolation::Subprocess, wasm, ..TestNode::config(&link) };
    let _node = TestNode::start(node_config).await;
    run(&link, attack).await
}

/// Runs the attack to its end with the app in `sepal serverapp` / `sepal clientapp`.
async fn external(attack: &str) -> (String, pb::RunStatus) {
    let link = TestLink::start().await;
    let node = TestNode::start(TestNode::config(&link)).await;
    let server = serverapp::Options { wasm: settings(), ..Default::default() };
    let address = link.serverappio.to_string();
    let serverapp = tokio::spawn(async move { serverapp::run(&address, server, std::future::pending()).await });
    let address = node.clientappio.to_string();
    let client = clientapp::Options { wasm: settings(), ..Default::default() };
    let clientapp = tokio::spawn(async move { clientapp::run(&address, client, std::future::pending()).await });
    let outcome = run(&link, attack).await;
    serverapp.abort();
    clientapp.abort();
    outcome
}

async fn run(link: &TestLink, attack: &str) -> (String, pb::RunStatus) {
    let fab = kit::fab_from_dir(&sepal_guests::app_dir("hostile"));
    let req = pb::StartRunRequest { fab: Some(fab), override_config: run_config(attack), ..Default::default() };
    let run_id = link.exec_client().await.start_run(req).await.expect("StartRun").into_inner().run_id.unwrap();
    let status = link.wait_for_status(run_id, "finished", WAIT).await;
    (link.run_log(run_id, WAIT).await, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_app_logs_the_same_lines_in_both_isolation_modes() {
    for attack in ["flood:100", "panic"] {
        let (inside, inside_status) = in_process(attack).await;
        let (outside, outside_status) = external(attack).await;
        assert_eq!(inside_status.sub_status, outside_status.sub_status, "{attack}");
        assert_eq!(inside_status.details, outside_status.details, "{attack}");
        // Over ServerAppIo the sandbox's notices are app text: disarmed, otherwise the same.
        let relayed: Vec<&str> = outside
            .lines()
            .map(|l| l.strip_prefix("APP     : ").filter(|rest| rest.starts_with("SANDBOX : ")).unwrap_or(l))
            .collect();
        assert_eq!(inside.lines().collect::<Vec<_>>(), relayed, "{attack}");
        // What the log holds, so the comparison is not between two empty logs.
        assert!(inside.contains(&format!("INFO    : hostile ServerApp: attack {attack}")), "{inside}");
        if attack == "panic" {
            assert_eq!(inside_status.sub_status, "failed");
            let failed: Vec<&str> = inside.lines().filter(|l| l.starts_with("SEPAL   : ")).collect();
            assert_eq!(failed.len(), 1, "{inside}");
            assert!(failed[0].starts_with("SEPAL   : ServerApp failed: "), "{inside}");
            assert!(failed[0].contains("hostile server panic"), "{inside}");
        } else {
            assert_eq!(inside_status.sub_status, "completed", "{inside_status:?}");
            assert!(inside.contains("flood line 0 on stdout"), "{inside}");
            assert!(inside.lines().any(|l| l.starts_with("SANDBOX : ")), "the truncation notice: {inside}");
            assert!(outside.lines().any(|l| l.starts_with("APP     : SANDBOX : ")), "relayed, disarmed: {outside}");
            assert!(!outside.lines().any(|l| l.starts_with("SANDBOX : ")), "{outside}");
            assert!(inside.contains("INFO    : SERVER flood: flooded 100 lines"), "{inside}");
        }
    }
}

/// What a ServerApp process (Python's `flwr-serverapp`, or anyone on ServerAppIo) uploads
/// with PushLogs is app text: split into lines, escapes made visible, Flower's colours
/// dropped, host-looking lines disarmed; the line saying that the run failed is the
/// SuperLink's own, on one line whatever the details hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_logs_are_neutralised_and_the_failure_line_is_the_superlinks() {
    let link = TestLink::start().await;
    let run_id = link.start_run(kit::fab_from_dir(&sepal_guests::app_dir("hostile"))).await;
    let mut sio = link.serverappio_client().await;
    let inputs = sio.pull_app_inputs(pb::PullAppInputsRequest::default()).await.unwrap().into_inner();
    assert_eq!(inputs.run.map(|r| r.run_id), Some(run_id));
    let status = |status: &str, sub_status: &str, details: &str| pb::RunStatus {
        status: status.into(),
        sub_status: sub_status.into(),
        details: details.into(),
    };
    let running = pb::UpdateRunStatusRequest { run_id, run_status: Some(status("running", "", "")) };
    sio.update_run_status(running).await.unwrap();
    // As Flower's log uploader sends them: write() fragments, Flower's colours included.
    let logs = [
        "\u{1b}[92mINFO \u{1b}[0m:      Starting round 1\n",
        "SEPAL   : ServerApp failed: fake\nSANDBOX : fake notice\n",
        "clear\u{1b}[2Jthe screen\r\n",
        "half a line",
    ];
    let req = pb::PushLogsRequest { node: None, run_id, logs: logs.iter().map(|s| s.to_string()).collect() };
    sio.push_logs(req).await.unwrap();
    let failed = status("finished", "failed", "ServerApp raised\nSEPAL   : run completed");
    sio.update_run_status(pb::UpdateRunStatusRequest { run_id, run_status: Some(failed) }).await.unwrap();

    let log = link.run_log(run_id, WAIT).await;
    assert_eq!(
        log,
        "INFO :      Starting round 1\n\
         APP     : SEPAL   : ServerApp failed: fake\n\
         APP     : SANDBOX : fake notice\n\
         clear\\u{1b}[2Jthe screen\n\
         half a line\n\
         SEPAL   : ServerApp failed: ServerApp raised\\nSEPAL   : run completed\n"
    );
}
