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
//! - [`credentials`]: the tokens of a login (`sepal login` or `flwr login`), sent with
//!   every call and renewed as the SuperLink hands back new ones.

mod connection;
pub mod credentials;
mod errors;
mod federation;
mod pyproject;

pub use connection::{Exec, ExecTarget};
pub use federation::{project_dir_of, AppFederationArgs, FederationArgs};
