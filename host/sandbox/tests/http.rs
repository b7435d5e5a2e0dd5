//! Outgoing HTTP (`wasi:http`) from a guest: only to granted origins, within the limits.
//! The `http` test guest makes its requests through `sepal_sdk::http` and replies with
//! what it got, as the app would see it.

mod support;

use std::time::{Duration, Instant};

use sepal_sandbox::{ClientComponent, Grants, HttpLimits, Limits, LogSource};
use support::http_server::HttpServer;

fn guest() -> ClientComponent {
    support::sandbox().load_client(&support::guest("http")).expect("load the http guest")
}

/// Runs one command; returns the guest's reply and the sandbox's notices.
async fn call(command: &str, limits: &Limits, grants: &Grants) -> (String, Vec<String>) {
    let log = support::log();
    let (reply, _) = support::sandbox()
        .client_runner()
        .handle(&guest(), command.as_bytes(), b"", limits, grants, log.clone())
        .await
        .expect("the guest replies");
    (String::from_utf8(reply).expect("UTF-8"), log.lines_from(LogSource::Sandbox))
}

fn granting(server: &HttpServer) -> Grants {
    Grants::none().allow_http(server.origin()).expect("a valid origin")
}

#[tokio::test]
async fn a_granted_origin_is_reachable_with_get_and_post() {
    let server = HttpServer::start();
    let grants = granting(&server);
    let limits = Limits::default();

    let (reply, notices) = call(&format!("get:{}/hello", server.origin()), &limits, &grants).await;
    assert_eq!(reply, "200 hello from the server");
    assert!(notices.is_empty(), "{notices:?}");
    let (reply, _) = call(&format!("post:{}/echo", server.origin()), &limits, &grants).await;
    assert_eq!(reply, r#"200 {"from":"guest"}"#);
    assert_eq!(server.requests(), ["GET /hello", "POST /echo application/json"]);
}

#[tokio::test]
async fn an_ungranted_origin_is_refused_before_anything_reaches_it() {
    let granted = HttpServer::start();
    let other = HttpServer::start();
    let url = format!("get:{}/hello", other.origin());

    for grants in [granting(&granted), Grants::none()] {
        let (reply, notices) = call(&url, &Limits::default(), &grants).await;
        assert_eq!(
            reply,
            format!(
                "error: connection refused by the sandbox: origin {0} not granted \
                 (the operator grants it with --wasm-allow-http {0})",
                other.origin()
            )
        );
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].contains(&format!("origin {} not granted", other.origin())), "{notices:?}");
        assert!(notices[0].contains("--wasm-allow-http"), "{notices:?}");
    }
    assert_eq!((other.connections(), granted.connections()), (0, 0), "nothing was even connected to");
}

#[tokio::test]
async fn a_response_past_the_body_cap_fails_and_a_small_one_beside_it_passes() {
    let server = HttpServer::start();
    let limits = Limits { http: HttpLimits { response_bytes: 1000, ..HttpLimits::default() }, ..Limits::default() };
    let grants = granting(&server);

    // Announced by content-length, or found out while reading.
    for path in ["big", "stream"] {
        let (reply, notices) = call(&format!("get-len:{}/{path}", server.origin()), &limits, &grants).await;
        assert_eq!(reply, "error: the response body passed the sandbox's limit of 1000 bytes", "{path}");
        assert!(notices.iter().any(|n| n.contains("--wasm-http-max-response-kib")), "{path}: {notices:?}");
    }
    let (reply, _) = call(&format!("get:{}/hello", server.origin()), &limits, &grants).await;
    assert_eq!(reply, "200 hello from the server");
    let (reply, _) = call(&format!("get-len:{}/big", server.origin()), &Limits::default(), &grants).await;
    assert_eq!(reply, "200 65536", "the default cap lets 64 KiB through");
}

#[tokio::test]
async fn a_stalled_server_times_out_while_a_good_request_beside_it_completes() {
    let server = HttpServer::start();
    let limits = Limits {
        http: HttpLimits { first_byte_timeout: Duration::from_millis(300), ..HttpLimits::default() },
        ..Limits::default()
    };
    let grants = granting(&server);
    let started = Instant::now();
    let stalled = format!("get:{}/stall", server.origin());
    let good = format!("get:{}/hello", server.origin());
    let ((stalled, _), (good, _)) = tokio::join!(call(&stalled, &limits, &grants), call(&good, &limits, &grants));
    assert!(stalled.starts_with("error: request to ") && stalled.contains("Timeout"), "{stalled}");
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout held: {:?}", started.elapsed());
    assert_eq!(good, "200 hello from the server");
}
