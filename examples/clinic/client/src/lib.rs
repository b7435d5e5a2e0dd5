//! The clinic ClientApp, exported as a Wasm component (`client.wasm`).

sepal_sdk::export_client_app!(clinic_app::client_app());
