//! The clinic ServerApp, exported as a Wasm component (`server.wasm`).

sepal_sdk::export_server_app!(clinic_app::server_app());
