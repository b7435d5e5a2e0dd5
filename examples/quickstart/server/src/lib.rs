//! The quickstart ServerApp, exported as a Wasm component (`server.wasm`).

sepal_sdk::export_server_app!(quickstart_app::server_app());
