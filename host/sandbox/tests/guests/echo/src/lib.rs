//! A well-behaved ClientApp: returns the message and context it was given, and logs once.

wit_bindgen::generate!({
    path: "../../../../../guest-sdk/wit",
    world: "client",
});

use exports::sepal::app::client_app::{AppError, Guest};
use sepal::app::log::{log, Level};

struct Echo;

impl Guest for Echo {
    fn handle(message: Vec<u8>, context: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        log(Level::Info, &format!("echo: {} message bytes", message.len()));
        Ok((message, context))
    }
}

export!(Echo);
