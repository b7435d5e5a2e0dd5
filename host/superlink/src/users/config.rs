//! `--user-auth-config`: the YAML file that turns on user authentication, read and
//! checked once at start so that a mistake stops the SuperLink with the reason.
//!
//! The two sections and their type keys are Flower's (`authentication.auth_type`,
//! `authorization.authz_type`); the other keys are Sepal's. Unknown keys are refused, so a
//! misspelt setting is not silently ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Flower's name for OpenID Connect, the only authentication type.
pub const OIDC: &str = "oidc";

/// The only authorization type: users see and stop their own runs, admins every run.
pub const OWNER: &str = "owner";

/// Most bytes of the config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not YAML of the expected shape.
    #[error("{path}: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What the parser says (with line and column).
        source: serde_norway::Error,
    },
    /// A value is missing or out of range.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// User authentication as configured: who the identity provider is, how to reach it and
/// how far to trust its answers, and who may do what.
#[derive(Debug, Clone)]
pub struct UserAuthConfig {
    /// The identity provider.
    pub oidc: OidcConfig,
    /// Users whose runs are all visible to them and whom any run may be stopped by.
    pub admins: BTreeSet<String>,
}

/// How the SuperLink uses the OpenID provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL; discovery is at `<issuer>/.well-known/openid-configuration`, and
    /// tokens must name exactly this issuer.
    pub issuer: String,
    /// The SuperLink's client id at the provider.
    pub client_id: String,
    /// Its secret (`None`: a public client).
    pub client_secret: Option<String>,
    /// Scopes asked for at login.
    pub scopes: Vec<String>,
    /// The claim whose value names the user (runs are owned by it; admins are listed by it).
    pub user_claim: String,
    /// The audience access tokens must carry (`None`: a token must have been issued to
    /// [`Self::client_id`], by its `client_id` or `azp` claim).
    pub audience: Option<String>,
    /// Extra CA certificates (PEM) trusted for the provider, besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Whether the provider's TLS certificate is checked (off only for local tests).
    pub verify_tls: bool,
    /// Timeout of each request to the provider.
    pub http_timeout: Duration,
    /// Largest reply read from the provider.
    pub max_response_bytes: usize,
    /// Longest token (or device code) accepted from a client.
    pub max_token_bytes: usize,
    /// How long an opaque access token's user, as the provider's userinfo endpoint told
    /// it, is reused.
    pub token_cache: Duration,
    /// Most tokens cached at once.
    pub max_cached_tokens: usize,
    /// Clock difference allowed when checking a token's `exp` and `nbf`.
    pub clock_skew: Duration,
    /// Shortest time between two fetches of the provider's keys when a token names an
    /// unknown key (a forged `kid` must not make every call fetch them).
    pub jwks_min_refetch: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    authentication: Option<RawAuthentication>,
    authorization: Option<RawAuthorization>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthentication {
    auth_type: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default = "default_user_claim")]
    user_claim: String,
    audience: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default = "default_http_timeout")]
    http_timeout_seconds: u64,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: usize,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_token_cache")]
    token_cache_seconds: u64,
    #[serde(default = "default_max_cached_tokens")]
    max_cached_tokens: usize,
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
    #[serde(default = "default_jwks_min_refetch")]
    jwks_min_refetch_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    authz_type: Option<String>,
    #[serde(default)]
    admins: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "offline_access".into()]
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_http_timeout() -> u64 {
    10
}
fn default_max_response_bytes() -> usize {
    1 << 20
}
fn default_max_token_bytes() -> usize {
    16 * 1024
}
fn default_token_cache() -> u64 {
    30
}
fn default_max_cached_tokens() -> usize {
    10_000
}
fn default_clock_skew() -> u64 {
    5
}
fn default_jwks_min_refetch() -> u64 {
    30
}

impl UserAuthConfig {
    /// Reads and checks the file at `path`. `verify_tls = false`
    /// (`--disable-oidc-tls-cert-verification`) turns off the provider's certificate check
    /// whatever the file says.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what to change.
    pub fn load(path: &Path, verify_tls: bool) -> Result<Self, ConfigError> {
        let text = read_capped(path)?;
        Self::parse(path, &text, verify_tls)
    }

    /// Checks the YAML `text` read from `path` (relative file names in it are taken
    /// relative to the file's folder).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what to change.
    pub fn parse(path: &Path, text: &str, verify_tls: bool) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { path: path.to_path_buf(), reason };
        let raw: RawFile =
            serde_norway::from_str(text).map_err(|source| ConfigError::Yaml { path: path.to_path_buf(), source })?;
        let authn = raw.authentication.ok_or_else(|| {
            invalid(format!(
                "no `authentication` section; it needs at least `auth_type: {OIDC}`, `issuer` and `client_id`"
            ))
        })?;
        match authn.auth_type.as_deref() {
            Some(OIDC) => {}
            Some(other) => {
                return Err(invalid(format!("authentication.auth_type {other:?} is not supported; use {OIDC:?}")))
            }
            None => return Err(invalid(format!("authentication.auth_type is missing; use {OIDC:?}"))),
        }
        let authz = raw.authorization.ok_or_else(|| {
            invalid(format!("no `authorization` section; it needs `authz_type: {OWNER}` (and optionally `admins`)"))
        })?;
        match authz.authz_type.as_deref() {
            Some(OWNER) => {}
            Some(other) => {
                return Err(invalid(format!("authorization.authz_type {other:?} is not supported; use {OWNER:?}")))
            }
            None => return Err(invalid(format!("authorization.authz_type is missing; use {OWNER:?}"))),
        }

        let issuer = authn.issuer.ok_or_else(|| invalid("authentication.issuer is missing".into()))?;
        let issuer_url = reqwest::Url::parse(&issuer)
            .map_err(|e| invalid(format!("authentication.issuer {issuer:?} is not a URL: {e}")))?;
        if !matches!(issuer_url.scheme(), "https" | "http") || issuer_url.host().is_none() {
            return Err(invalid(format!("authentication.issuer {issuer:?} must be an https:// URL")));
        }
        if issuer_url.scheme() == "http" && !is_loopback(&issuer_url) {
            return Err(invalid(format!(
                "authentication.issuer {issuer:?}: plain http is only allowed on loopback; use https"
            )));
        }
        let client_id = authn.client_id.filter(|c| !c.is_empty());
        let client_id = client_id.ok_or_else(|| invalid("authentication.client_id is missing".into()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let client_secret = match (authn.client_secret, authn.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid("give authentication.client_secret or client_secret_file, not both".into()))
            }
            (Some(secret), None) => Some(secret),
            (None, Some(file)) => {
                let file = base.join(file);
                let secret = read_capped(&file)?;
                let secret = secret.trim().to_string();
                if secret.is_empty() {
                    return Err(invalid(format!("authentication.client_secret_file {} is empty", file.display())));
                }
                Some(secret)
            }
            (None, None) => None,
        };
        let ca_pem = match authn.ca_file {
            Some(file) => {
                let file = base.join(file);
                let pem = std::fs::read(&file).map_err(|source| ConfigError::Read { path: file.clone(), source })?;
                if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |certs| certs.is_empty()) {
                    return Err(invalid(format!(
                        "authentication.ca_file {}: no PEM certificate in it",
                        file.display()
                    )));
                }
                Some(pem)
            }
            None => None,
        };
        if !authn.scopes.iter().any(|s| s == "openid") {
            return Err(invalid("authentication.scopes must include \"openid\"".into()));
        }
        if authn.user_claim.is_empty() {
            return Err(invalid("authentication.user_claim must not be empty".into()));
        }
        let positive = |name: &str, value: u64| {
            if value == 0 {
                Err(invalid(format!("authentication.{name} must be at least 1")))
            } else {
                Ok(value)
            }
        };
        positive("http_timeout_seconds", authn.http_timeout_seconds)?;
        positive("max_response_bytes", authn.max_response_bytes as u64)?;
        positive("max_token_bytes", authn.max_token_bytes as u64)?;
        positive("max_cached_tokens", authn.max_cached_tokens as u64)?;
        if authz.admins.iter().any(String::is_empty) {
            return Err(invalid("authorization.admins: an empty name".into()));
        }
        let oidc = OidcConfig {
            issuer,
            client_id,
            client_secret,
            scopes: authn.scopes,
            user_claim: authn.user_claim,
            audience: authn.audience,
            ca_pem,
            verify_tls: verify_tls && !authn.insecure_skip_tls_verify,
            http_timeout: Duration::from_secs(authn.http_timeout_seconds),
            max_response_bytes: authn.max_response_bytes,
            max_token_bytes: authn.max_token_bytes,
            token_cache: Duration::from_secs(authn.token_cache_seconds),
            max_cached_tokens: authn.max_cached_tokens,
            clock_skew: Duration::from_secs(authn.clock_skew_seconds),
            jwks_min_refetch: Duration::from_secs(authn.jwks_min_refetch_seconds),
        };
        Ok(Self { oidc, admins: authz.admins.into_iter().collect() })
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_capped(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let err = |source| ConfigError::Read { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_CONFIG_BYTES} bytes"),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
authentication:
  auth_type: oidc
  issuer: https://idp.example.org/realms/fl
  client_id: sepal
  client_secret: s3cret
authorization:
  authz_type: owner
  admins: [alice]
";

    fn parse(text: &str) -> Result<UserAuthConfig, ConfigError> {
        UserAuthConfig::parse(Path::new("/etc/sepal/auth.yaml"), text, true)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.oidc.issuer, "https://idp.example.org/realms/fl");
        assert_eq!(cfg.oidc.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(cfg.oidc.user_claim, "sub");
        assert_eq!(cfg.oidc.scopes, ["openid", "offline_access"]);
        assert!(cfg.oidc.verify_tls);
        assert_eq!(cfg.oidc.http_timeout, Duration::from_secs(10));
        assert!(cfg.admins.contains("alice"));
    }

    #[test]
    fn the_flag_turns_tls_verification_off() {
        let cfg = UserAuthConfig::parse(Path::new("a.yaml"), GOOD, false).unwrap();
        assert!(!cfg.oidc.verify_tls);
    }

    #[test]
    fn missing_sections_and_types_are_named() {
        assert!(error("authorization: {authz_type: owner}").contains("no `authentication` section"));
        assert!(error("authentication: {auth_type: oidc}").contains("no `authorization` section"));
        let e = error(&GOOD.replace("auth_type: oidc", "auth_type: saml"));
        assert!(e.contains("\"saml\" is not supported"), "{e}");
        let e = error(&GOOD.replace("authz_type: owner", "authz_type: rbac"));
        assert!(e.contains("authz_type \"rbac\" is not supported"), "{e}");
        assert!(error(&GOOD.replace("  client_id: sepal\n", "")).contains("client_id is missing"));
    }

    #[test]
    fn misspelt_keys_are_refused_with_their_line() {
        let e = error(&GOOD.replace("client_secret:", "client_secrte:"));
        assert!(e.contains("unknown field `client_secrte`") && e.contains("line"), "{e}");
        assert!(e.starts_with("/etc/sepal/auth.yaml"), "{e}");
    }

    #[test]
    fn plain_http_issuers_are_for_loopback_only() {
        let e = error(&GOOD.replace("https://idp.example.org", "http://idp.example.org"));
        assert!(e.contains("only allowed on loopback"), "{e}");
        assert!(parse(&GOOD.replace("https://idp.example.org", "http://127.0.0.1:4000")).is_ok());
        assert!(error(&GOOD.replace("https://idp.example.org/realms/fl", "not a url")).contains("not a URL"));
    }

    #[test]
    fn bounds_must_be_positive_and_openid_asked_for() {
        let e = error(&GOOD.replace("client_secret: s3cret", "client_secret: s\n  http_timeout_seconds: 0"));
        assert!(e.contains("http_timeout_seconds must be at least 1"), "{e}");
        let e = error(&GOOD.replace("client_secret: s3cret", "client_secret: s\n  scopes: [profile]"));
        assert!(e.contains("must include \"openid\""), "{e}");
    }

    #[test]
    fn the_secret_may_come_from_a_file_next_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "from-file\n").unwrap();
        let text = GOOD.replace("client_secret: s3cret", "client_secret_file: secret");
        let cfg = UserAuthConfig::parse(&dir.path().join("auth.yaml"), &text, true).unwrap();
        assert_eq!(cfg.oidc.client_secret.as_deref(), Some("from-file"));
        let both = GOOD.replace("client_secret: s3cret", "client_secret: a\n  client_secret_file: secret");
        let e = UserAuthConfig::parse(&dir.path().join("auth.yaml"), &both, true).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
        let missing = GOOD.replace("client_secret: s3cret", "client_secret_file: nope");
        let e = UserAuthConfig::parse(&dir.path().join("auth.yaml"), &missing, true).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("nope"), "{e}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let text = GOOD.replace("client_secret: s3cret", "ca_file: ca.pem");
        let e = UserAuthConfig::parse(&dir.path().join("auth.yaml"), &text, true).unwrap_err().to_string();
        assert!(e.contains("ca_file") && e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn not_yaml_is_refused() {
        assert!(error("authentication: [").contains("auth.yaml"));
    }
}
