//! The connection to a SuperLink's Exec API: where it goes and how it is secured
//! ([`ExecTarget`]), and the connected client ([`Exec`]) with Flower's message size limits.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use sepal_proto::pb::exec_client::ExecClient;
use sepal_wire::ClientTls;
use sepal_wire::MAX_GRPC_MESSAGE;
use tonic::Status;

use super::credentials::{AuthChannel, Session};
use super::errors::rpc_error;

/// How long connecting to the SuperLink may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the SuperLink's Exec API is and how the connection is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    /// `HOST:PORT`.
    pub address: String,
    /// Plaintext, or TLS with a CA or the system's roots.
    pub tls: ClientTls,
    /// The login's tokens (federations with `enable-user-auth = true`), sent with every
    /// call.
    pub credentials: Option<PathBuf>,
}

impl ExecTarget {
    /// A plaintext target.
    pub fn insecure(address: impl Into<String>) -> Self {
        Self { address: address.into(), tls: ClientTls::Insecure, credentials: None }
    }
}

impl From<&ExecTarget> for ExecTarget {
    fn from(target: &ExecTarget) -> Self {
        target.clone()
    }
}

/// A bare address is plaintext.
impl From<&String> for ExecTarget {
    fn from(address: &String) -> Self {
        Self::insecure(address.as_str())
    }
}

/// A bare address is plaintext.
impl From<&str> for ExecTarget {
    fn from(address: &str) -> Self {
        Self::insecure(address)
    }
}

/// An Exec API client and the address it talks to (for messages).
pub struct Exec {
    /// The client, with Flower's message size limits (and the login's tokens).
    pub client: ExecClient<AuthChannel>,
    /// `HOST:PORT`.
    pub address: String,
}

impl Exec {
    /// Connects to the Exec API at `target`: a federation's [`ExecTarget`], or a bare
    /// `HOST:PORT` (plaintext).
    pub async fn connect(target: impl Into<ExecTarget>) -> anyhow::Result<Exec> {
        let ExecTarget { address, tls, credentials } = target.into();
        // Not logged in: say so before connecting.
        let session = credentials.map(Session::open).transpose()?.map(Arc::new);
        let address = address.as_str();
        if address.contains("://") {
            bail!("{address:?} is not a valid SuperLink address: expected HOST:PORT, without a scheme");
        }
        let endpoint = tls
            .endpoint(address)
            .map_err(|e| {
                anyhow!("cannot set up the connection to the SuperLink at {address:?} (HOST:PORT): {}", error_chain(&e))
            })?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow!("cannot reach the SuperLink at {address}: {}", error_chain(&e)))?;
        let client = ExecClient::new(AuthChannel::new(channel, session))
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE);
        Ok(Exec { client, address: address.to_string() })
    }

    /// A readable error for a failed call; `what` says what was refused, e.g.
    /// "the SuperLink refused the run".
    pub fn error(&self, status: &Status, what: &str) -> anyhow::Error {
        rpc_error(status, &self.address, what)
    }
}

/// An error and its sources, joined with ": " (tonic's transport errors say little at the top).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        // Layers often repeat their source's text; say it once.
        let part = e.to_string();
        if !text.contains(&part) {
            let _ = write!(text, ": {part}");
        }
        source = e.source();
    }
    text
}
