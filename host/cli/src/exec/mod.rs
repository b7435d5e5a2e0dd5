//! The client side of the SuperLink's Exec API, shared by `sepal run`, `ls`, `log`, `stop`
//! and `demo`: which SuperLink to talk to, the connection, and readable errors.
//!
//! - [`federation`]: the command-line arguments that name a SuperLink (`[APP]`,
//!   `[FEDERATION]`, `--federation-config`, `--superlink`) and what they resolve to, a
//!   [`Federation`](federation::Federation).
//! - [`pyproject`]: picking and checking a federation of an app's `pyproject.toml`, as the
//!   `flwr` CLI does.
//! - [`connection`]: the Exec gRPC client, [`Exec`], and where it connects,
//!   [`ExecTarget`](connection::ExecTarget).
//! - [`errors`]: failed calls turned into messages that say what to do.

mod connection;
mod errors;
mod federation;
mod pyproject;

pub use connection::Exec;
pub use federation::{project_dir_of, AppFederationArgs, FederationArgs};
