//! Logging metrics to an MLflow tracking server, over its REST API 2.0 and
//! [`crate::http`]. The operator must grant the server's origin
//! (`sepal superlink --wasm-allow-http http://127.0.0.1:5000`).
//!
//! ```no_run
//! use sepal_sdk::mlflow::MlflowRun;
//!
//! # fn main() -> Result<(), sepal_sdk::mlflow::MlflowError> {
//! let mut run = MlflowRun::start("http://127.0.0.1:5000", "clinic", "run-42")?;
//! for round in 1..=3 {
//!     run.log_metrics(round, &[("loss", 0.5 / round as f64), ("accuracy", 0.8)])?;
//! }
//! run.finish()?;
//! # Ok(())
//! # }
//! ```

use serde_json::{json, Value};

use crate::http::{self, encode_query_value, HttpError, Response};

/// The most metrics MLflow takes in one `runs/log-batch`.
const BATCH: usize = 1000;

/// Why an MLflow call failed; the message names the URL and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlflowError {
    /// No answer from the server: the request was refused by the sandbox (the origin is
    /// not granted), could not connect, timed out, …
    #[error("MLflow request to {url} failed: {error}")]
    Request {
        /// The URL requested.
        url: String,
        /// What went wrong.
        error: HttpError,
    },
    /// The server answered with an error status.
    #[error("MLflow at {url} answered HTTP {status}: {error_code}: {message}")]
    Api {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), empty if it sent none.
        error_code: String,
        /// MLflow's `message` (or the start of the body if it was not MLflow's JSON).
        message: String,
    },
    /// The server answered 2xx, but not with what the API promises.
    #[error("MLflow at {url} sent an unexpected response: {reason}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What was missing or malformed.
        reason: String,
    },
}

/// An MLflow run being logged to: created by [`MlflowRun::start`], ended by
/// [`MlflowRun::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowRun {
    tracking_url: String,
    run_id: String,
}

impl MlflowRun {
    /// Reuses experiment `experiment` (creating it if missing) and creates a run in it.
    pub fn start(tracking_url: &str, experiment: &str, run_name: &str) -> Result<MlflowRun, MlflowError> {
        MlflowRun::start_with(&Wasi, tracking_url, experiment, run_name)
    }

    /// Logs each (key, value) with this step (step = round number).
    pub fn log_metrics(&mut self, step: u64, metrics: &[(&str, f64)]) -> Result<(), MlflowError> {
        self.log_metrics_with(&Wasi, step, metrics)
    }

    /// Marks the run FINISHED.
    pub fn finish(self) -> Result<(), MlflowError> {
        self.finish_with(&Wasi)
    }

    /// The MLflow run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The tracking server's URL, as given to [`MlflowRun::start`].
    pub fn tracking_url(&self) -> &str {
        &self.tracking_url
    }

    fn start_with(
        t: &dyn Transport,
        tracking_url: &str,
        experiment: &str,
        run_name: &str,
    ) -> Result<Self, MlflowError> {
        let api = Api { base: tracking_url.trim_end_matches('/') };
        let experiment_id = experiment_id(t, &api, experiment)?;
        let body = json!({ "experiment_id": experiment_id, "run_name": run_name, "start_time": now_ms() });
        let (url, reply) = api.post(t, "runs/create", &body)?;
        let run_id = reply["run"]["info"]["run_id"].as_str().ok_or_else(|| bad(&url, "no run.info.run_id"))?;
        Ok(MlflowRun { tracking_url: tracking_url.to_string(), run_id: run_id.to_string() })
    }

    fn log_metrics_with(&mut self, t: &dyn Transport, step: u64, metrics: &[(&str, f64)]) -> Result<(), MlflowError> {
        let timestamp = now_ms();
        for chunk in metrics.chunks(BATCH) {
            let metrics: Vec<Value> = chunk
                .iter()
                .map(|(key, value)| json!({ "key": key, "value": value, "timestamp": timestamp, "step": step }))
                .collect();
            let body = json!({ "run_id": self.run_id, "metrics": metrics });
            self.api().post(t, "runs/log-batch", &body)?;
        }
        Ok(())
    }

    fn finish_with(self, t: &dyn Transport) -> Result<(), MlflowError> {
        let body = json!({ "run_id": self.run_id, "status": "FINISHED", "end_time": now_ms() });
        self.api().post(t, "runs/update", &body).map(drop)
    }

    fn api(&self) -> Api<'_> {
        Api { base: self.tracking_url.trim_end_matches('/') }
    }
}

/// The id of experiment `name`, created if it does not exist yet.
fn experiment_id(t: &dyn Transport, api: &Api<'_>, name: &str) -> Result<String, MlflowError> {
    let path = format!("experiments/get-by-name?experiment_name={}", encode_query_value(name));
    let found = match api.get(t, &path) {
        Ok((url, reply)) => Some(id_at(&reply["experiment"]["experiment_id"], &url)?),
        Err(MlflowError::Api { error_code, .. }) if error_code == "RESOURCE_DOES_NOT_EXIST" => None,
        Err(e) => return Err(e),
    };
    if let Some(id) = found {
        return Ok(id);
    }
    match api.post(t, "experiments/create", &json!({ "name": name })) {
        Ok((url, reply)) => id_at(&reply["experiment_id"], &url),
        // Someone else created it in the meantime: take theirs.
        Err(MlflowError::Api { error_code, .. }) if error_code == "RESOURCE_ALREADY_EXISTS" => {
            let (url, reply) = api.get(t, &path)?;
            id_at(&reply["experiment"]["experiment_id"], &url)
        }
        Err(e) => Err(e),
    }
}

fn id_at(value: &Value, url: &str) -> Result<String, MlflowError> {
    value.as_str().map(str::to_string).ok_or_else(|| bad(url, "no experiment_id"))
}

fn bad(url: &str, reason: &str) -> MlflowError {
    MlflowError::BadResponse { url: url.to_string(), reason: reason.to_string() }
}

/// The REST API under one tracking URL.
struct Api<'a> {
    base: &'a str,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/api/2.0/mlflow/{path}", self.base)
    }

    /// GETs `path`; returns the URL and the JSON reply.
    fn get(&self, t: &dyn Transport, path: &str) -> Result<(String, Value), MlflowError> {
        let url = self.url(path);
        let response = t.get(&url);
        parse(url, response)
    }

    /// POSTs `body` to `path`; returns the URL and the JSON reply.
    fn post(&self, t: &dyn Transport, path: &str, body: &Value) -> Result<(String, Value), MlflowError> {
        let url = self.url(path);
        let response = t.post(&url, body);
        parse(url, response)
    }
}

/// A 2xx JSON reply, or the error MLflow (or the way to it) reported.
fn parse(url: String, response: Result<Response, HttpError>) -> Result<(String, Value), MlflowError> {
    let response = match response {
        Ok(response) => response,
        Err(error) => return Err(MlflowError::Request { url, error }),
    };
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    if !response.is_success() {
        let field = |name: &str| json.as_ref().and_then(|j| j[name].as_str()).map(str::to_string);
        let message = field("message").unwrap_or_else(|| response.text().chars().take(300).collect());
        let error_code = field("error_code").unwrap_or_default();
        return Err(MlflowError::Api { url, status: response.status, error_code, message });
    }
    match json {
        Some(json) => Ok((url, json)),
        None => Err(bad(&url, "the body is not JSON")),
    }
}

fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// How requests go out: the host's HTTP, or a fake in the tests.
trait Transport {
    fn get(&self, url: &str) -> Result<Response, HttpError>;
    fn post(&self, url: &str, body: &Value) -> Result<Response, HttpError>;
}

/// [`crate::http`].
struct Wasi;

impl Transport for Wasi {
    fn get(&self, url: &str) -> Result<Response, HttpError> {
        http::get(url)
    }

    fn post(&self, url: &str, body: &Value) -> Result<Response, HttpError> {
        http::post_json(url, body)
    }
}

#[cfg(test)]
mod tests;
