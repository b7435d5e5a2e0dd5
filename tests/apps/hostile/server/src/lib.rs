//! The hostile ServerApp as a Wasm component (`server.wasm`).
//!
//! The export is written out instead of `sepal_sdk::export_server_app!`, so that the
//! `garbage` attack can return a context the SDK would never produce, and `garbage-push`
//! can push raw bytes through the host's grid import. Every other attack runs through the
//! SDK.

#[cfg(target_arch = "wasm32")]
mod component {
    use sepal_sdk::__private::client::sepal::app::types::AppError as WitAppError;
    use sepal_sdk::__private::server::exports::sepal::app::server_app::Guest;
    use sepal_sdk::__private::server::sepal::app::grid;
    use sepal_sdk::AppError;

    /// Raw bytes through the `sepal:app/grid` import, past the SDK's encoding.
    fn raw_push(messages: &[Vec<u8>]) -> Result<Vec<String>, AppError> {
        grid::push_messages(messages).map_err(|e| AppError::with_code(e.code, e.message))
    }

    struct HostileServer;

    impl Guest for HostileServer {
        fn run(context: Vec<u8>) -> Result<Vec<u8>, WitAppError> {
            if let Some(garbage) = hostile_app::raw_server_output(&context) {
                return Ok(garbage);
            }
            sepal_sdk::__private::run_server(&hostile_app::server_app(raw_push), &context)
        }
    }

    sepal_sdk::__private::server::export_server!(HostileServer with_types_in sepal_sdk::__private::server);
}
