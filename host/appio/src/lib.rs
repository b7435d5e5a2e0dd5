//! `sepal serverapp` and `sepal clientapp`: Wasm apps run as external processes, over
//! Flower 1.20's ServerAppIo and ClientAppIo APIs, exactly as Python's `flwr-serverapp`
//! and `flwr-clientapp` run Python apps.
//!
//! Under `--isolation process` a SuperLink and a SuperNode run no app code: a separately
//! managed process connects to them. This crate is that process for Wasm FABs (and for
//! Sepal's as well as Flower's SuperLink and SuperNode). It is the gRPC side of the app
//! I/O interface; the in-process side lives in the SuperLink (`sepal_superlink::serverapp`)
//! and the SuperNode (`sepal_supernode::clientapps::wasm`). Both run the apps through
//! `sepal-executor`, so an app behaves and logs the same in either mode.
//!
//! - [`serverapp::run`]: polls `PullAppInputs` for a pending run, runs its Wasm ServerApp
//!   in the sandbox with a grid over ServerAppIo (nodes, push, pull, send-and-receive,
//!   objects), heartbeats, uploads the app's log, and records the outcome.
//! - [`clientapp::run`]: polls ClientAppIo for an instruction, takes a token, pulls the
//!   inputs and the instruction's objects, runs the Wasm ClientApp in the sandbox, and
//!   pushes the reply, its objects and the updated context.
//!
//! # Layout
//!
//! - [`error`]: [`Error`] (why `run` returned an error) and [`RpcError`] (one failed call).
//! - `rpc`: channels, the retry of UNAVAILABLE calls, the bounded waits.
//! - `objects`: pulling an object tree and pushing requested objects (both APIs).
//! - [`serverapp`]: the run loop, the ServerAppIo grid, heartbeat and log upload.
//! - [`clientapp`]: the token loop and one instruction's handling.
//!
//! # Polling
//!
//! Flower's ServerAppIo and ClientAppIo have no long-poll: an app asks and is answered at
//! once. So these processes poll, on their own schedule (Flower's Python apps poll every
//! 3 s and 1 s): for a pending run every [`serverapp::Options::poll_interval`], for an
//! instruction in a poll a Sepal SuperNode holds until one is offered (against Flower's
//! SuperNode, which answers at once: every 25 ms after the last one, doubling up to
//! [`clientapp::Options::poll_interval`]; instructions come in bursts), for replies during
//! `send_and_receive` every 50 ms rising to 250 ms, for an object still being uploaded
//! with a backoff from 50 ms to 2 s. Every wait is bounded.

pub mod clientapp;
pub mod error;
mod objects;
mod rpc;
pub mod serverapp;

pub use error::{Error, RpcError};
