//! A small HTTP client for apps, over the host's `wasi:http` (wasm32 only).
//!
//! The sandbox gives an app no network: the operator grants HTTP per origin
//! (`sepal superlink --wasm-allow-http http://mlflow.internal:5000`, and the same flag on
//! `sepal supernode`, `sepal serverapp`, `sepal clientapp`). A request to any other origin
//! fails with [`HttpError::Denied`], whose message says which origin was refused; the
//! host's log says so too. Requests are blocking and bounded by the host (connect and
//! read timeouts, a response-body cap, requests in flight; see docs/sandbox.md).
//!
//! ```no_run
//! use sepal_sdk::http;
//!
//! # fn main() -> Result<(), sepal_sdk::http::HttpError> {
//! let health = http::get("http://127.0.0.1:5000/health")?;
//! println!("{} {}", health.status, health.text());
//! let created = http::post_json(
//!     "http://127.0.0.1:5000/api/2.0/mlflow/experiments/create",
//!     &serde_json::json!({ "name": "clinic" }),
//! )?;
//! if !created.is_success() {
//!     println!("refused: {}", created.text());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Natively (in an app's `cargo test`) there is no host to send through: every request
//! fails with [`HttpError::Unsupported`]. Test the code around HTTP with your own fake
//! responses.

mod url;
#[cfg(target_arch = "wasm32")]
mod wasi;

pub(crate) use url::encode_query_value;
pub use url::Url;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
}

/// A response: its status and its whole body (the host caps the body's size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, as received.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Json(e.to_string()))
    }
}

/// Why a request got no response. An HTTP error status is not an error here: it is a
/// [`Response`] (check [`Response::is_success`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port][/path][?query]`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The sandbox refused the request: the operator did not grant its origin.
    #[error(
        "connection refused by the sandbox: origin {origin} not granted \
         (the operator grants it with --wasm-allow-http {origin})"
    )]
    Denied {
        /// The refused origin, `scheme://host[:port]`.
        origin: String,
    },
    /// The response body passed the host's size limit.
    #[error("the response body passed the sandbox's limit{}", limit.map(|n| format!(" of {n} bytes")).unwrap_or_default())]
    BodyTooLarge {
        /// The limit, when the host says.
        limit: Option<u64>,
    },
    /// The request failed on the way (connection refused, timeout, protocol error, …); the
    /// text is `wasi:http`'s error code.
    #[error("request to {url} failed: {reason}")]
    Failed {
        /// The URL requested.
        url: String,
        /// What `wasi:http` reported.
        reason: String,
    },
    /// A body could not be serialized or parsed as JSON.
    #[error("JSON: {0}")]
    Json(String),
    /// Not running in the Wasm sandbox (a native build): there is no transport.
    #[error("HTTP is only available to a Wasm app in the Sepal sandbox (this is a native build)")]
    Unsupported,
}

/// Sends `body` with `method` to `url` with these headers; returns the status and body.
pub fn request(method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, HttpError> {
    let parsed = Url::parse(url)?;
    send(method, &parsed, headers, body)
}

/// GET `url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    request(Method::Get, url, &[("accept", "application/json")], &[])
}

/// POST `body` serialized as JSON (`content-type: application/json`) to `url`.
pub fn post_json<T: serde::Serialize + ?Sized>(url: &str, body: &T) -> Result<Response, HttpError> {
    let bytes = serde_json::to_vec(body).map_err(|e| HttpError::Json(e.to_string()))?;
    let headers = [("content-type", "application/json"), ("accept", "application/json")];
    request(Method::Post, url, &headers, &bytes)
}

#[cfg(target_arch = "wasm32")]
fn send(method: Method, url: &Url, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, HttpError> {
    wasi::send(method, url, headers, body)
}

#[cfg(not(target_arch = "wasm32"))]
fn send(_method: Method, _url: &Url, _headers: &[(&str, &str)], _body: &[u8]) -> Result<Response, HttpError> {
    Err(HttpError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed() {
        let denied = HttpError::Denied { origin: "http://127.0.0.1:5000".into() };
        assert_eq!(
            denied.to_string(),
            "connection refused by the sandbox: origin http://127.0.0.1:5000 not granted \
             (the operator grants it with --wasm-allow-http http://127.0.0.1:5000)"
        );
        assert!(HttpError::BodyTooLarge { limit: Some(10) }.to_string().ends_with("limit of 10 bytes"));
    }

    #[test]
    fn natively_requests_fail_clearly_and_bad_urls_first() {
        assert_eq!(get("http://127.0.0.1:1/"), Err(HttpError::Unsupported));
        assert!(matches!(get("127.0.0.1:1"), Err(HttpError::InvalidUrl { .. })));
    }

    #[test]
    fn responses_parse_as_json() {
        let response = Response { status: 201, body: br#"{"a": 1}"#.to_vec() };
        assert!(response.is_success());
        assert_eq!(response.json::<serde_json::Value>().unwrap()["a"], 1);
        assert!(matches!(Response { status: 200, body: b"<html>".to_vec() }.json::<u8>(), Err(HttpError::Json(_))));
    }
}
