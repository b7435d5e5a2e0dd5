//! Write Flower apps in Rust, run them as WebAssembly components under Sepal.
//!
//! This crate is Flower's app model for Rust: [`Message`]s carrying [`RecordDict`]s of
//! [`ArrayRecord`]s, [`MetricRecord`]s and [`ConfigRecord`]s; a [`Context`] with the run and
//! node config and persistent state; a [`ClientApp`] with handlers by message type; a
//! [`ServerApp`] driving a [`Grid`]; and strategies ([`strategy::FedAvg`]).
//!
//! Build an app crate as a `cdylib` for `wasm32-wasip2` (with
//! `-C target-feature=+simd128`) and export the app with [`export_client_app!`] or
//! [`export_server_app!`]: the component then implements the `client` or `server` world of
//! `guest-sdk/wit/sepal-app.wit`. The bindings are generated inside this crate; an app
//! never sees WIT types or depends on wit-bindgen. Natively the export macros expand to
//! nothing, so the same code is unit-tested with plain `cargo test`, and
//! [`testing::LocalGrid`] runs a whole federation in memory.
//!
//! # A ClientApp
//!
//! ```
//! use sepal_sdk::prelude::*;
//!
//! fn train(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
//!     let arrays = msg.content().array_record("arrays").ok_or("no arrays")?;
//!     let mut w = arrays.get("w").ok_or("no w")?.to_f32()?;
//!     let lr = ctx.run_config.get_f64_or("lr", 0.1) as f32;
//!     w.iter_mut().for_each(|x| *x -= lr); // "training"
//!     let content = RecordDict::new()
//!         .with("arrays", ArrayRecord::new().with("w", Array::vector_f32(&w)).into())
//!         .with("metrics", MetricRecord::new().with("num-examples", 100i64.into()).into());
//!     Ok(msg.reply(content))
//! }
//!
//! pub fn client_app() -> ClientApp {
//!     ClientApp::new().train(train)
//! }
//!
//! // In the component crate (a no-op when not building for wasm32):
//! sepal_sdk::export_client_app!(client_app());
//! ```
//!
//! # A ServerApp
//!
//! ```
//! use sepal_sdk::prelude::*;
//! use sepal_sdk::strategy::{FedAvg, StartOptions, Strategy};
//!
//! fn server_main(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
//!     let rounds = ctx.run_config.get_u64_or("num-server-rounds", 3);
//!     let initial = ArrayRecord::new().with("w", Array::vector_f32(&[0.0; 4]));
//!     let mut strategy = FedAvg::new().min_available_nodes(2);
//!     let options = StartOptions::new(rounds)
//!         .train_config(ConfigRecord::new().with("lr", 0.1.into()));
//!     let result = strategy.start(grid, initial, options)?;
//!     sepal_sdk::info!("final arrays: {:?}", result.arrays.keys().collect::<Vec<_>>());
//!     Ok(())
//! }
//!
//! sepal_sdk::export_server_app!(ServerApp::new(server_main));
//!
//! # // The two apps above, run together in memory:
//! # fn train(msg: Message, _ctx: &mut Context) -> Result<Message, AppError> {
//! #     let arrays = msg.content().array_record("arrays").ok_or("no arrays")?.clone();
//! #     let metrics = MetricRecord::new().with("num-examples", 10i64.into());
//! #     Ok(msg.reply(RecordDict::new().with("arrays", arrays.into()).with("metrics", metrics.into())))
//! # }
//! # fn evaluate(msg: Message, _ctx: &mut Context) -> Result<Message, AppError> {
//! #     let metrics = MetricRecord::new().with("num-examples", 10i64.into()).with("acc", 1.0.into());
//! #     Ok(msg.reply(RecordDict::new().with("metrics", metrics.into())))
//! # }
//! # let mut grid = sepal_sdk::testing::LocalGrid::new();
//! # grid.add_node(ClientApp::new().train(train).evaluate(evaluate), Config::new());
//! # grid.add_node(ClientApp::new().train(train).evaluate(evaluate), Config::new());
//! # grid.run(&ServerApp::new(server_main)).unwrap();
//! ```
//!
//! # The boundary
//!
//! Messages and contexts cross into and out of the component as Flower protobuf bytes
//! (`flwr.proto.Message` with its content inline, `flwr.proto.Context`). A reply built with
//! [`Message::reply`] leaves its message id empty for the host to compute; instructions
//! pushed through the [`Grid`] get their run id, source node and message id from the
//! host. A handler's [`AppError`] becomes the export's `app-error`, which the host answers
//! with a Flower error reply. Panics abort the component (`wasm32-wasip2` has no
//! unwinding); the host turns the trap into an error reply too.

mod client;
mod context;
mod error;
pub mod http;
pub mod log;
pub mod message;
pub mod mlflow;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod records;
mod server;
pub mod strategy;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod bindings;

pub use client::{ClientApp, Handler};
pub use context::{Config, Context, Scalar};
pub use error::AppError;
pub use message::{Message, MessageError, Metadata};
pub use records::{
    Array, ArrayExt, ArrayRecord, ConfigRecord, ConfigRecordExt, ConfigValue, MetricRecord, MetricRecordExt,
    MetricValue, Record, RecordDict,
};
pub use server::{Grid, MainFn, ServerApp};

/// The `bytes` crate: an [`Array`]'s data is a `bytes::Bytes`, and `BytesMut::from` it
/// changes a model in place when nothing else holds it (docs/app-guide.md, "Large models").
pub use bytes;

/// Everything an app usually needs: `use sepal_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AppError, Array, ArrayExt, ArrayRecord, ClientApp, Config, ConfigRecord, ConfigRecordExt, ConfigValue, Context,
        Grid, Message, MetricRecord, MetricRecordExt, MetricValue, Record, RecordDict, Scalar, ServerApp,
    };
}

/// Glue for the export macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::{client, handle_client, run_server, server};
}

/// Makes a [`ClientApp`] the component's `sepal:app/client-app` export.
///
/// The argument is an expression that builds the app; it is evaluated for every message
/// (the host instantiates the component afresh per message anyway). Use it once, at the
/// top level of the component crate (a `cdylib` built for `wasm32-wasip2`). Natively it
/// only type-checks the expression, so the crate's tests build as usual.
///
/// ```
/// use sepal_sdk::prelude::*;
///
/// fn query(msg: Message, _ctx: &mut Context) -> Result<Message, AppError> {
///     Ok(msg.reply(RecordDict::new()))
/// }
///
/// sepal_sdk::export_client_app!(ClientApp::new().query(query));
/// ```
#[macro_export]
macro_rules! export_client_app {
    ($app:expr) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SepalClientApp;

            impl $crate::__private::client::exports::sepal::app::client_app::Guest for SepalClientApp {
                fn handle(
                    message: ::std::vec::Vec<u8>,
                    context: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<
                    (::std::vec::Vec<u8>, ::std::vec::Vec<u8>),
                    $crate::__private::client::sepal::app::types::AppError,
                > {
                    let app: $crate::ClientApp = $app;
                    $crate::__private::handle_client(&app, message, &context)
                }
            }

            $crate::__private::client::export_client!(
                SepalClientApp with_types_in $crate::__private::client
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::ClientApp = || $app;
    };
}

/// Makes a [`ServerApp`] the component's `sepal:app/server-app` export.
///
/// The argument is an expression that builds the app. Use it once, at the top level of
/// the component crate (a `cdylib` built for `wasm32-wasip2`). Natively it only
/// type-checks the expression.
///
/// ```
/// use sepal_sdk::prelude::*;
///
/// fn server_main(grid: &mut dyn Grid, _ctx: &mut Context) -> Result<(), AppError> {
///     sepal_sdk::info!("{} nodes online", grid.node_ids()?.len());
///     Ok(())
/// }
///
/// sepal_sdk::export_server_app!(ServerApp::new(server_main));
/// ```
#[macro_export]
macro_rules! export_server_app {
    ($app:expr) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SepalServerApp;

            impl $crate::__private::server::exports::sepal::app::server_app::Guest for SepalServerApp {
                fn run(
                    context: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::__private::client::sepal::app::types::AppError>
                {
                    let app: $crate::ServerApp = $app;
                    $crate::__private::run_server(&app, &context)
                }
            }

            $crate::__private::server::export_server!(
                SepalServerApp with_types_in $crate::__private::server
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::ServerApp = || $app;
    };
}

#[cfg(test)]
mod tests;
