//! Host bindings generated from the committed WIT (`guest-sdk/wit/sepal-app.wit`), one
//! module per world.
//!
//! Exports are called with `call_async` (so long runs yield to tokio and the deadline can
//! cut off host waits); the grid import is async (send-and-receive waits for replies) and
//! trappable (the host can end a run from inside a grid call).

#![allow(missing_docs)]

/// The `client` world: imports `log`, exports `client-app`.
pub(crate) mod client {
    wasmtime::component::bindgen!({
        path: "../../guest-sdk/wit",
        world: "client",
        exports: { default: async },
    });
}

/// The `server` world: imports `log` and `grid`, exports `server-app`.
pub(crate) mod server {
    wasmtime::component::bindgen!({
        path: "../../guest-sdk/wit",
        world: "server",
        imports: {
            "sepal:app/grid": async | trappable,
        },
        exports: { default: async },
    });
}

/// The export a ClientApp component must have.
pub(crate) const CLIENT_EXPORT: &str = "sepal:app/client-app@0.1.0";
/// The export a ServerApp component must have.
pub(crate) const SERVER_EXPORT: &str = "sepal:app/server-app@0.1.0";
