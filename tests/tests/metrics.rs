//! `--metrics-address` on `sepal superlink` and `sepal supernode`: Prometheus metrics and
//! a health check over HTTP, scraped around a run of the Wasm quickstart the way
//! Prometheus and a load balancer would.

use std::net::SocketAddr;
use std::time::Duration;

use sepal_tests::scrape::{http_get, sample};
use sepal_tests::wasm_apps::{quickstart, SepalFederation};
use sepal_tests::{free_addr, poll};

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path).unwrap()
}

#[test]
fn metrics_move_with_a_run_and_health_answers() {
    let (metrics, node_metrics) = (free_addr(), free_addr());
    let (addr, node_addr) = (metrics.to_string(), node_metrics.to_string());
    // One SuperNode serves its metrics (both would need an address each).
    let fed = SepalFederation::start(1, &["--metrics-address", &addr], &["--metrics-address", &node_addr]).unwrap();
    sepal_tests::wait_for_port(metrics, Duration::from_secs(30)).unwrap();
    sepal_tests::wait_for_port(node_metrics, Duration::from_secs(30)).unwrap();

    let (status, body) = get(metrics, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    // The node registered (the federation waits for it) and nothing ran yet.
    let before = poll("the node online", Duration::from_secs(30), Duration::from_millis(200), || {
        let (_, text) = get(metrics, "/metrics");
        Ok((sample(&text, "sepal_nodes_online") == Some(1.0)).then_some(text))
    })
    .unwrap();
    assert_eq!(sample(&before, "sepal_runs{status=\"finished\"}"), Some(0.0), "{before}");
    let pushes = "sepal_grpc_calls_total{service=\"flwr.proto.Fleet\",method=\"PushMessages\",code=\"Ok\"}";
    let pushed_before = sample(&before, pushes).unwrap_or(0.0);

    let run_id = fed.submit(&quickstart(), "num-server-rounds=2 min-nodes=1").unwrap();
    let status = fed.wait_finished(run_id, Duration::from_secs(120)).unwrap();
    assert_eq!(status.status, "finished:completed");

    let (code, after) = get(metrics, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(sample(&after, "sepal_runs{status=\"finished\"}"), Some(1.0), "{after}");
    assert_eq!(sample(&after, "sepal_runs{status=\"running\"}"), Some(0.0), "{after}");
    // 2 rounds x (train + evaluate) replies at least.
    let pushed = sample(&after, pushes).unwrap_or(0.0) - pushed_before;
    assert!(pushed >= 4.0, "{pushed} replies pushed:\n{after}");
    assert!(after.contains("sepal_grpc_call_seconds_bucket{"), "{after}");
    assert_eq!(sample(&after, "sepal_messages_in_flight"), Some(0.0), "{after}");
    assert!(after.trim_end().ends_with("# EOF"), "not OpenMetrics text:\n{after}");
    assert_eq!(get(metrics, "/nope").0, 404);
    // The Wasm ServerApp ran once, to its end, in the sandbox; the state's calls were timed.
    let server_runs = "sepal_sandbox_invocations_total{side=\"serverapp\",outcome=\"ok\"}";
    assert_eq!(sample(&after, server_runs), Some(1.0), "{after}");
    let stores = sample(&after, "sepal_state_seconds_count{call=\"store_instruction\"}").unwrap_or(0.0);
    assert!(stores >= 4.0, "{stores} instructions stored:\n{after}");

    // The SuperNode counted the messages it answered, each as a reply.
    assert_eq!(get(node_metrics, "/healthz"), (200, "ok\n".to_string()));
    let (_, node) = get(node_metrics, "/metrics");
    let replied = sample(&node, "sepal_supernode_messages_total{outcome=\"replied\"}").unwrap_or(0.0);
    assert!(replied >= 4.0, "{replied} messages replied:\n{node}");
    assert_eq!(sample(&node, "sepal_supernode_messages_total{outcome=\"failed\"}"), None, "{node}");
    assert_eq!(sample(&node, "sepal_supernode_message_seconds_count"), Some(replied), "{node}");
    // Each message was a Wasm ClientApp invocation, brought by a pull.
    let invoked = "sepal_sandbox_invocations_total{side=\"clientapp\",outcome=\"ok\"}";
    assert_eq!(sample(&node, invoked), Some(replied), "{node}");
    let brought = sample(&node, "sepal_supernode_pull_seconds_count{result=\"message\"}").unwrap_or(0.0);
    assert_eq!(brought, replied, "{node}");
}

/// A Sepal SuperNode's held pulls count as its heartbeats at a Sepal SuperLink: once the
/// first pull has told it so, it sends no heartbeat while it keeps pulling (Flower's
/// schedule would send one every 18-22 s), and it stays online past the 60 s its last
/// heartbeat bought.
#[test]
fn held_pulls_stand_in_for_heartbeats() {
    let metrics = free_addr();
    let _fed = SepalFederation::start(1, &["--metrics-address", &metrics.to_string()], &[]).unwrap();
    sepal_tests::wait_for_port(metrics, Duration::from_secs(30)).unwrap();
    let fleet = |method: &str| {
        format!("sepal_grpc_calls_total{{service=\"flwr.proto.Fleet\",method=\"{method}\",code=\"Ok\"}}")
    };
    let count = |text: &str, method: &str| sample(text, &fleet(method)).unwrap_or(0.0);
    // The first held pull (20 s) has come back: from here on the node knows.
    poll("the first held pull", Duration::from_secs(60), Duration::from_millis(500), || {
        Ok((count(&get(metrics, "/metrics").1, "PullMessages") >= 1.0).then_some(()))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (_, before) = get(metrics, "/metrics");

    std::thread::sleep(Duration::from_secs(65));
    let (_, after) = get(metrics, "/metrics");
    assert_eq!(sample(&after, "sepal_nodes_online"), Some(1.0), "the node went offline:\n{after}");
    assert_eq!(count(&after, "SendNodeHeartbeat"), count(&before, "SendNodeHeartbeat"), "{after}");
    let pulls = count(&after, "PullMessages") - count(&before, "PullMessages");
    assert!(pulls >= 3.0, "{pulls} pulls in 65 s:\n{after}");
}
