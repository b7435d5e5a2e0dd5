//! The hostile ClientApp as a Wasm component (`client.wasm`).
//!
//! The export is written out instead of `sepal_sdk::export_client_app!`, so that the
//! `garbage` and `empty` attacks can hand the host bytes the SDK would never produce
//! (as an app written without the SDK could). Every other attack runs through the SDK.

#[cfg(target_arch = "wasm32")]
mod component {
    use sepal_sdk::__private::client::exports::sepal::app::client_app::Guest;
    use sepal_sdk::__private::client::sepal::app::types::AppError;

    struct HostileClient;

    impl Guest for HostileClient {
        fn handle(message: Vec<u8>, context: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), AppError> {
            if let Some(raw) = hostile_app::raw_client_output(&message, &context) {
                return Ok(raw);
            }
            sepal_sdk::__private::handle_client(&hostile_app::client_app(), message, &context)
        }
    }

    sepal_sdk::__private::client::export_client!(HostileClient with_types_in sepal_sdk::__private::client);
}
