//! The SuperLink: the hub of a Flower federation, speaking Flower 1.20's gRPC APIs.
//!
//! # Layout
//!
//! - [`state`]: the [`state::LinkState`] trait (runs, nodes, messages, logs, FABs) and its
//!   in-memory backend.
//! - [`fleet`], [`serverappio`], [`exec`]: the three gRPC services; thin handlers over
//!   [`link::Link`].
//! - [`auth`]: verification of SuperNodes' signed Fleet requests.
//! - [`error`]: the one place where errors become gRPC statuses.
//! - [`launcher`]: starts a ServerApp process for each pending run (subprocess isolation).
//! - [`wasm`]: Wasm ServerApps run in-process, with a grid wired to the link state.
//! - [`server`]: binds the listeners and serves until shutdown.

pub mod auth;
pub mod clock;
pub mod error;
pub mod exec;
pub mod fleet;
pub mod launcher;
pub mod limits;
pub mod link;
pub mod server;
pub mod serverappio;
pub mod state;
pub mod wasm;

pub use limits::Limits;
pub use server::{serve, Config, Isolation, Listeners, ServeError, TlsError, TlsFiles};
