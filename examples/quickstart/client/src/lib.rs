//! The quickstart ClientApp, exported as a Wasm component (`client.wasm`).

sepal_sdk::export_client_app!(quickstart_app::client_app());
