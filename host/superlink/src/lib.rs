//! The SuperLink: the hub of a Flower federation, speaking Flower 1.20's gRPC APIs.
//!
//! # Layout
//!
//! - [`state`]: the [`state::LinkState`] trait (runs, nodes, messages, logs, FABs, run
//!   status transitions) and its two backends: in memory, and SQLite (`--database`), which
//!   survives restarts; both pass one shared conformance suite.
//! - [`link`]: [`link::Link`], what the services share: the state, the object store that
//!   holds message payloads, the events that wake held calls, the input limits.
//! - [`fleet`], [`serverappio`], [`exec`]: the three gRPC services; thin handlers over
//!   [`link::Link`]. Fleet requests arrive verified by `sepal_wire::auth::FleetAuth`.
//! - [`objects`]: message payload objects, in memory and kept in the state (`--database`).
//! - [`limits`]: [`InputLimits`], how much input is accepted where it enters.
//! - [`clock`]: Flower's times (Unix seconds, ISO-8601 strings).
//! - [`error`]: the one place where errors become gRPC statuses.
//! - [`launcher`]: starts a ServerApp process for each pending run (subprocess isolation).
//! - [`serverapp`]: Wasm ServerApps run in-process (through `sepal-executor`), with a grid
//!   wired to the link state.
//! - [`server`]: binds the listeners and serves until shutdown.
//! - [`users`]: user authentication on the Exec API (`--user-auth-config`): the OpenID
//!   provider client, the config file, run ownership.

pub mod clock;
pub mod error;
pub mod exec;
pub mod fleet;
pub mod launcher;
pub mod lease;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod objects;
pub mod server;
pub mod serverapp;
pub mod serverappio;
pub mod state;
pub mod users;

pub use limits::InputLimits;
pub use server::{serve, Config, Isolation, Listeners, ServeError};
