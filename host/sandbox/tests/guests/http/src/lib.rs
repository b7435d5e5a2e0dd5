//! A ClientApp for the sandbox's HTTP tests, through `sepal_sdk::http`. The message bytes
//! are a command (UTF-8); the reply is the outcome as text:
//!
//! - `get:URL`: GET; replies `STATUS BODY`
//! - `post:URL`: POSTs `{"from": "guest"}` as JSON; replies `STATUS BODY`
//! - `get-len:URL`: GET; replies `STATUS LEN` (the body's length)
//!
//! A failed request replies `error: <the SDK's error>`, so the test sees what the app
//! would see.

wit_bindgen::generate!({
    path: "../../../../../guest-sdk/wit",
    world: "client",
});

use exports::sepal::app::client_app::{AppError, Guest};
use sepal_sdk::http;

struct HttpGuest;

impl Guest for HttpGuest {
    fn handle(message: Vec<u8>, _context: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        let command = String::from_utf8_lossy(&message).into_owned();
        let (verb, url) = command.split_once(':').unwrap_or((command.as_str(), ""));
        let reply = match verb {
            "get" => http::get(url).map(|r| format!("{} {}", r.status, r.text())),
            "post" => http::post_json(url, &serde_json::json!({ "from": "guest" }))
                .map(|r| format!("{} {}", r.status, r.text())),
            "get-len" => http::get(url).map(|r| format!("{} {}", r.status, r.body.len())),
            _ => return Err(AppError { code: 2, message: format!("unknown command {command:?}") }),
        };
        let text = reply.unwrap_or_else(|e| format!("error: {e}"));
        Ok((text.into_bytes(), Vec::new()))
    }
}

export!(HttpGuest);
