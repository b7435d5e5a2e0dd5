//! SuperNode settings and Flower's config values.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use sepal_proto::pb;

use crate::retry::RetryPolicy;

/// Who runs ClientApps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The SuperNode starts a ClientApp process per message.
    Subprocess,
    /// An external ClientApp process connects over ClientAppIo.
    Process,
}

/// How a SuperNode runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SuperLink's Fleet address (`host:port`).
    pub superlink: String,
    /// How the Fleet connection is secured (`--insecure` / `--root-certificates`).
    pub tls: ClientTls,
    /// This node's config (`--node-config`), given to every ClientApp.
    pub node_config: HashMap<String, pb::Scalar>,
    /// Where ClientAppIo listens.
    pub clientappio: SocketAddr,
    /// Who runs ClientApps.
    pub isolation: Isolation,
    /// The `flwr-clientapp` executable for subprocess isolation.
    pub clientapp_bin: PathBuf,
    /// Passed on to `flwr-clientapp` as `--flwr-dir`.
    pub flwr_dir: Option<PathBuf>,
    /// When to give up reconnecting.
    pub retry: RetryPolicy,
    /// The longest a ClientApp may take on one message (it is also always stopped
    /// early enough for its error reply to arrive within the message's TTL).
    pub clientapp_timeout: Option<std::time::Duration>,
    /// Limits for Wasm ClientApps (memory, time, captured output).
    pub wasm_limits: sepal_sandbox::Limits,
    /// What Wasm ClientApps may use beyond nothing (data directory, connections).
    pub wasm_grants: sepal_sandbox::Grants,
}

/// How a client (a SuperNode to Fleet, the CLI to Exec) secures its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTls {
    /// Plaintext (`--insecure`).
    Insecure,
    /// TLS, verifying the server against this CA certificate (PEM; `--root-certificates`).
    Ca(Vec<u8>),
    /// TLS, verifying the server against the system's root certificates (Flower's default).
    SystemRoots,
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file cannot be read.
    #[error("cannot read {what} {path}: {error}")]
    Read {
        /// What the file is for, e.g. "--root-certificates".
        what: String,
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a `source`: it is said once).
        error: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("{what} {path}: {problem}")]
    Invalid {
        /// What the file is for.
        what: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Reads a PEM file holding at least one certificate; `what` names the flag for messages.
pub fn read_certificates(what: &str, path: &std::path::Path) -> Result<Vec<u8>, TlsFileError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let pem = std::fs::read(path).map_err(|error| TlsFileError::Read {
        what: what.to_string(),
        path: path.to_path_buf(),
        error,
    })?;
    let invalid = |problem: String| TlsFileError::Invalid { what: what.to_string(), path: path.to_path_buf(), problem };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(pem)
}

impl ClientTls {
    /// TLS verified against the CA certificate in `path` (read and checked now).
    pub fn ca_file(what: &str, path: &std::path::Path) -> Result<Self, TlsFileError> {
        read_certificates(what, path).map(ClientTls::Ca)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, ClientTls::Insecure)
    }

    /// A lazy-or-not endpoint for `address` (`HOST:PORT`); with TLS the server certificate
    /// must name HOST (a DNS name, or an IP address in an `IP:` SAN).
    pub fn endpoint(&self, address: &str) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
        let config = match self {
            ClientTls::Insecure => return Endpoint::from_shared(format!("http://{address}")),
            ClientTls::Ca(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            ClientTls::SystemRoots => ClientTlsConfig::new().with_native_roots(),
        };
        Endpoint::from_shared(format!("https://{address}"))?.tls_config(config)
    }
}
