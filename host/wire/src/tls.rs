//! TLS for both ends: the files a server is given (Flower's `--ssl-ca-certfile`,
//! `--ssl-certfile`, `--ssl-keyfile`) and how a client secures its connection
//! (`--insecure`, `--root-certificates`, or the system's roots). Files are read and
//! checked when the setting is made, so a bad file stops a start with a message that names
//! the flag and the file, not a handshake failure later.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file cannot be read.
    #[error("cannot read {flag} {path}: {error}")]
    Read {
        /// The flag (or setting) that named the file.
        flag: String,
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a `source`: it is said once).
        error: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("{flag} {path}: {problem}")]
    Invalid {
        /// The flag (or setting) that named the file.
        flag: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|error| TlsFileError::Read { flag: flag.into(), path: path.into(), error })
}

fn invalid(flag: &str, path: &Path, problem: String) -> TlsFileError {
    TlsFileError::Invalid { flag: flag.into(), path: path.into(), problem }
}

/// Reads a PEM file holding at least one certificate; `flag` names the setting in errors.
pub fn read_certificates(flag: &str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(flag, path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(invalid(flag, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(pem)
}

/// A server's TLS files (all PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The CA certificate (`--ssl-ca-certfile`). As in Flower, client certificates are
    /// not requested, so it is only checked to be a certificate.
    pub ca: PathBuf,
    /// The server certificate chain (`--ssl-certfile`); it must name the address clients
    /// dial (a DNS name, or an IP address in an `IP:` SAN).
    pub cert: PathBuf,
    /// The server's private key (`--ssl-keyfile`).
    pub key: PathBuf,
}

impl ServerTls {
    /// Reads and checks the three files; the server identity to serve with.
    pub fn load(&self) -> Result<ServerTlsConfig, TlsFileError> {
        read_certificates("--ssl-ca-certfile", &self.ca)?;
        let cert = read_certificates("--ssl-certfile", &self.cert)?;
        let key = read("--ssl-keyfile", &self.key)?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
            invalid("--ssl-keyfile", &self.key, format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) found ({e})"))
        })?;
        Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
    }
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

impl ClientTls {
    /// TLS verified against the CA certificate in `path` (read and checked now); `flag`
    /// names the setting in errors.
    pub fn ca_file(flag: &str, path: &Path) -> Result<Self, TlsFileError> {
        read_certificates(flag, path).map(ClientTls::Ca)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, ClientTls::Insecure)
    }

    /// An endpoint for `address` (`HOST:PORT`) with Sepal's HTTP/2 settings
    /// ([`crate::net::tuned`]); with TLS the server certificate must name HOST (a DNS name,
    /// or an IP address in an `IP:` SAN).
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, tonic::transport::Error> {
        let config = match self {
            ClientTls::Insecure => return Endpoint::from_shared(format!("http://{address}")).map(crate::net::tuned),
            ClientTls::Ca(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            ClientTls::SystemRoots => ClientTlsConfig::new().with_native_roots(),
        };
        Endpoint::from_shared(format!("https://{address}"))?.tls_config(config).map(crate::net::tuned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_the_flag_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let e = ClientTls::ca_file("--root-certificates", &garbage).unwrap_err().to_string();
        assert!(e.starts_with("--root-certificates ") && e.contains("holds no PEM certificate"), "{e}");

        let missing = dir.path().join("missing.pem");
        let tls = ServerTls { ca: missing.clone(), cert: missing.clone(), key: missing };
        let e = tls.load().unwrap_err().to_string();
        assert!(e.starts_with("cannot read --ssl-ca-certfile "), "{e}");
    }
}
