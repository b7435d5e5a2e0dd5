//! One module per subcommand (an `Args` struct and its `run`), and the flag groups several
//! of them share: `app_process`, `isolation` and `wasm_args`.

pub mod app_process;
pub mod build;
pub mod clientapp;
pub mod demo;
pub mod isolation;
pub mod log;
pub mod login;
pub mod ls;
pub mod run;
pub mod serverapp;
pub mod stop;
pub mod superlink;
pub mod supernode;
pub mod wasm_args;

use std::net::SocketAddr;

use anyhow::Context as _;

/// Resolves `host:port` (as Flower's address flags take it) to one socket address.
pub async fn resolve(flag: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("{flag}: cannot resolve {addr:?} (expected HOST:PORT)"))?;
    addrs.next().with_context(|| format!("{flag}: {addr:?} resolves to no address"))
}
