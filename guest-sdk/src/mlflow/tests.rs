//! Request building and response parsing against a scripted fake server.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::*;

/// Answers requests from a script, and records them.
#[derive(Default)]
struct Fake {
    replies: RefCell<VecDeque<Result<Response, HttpError>>>,
    sent: RefCell<Vec<(String, String, Value)>>,
}

impl Fake {
    fn answering(replies: Vec<Result<Response, HttpError>>) -> Self {
        Fake { replies: RefCell::new(replies.into()), sent: RefCell::default() }
    }

    fn next(&self, method: &str, url: &str, body: Value) -> Result<Response, HttpError> {
        self.sent.borrow_mut().push((method.to_string(), url.to_string(), body));
        self.replies.borrow_mut().pop_front().expect("an unexpected request")
    }

    fn sent(&self) -> Vec<(String, String, Value)> {
        self.sent.borrow().clone()
    }
}

impl Transport for Fake {
    fn get(&self, url: &str) -> Result<Response, HttpError> {
        self.next("GET", url, Value::Null)
    }

    fn post(&self, url: &str, body: &Value) -> Result<Response, HttpError> {
        self.next("POST", url, body.clone())
    }
}

fn ok(json: Value) -> Result<Response, HttpError> {
    Ok(Response { status: 200, body: json.to_string().into_bytes() })
}

fn status(status: u16, json: Value) -> Result<Response, HttpError> {
    Ok(Response { status, body: json.to_string().into_bytes() })
}

const BASE: &str = "http://127.0.0.1:5000/api/2.0/mlflow";

#[test]
fn start_reuses_an_existing_experiment() {
    let fake = Fake::answering(vec![
        ok(json!({ "experiment": { "experiment_id": "7", "name": "clinic" } })),
        ok(json!({ "run": { "info": { "run_id": "abc" } } })),
    ]);
    let run = MlflowRun::start_with(&fake, "http://127.0.0.1:5000/", "clinic trial", "r1").unwrap();
    assert_eq!(run.run_id(), "abc");
    let sent = fake.sent();
    assert_eq!(sent[0].1, format!("{BASE}/experiments/get-by-name?experiment_name=clinic%20trial"));
    assert_eq!((sent[1].0.as_str(), sent[1].1.clone()), ("POST", format!("{BASE}/runs/create")));
    assert_eq!(sent[1].2["experiment_id"], "7");
    assert_eq!(sent[1].2["run_name"], "r1");
    assert!(sent[1].2["start_time"].as_u64().unwrap() > 1_600_000_000_000, "milliseconds since the epoch");
}

#[test]
fn start_creates_a_missing_experiment_and_takes_one_created_meanwhile() {
    let missing = json!({ "error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment" });
    let fake = Fake::answering(vec![
        status(404, missing.clone()),
        ok(json!({ "experiment_id": "3" })),
        ok(json!({ "run": { "info": { "run_id": "r" } } })),
    ]);
    MlflowRun::start_with(&fake, "http://127.0.0.1:5000", "clinic", "r1").unwrap();
    let sent = fake.sent();
    assert_eq!(
        (sent[1].1.clone(), sent[1].2.clone()),
        (format!("{BASE}/experiments/create"), json!({"name": "clinic"}))
    );
    assert_eq!(sent[2].2["experiment_id"], "3");

    let exists = json!({ "error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists" });
    let fake = Fake::answering(vec![
        status(404, missing),
        status(400, exists),
        ok(json!({ "experiment": { "experiment_id": "4" } })),
        ok(json!({ "run": { "info": { "run_id": "r" } } })),
    ]);
    MlflowRun::start_with(&fake, "http://127.0.0.1:5000", "clinic", "r1").unwrap();
    assert_eq!(fake.sent()[3].2["experiment_id"], "4");
}

#[test]
fn metrics_go_in_batches_with_the_step_and_finish_marks_the_run() {
    let mut run = MlflowRun { tracking_url: "http://127.0.0.1:5000".into(), run_id: "abc".into() };
    let fake = Fake::answering(vec![ok(json!({})), ok(json!({})), ok(json!({})), ok(json!({ "run_info": {} }))]);
    run.log_metrics_with(&fake, 3, &[("loss", 0.25), ("accuracy", 0.875)]).unwrap();
    let many: Vec<(String, f64)> = (0..1500).map(|i| (format!("m{i}"), i as f64)).collect();
    let many: Vec<(&str, f64)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    run.log_metrics_with(&fake, 4, &many).unwrap();
    run.finish_with(&fake).unwrap();

    let sent = fake.sent();
    assert_eq!(sent[0].1, format!("{BASE}/runs/log-batch"));
    assert_eq!(sent[0].2["run_id"], "abc");
    let metrics = sent[0].2["metrics"].as_array().unwrap();
    assert_eq!(
        (metrics[0]["key"].clone(), metrics[0]["value"].clone(), metrics[0]["step"].clone()),
        (json!("loss"), json!(0.25), json!(3))
    );
    assert!(metrics[1]["timestamp"].as_u64().is_some());
    assert_eq!(
        (sent[1].2["metrics"].as_array().unwrap().len(), sent[2].2["metrics"].as_array().unwrap().len()),
        (1000, 500)
    );
    assert_eq!(sent[3].1, format!("{BASE}/runs/update"));
    assert_eq!((sent[3].2["status"].clone(), sent[3].2["run_id"].clone()), (json!("FINISHED"), json!("abc")));
}

#[test]
fn errors_name_the_url_the_status_and_mlflows_message() {
    let fake = Fake::answering(vec![status(
        400,
        json!({ "error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid value for metric" }),
    )]);
    let mut run = MlflowRun { tracking_url: "http://127.0.0.1:5000".into(), run_id: "abc".into() };
    let error = run.log_metrics_with(&fake, 1, &[("loss", 1.0)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("MLflow at {BASE}/runs/log-batch answered HTTP 400: INVALID_PARAMETER_VALUE: Invalid value for metric")
    );

    let fake = Fake::answering(vec![Ok(Response { status: 502, body: b"Bad Gateway".to_vec() })]);
    let error = MlflowRun::start_with(&fake, "http://127.0.0.1:5000", "e", "r").unwrap_err();
    assert!(error.to_string().ends_with("answered HTTP 502: : Bad Gateway"), "{error}");

    let fake = Fake::answering(vec![ok(json!({ "experiment": {} }))]);
    let error = MlflowRun::start_with(&fake, "http://127.0.0.1:5000", "e", "r").unwrap_err();
    assert!(matches!(error, MlflowError::BadResponse { .. }), "{error}");
}

#[test]
fn a_refused_origin_says_so() {
    let denied = HttpError::Denied { origin: "http://127.0.0.1:5000".into() };
    let fake = Fake::answering(vec![Err(denied)]);
    let error = MlflowRun::start_with(&fake, "http://127.0.0.1:5000", "clinic", "r").unwrap_err();
    let text = error.to_string();
    assert!(text.contains("connection refused by the sandbox: origin http://127.0.0.1:5000 not granted"), "{text}");
    assert!(text.contains("experiments/get-by-name"), "{text}");
}

#[test]
fn natively_there_is_no_transport() {
    let error = MlflowRun::start("http://127.0.0.1:5000", "clinic", "r").unwrap_err();
    assert!(matches!(error, MlflowError::Request { error: HttpError::Unsupported, .. }), "{error}");
}
