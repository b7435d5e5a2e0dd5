//! Throwaway TLS material for tests: a CA made here with rcgen (no openssl, no committed
//! keys) and a server certificate it signed, with SANs `IP:127.0.0.1` and `DNS:localhost`.

use std::path::Path;

use sepal_wire::ServerTls;

/// The PEM files `ca.pem`, `server.pem` and `server.key`, and the CA certificate's PEM.
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The files, as a SuperLink takes them (`--ssl-ca-certfile`, `--ssl-certfile`,
    /// `--ssl-keyfile`).
    pub files: ServerTls,
    /// The CA certificate a client verifies the server with (`--root-certificates`).
    pub ca_pem: Vec<u8>,
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("no SANs is valid");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("a fresh key");
    rcgen::CertifiedIssuer::self_signed(params, key).expect("a self-signed CA")
}

/// Makes a CA and a server certificate it signed, and writes them into `dir`.
pub fn make_certs(dir: &Path) -> TestCerts {
    let ca = ca("Sepal test CA");
    let key = rcgen::KeyPair::generate().expect("a fresh key");
    let sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let mut params = rcgen::CertificateParams::new(sans).expect("valid SANs");
    params.distinguished_name.push(rcgen::DnType::CommonName, "sepal-superlink");
    let cert = params.signed_by(&key, &ca).expect("a signed certificate");
    let files = ServerTls { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    for (path, text) in [(&files.ca, ca.pem()), (&files.cert, cert.pem()), (&files.key, key.serialize_pem())] {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    TestCerts { files, ca_pem: ca.pem().into_bytes() }
}

/// The PEM of another CA, one that signed nothing here: a client trusting only it must
/// refuse the test server.
pub fn stranger_ca_pem() -> Vec<u8> {
    ca("Some other CA").pem().into_bytes()
}
