//! The component bindings (wasm32 only): wit-bindgen's code for `guest-sdk/wit`, the
//! grid and log imports, and the glue the export macros call.
//!
//! App authors never name anything here; `export_client_app!` / `export_server_app!`
//! expand to a call of the generated export macros with this module's paths.

use std::time::Duration;

use crate::client::ClientApp;
use crate::error::AppError;
use crate::log::Level;
use crate::message::Message;
use crate::server::{Grid, ServerApp};

/// Bindings of the `client` world (also the home of the shared `types` and `log`).
pub mod client {
    wit_bindgen::generate!({
        world: "client",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_client",
        default_bindings_module: "::sepal_sdk::__private::client",
    });
}

/// Bindings of the `server` world (sharing `types` and `log` with [`client`]).
pub mod server {
    wit_bindgen::generate!({
        world: "server",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_server",
        default_bindings_module: "::sepal_sdk::__private::server",
        with: {
            "sepal:app/types@0.1.0": crate::bindings::client::sepal::app::types,
            "sepal:app/log@0.1.0": crate::bindings::client::sepal::app::log,
        },
    });
}

use client::sepal::app::log as wit_log;
use client::sepal::app::types::AppError as WitAppError;
use server::sepal::app::grid as wit_grid;

/// Sends a log line to the host.
pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => wit_log::Level::Debug,
        Level::Info => wit_log::Level::Info,
        Level::Warn => wit_log::Level::Warn,
        Level::Error => wit_log::Level::Error,
    };
    wit_log::log(level, message);
}

fn to_wit(e: AppError) -> WitAppError {
    WitAppError { code: e.code, message: e.message }
}

fn from_wit(e: WitAppError) -> AppError {
    AppError::with_code(e.code, e.message)
}

/// The body of the `client-app.handle` export.
pub fn handle_client(app: &ClientApp, message: Vec<u8>, context: &[u8]) -> Result<(Vec<u8>, Vec<u8>), WitAppError> {
    app.handle_proto_buffer(message, context).map_err(to_wit)
}

/// The body of the `server-app.run` export.
pub fn run_server(app: &ServerApp, context: &[u8]) -> Result<Vec<u8>, WitAppError> {
    app.run_proto(&mut HostGrid, context).map_err(to_wit)
}

/// The host's grid, through the `sepal:app/grid` import.
struct HostGrid;

fn decode_all(replies: Vec<Vec<u8>>) -> Result<Vec<Message>, AppError> {
    replies
        .into_iter()
        .map(|bytes| {
            Message::from_proto_buffer(bytes)
                .map_err(|e| AppError::new(format!("the host returned an invalid reply: {}", e.message)))
        })
        .collect()
}

fn encode_all(messages: Vec<Message>) -> Vec<Vec<u8>> {
    messages.into_iter().map(Message::into_proto_bytes).collect()
}

impl Grid for HostGrid {
    fn node_ids(&mut self) -> Result<Vec<u64>, AppError> {
        wit_grid::node_ids().map_err(from_wit)
    }

    fn push_messages(&mut self, messages: Vec<Message>) -> Result<Vec<String>, AppError> {
        wit_grid::push_messages(&encode_all(messages)).map_err(from_wit)
    }

    fn pull_messages(&mut self, message_ids: &[String]) -> Result<Vec<Message>, AppError> {
        decode_all(wit_grid::pull_messages(message_ids).map_err(from_wit)?)
    }

    fn send_and_receive(
        &mut self,
        messages: Vec<Message>,
        timeout: Option<Duration>,
    ) -> Result<Vec<Message>, AppError> {
        let timeout = timeout.map_or(f64::INFINITY, |t| t.as_secs_f64());
        decode_all(wit_grid::send_and_receive(&encode_all(messages), timeout).map_err(from_wit)?)
    }
}
