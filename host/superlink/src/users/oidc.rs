//! The SuperLink as a client of an OpenID provider: discovery, the device authorization
//! flow (RFC 8628), token refresh, and checking access tokens (as JWTs against the
//! provider's keys, or, for opaque tokens, through its userinfo endpoint).
//!
//! Discovery is fetched on first use and kept; the keys are kept and fetched again when a
//! token names one not seen yet (at most every `jwks_min_refetch`). So once both are in
//! hand, tokens are checked without the provider: calls with valid tokens keep working
//! while it is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::config::OidcConfig;
use super::AuthError;

mod http;

/// How long the tokens a refresh returned are handed again to whoever presents the same
/// refresh token (a client that lost the reply, or two calls that crossed); the provider
/// would refuse the rotated token, and may revoke the whole grant for its reuse.
const REFRESH_REUSE: Duration = Duration::from_secs(30);

/// The poll interval a login is told when the provider gives none (the `flwr` CLI polls
/// without pause when told 0).
pub const DEFAULT_INTERVAL: i64 = 5;

/// What the provider's discovery document says that the SuperLink uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// The provider's signing keys.
    pub jwks_uri: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// Where a device login starts (RFC 8628); `None` if the provider has no device flow.
    pub device_authorization_endpoint: Option<String>,
    /// Where an opaque access token is turned into the user's claims.
    pub userinfo_endpoint: Option<String>,
}

/// A pair of tokens the provider issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

/// A device login started at the provider.
#[derive(Debug, Clone)]
pub struct DeviceLogin {
    /// The code the client polls with.
    pub device_code: String,
    /// Where the user signs in (with the user code in it, or told next to it).
    pub verification_uri_complete: String,
    /// Seconds until the device code expires.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

/// A checked access token: the user's claims.
#[derive(Debug, Clone)]
pub struct Claims {
    /// Every claim of the token (or of the userinfo reply).
    pub all: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct JwtClaims {
    // Typed, so a token whose `exp` is not a number is refused whatever the library does
    // with it.
    #[allow(dead_code)]
    exp: i64,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: String,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct DeviceReply {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: i64,
    interval: Option<i64>,
}

struct Keys {
    set: Arc<JwkSet>,
    fetched: Instant,
}

/// A client of one OpenID provider.
pub struct Provider {
    cfg: OidcConfig,
    http: reqwest::Client,
    discovery: tokio::sync::Mutex<Option<Arc<Discovery>>>,
    keys: tokio::sync::Mutex<Option<Keys>>,
    /// Opaque access tokens (by hash) and the claims userinfo gave for them.
    userinfo: Mutex<HashMap<[u8; 32], (Claims, Instant)>>,
    /// Refresh tokens (by hash) recently exchanged, and what they were exchanged for.
    refreshed: Mutex<HashMap<[u8; 32], (Tokens, Instant)>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("issuer", &self.cfg.issuer).field("client_id", &self.cfg.client_id).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The algorithms a provider may sign with: asymmetric only (a symmetric one would let
/// anyone who knows the public key sign).
fn allowed(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl Provider {
    /// A client for the provider `cfg` names.
    ///
    /// # Errors
    /// The HTTP client cannot be built (the CA certificates are not usable).
    pub fn new(cfg: OidcConfig) -> Result<Self, String> {
        let mut http = reqwest::Client::builder()
            .timeout(cfg.http_timeout)
            .connect_timeout(cfg.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(!cfg.verify_tls);
        if let Some(pem) = &cfg.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("the CA file: {e}"))? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| format!("cannot set up HTTPS to the identity provider: {e}"))?;
        Ok(Self {
            cfg,
            http,
            discovery: tokio::sync::Mutex::new(None),
            keys: tokio::sync::Mutex::new(None),
            userinfo: Mutex::new(HashMap::new()),
            refreshed: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// The discovery document, fetched on first use.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, AuthError> {
        let mut held = self.discovery.lock().await;
        if let Some(d) = held.as_ref() {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
        let body = self.get(&url).await?;
        let d: Discovery = serde_json::from_slice(&body)
            .map_err(|e| AuthError::Provider(format!("its discovery document {url} is not usable: {e}")))?;
        if d.issuer != self.cfg.issuer {
            return Err(AuthError::Provider(format!(
                "its discovery document names the issuer {:?}, not the configured {:?}",
                d.issuer, self.cfg.issuer
            )));
        }
        tracing::info!(issuer = %d.issuer, device_flow = d.device_authorization_endpoint.is_some(), "identity provider discovered");
        let d = Arc::new(d);
        *held = Some(d.clone());
        Ok(d)
    }

    /// The provider's signing keys; fetched again if `refetch` and the last fetch is old
    /// enough.
    async fn keys(&self, refetch: bool) -> Result<Arc<JwkSet>, AuthError> {
        let mut held = self.keys.lock().await;
        if let Some(k) = held.as_ref() {
            if !refetch || k.fetched.elapsed() < self.cfg.jwks_min_refetch {
                return Ok(k.set.clone());
            }
        }
        let jwks_uri = self.discovery().await?.jwks_uri.clone();
        let fetched = async {
            let body = self.get(&jwks_uri).await?;
            serde_json::from_slice::<JwkSet>(&body)
                .map_err(|e| AuthError::Provider(format!("its keys at {jwks_uri} are not a JWK set: {e}")))
        }
        .await;
        match fetched {
            Ok(set) => {
                let set = Arc::new(set);
                *held = Some(Keys { set: set.clone(), fetched: Instant::now() });
                Ok(set)
            }
            // Keys in hand stay usable while the provider cannot be reached.
            Err(e) => match held.as_mut() {
                Some(k) => {
                    tracing::warn!("keeping the identity provider's cached keys: {e}");
                    k.fetched = Instant::now();
                    Ok(k.set.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Checks an access token and returns its claims. [`AuthError::Expired`] means a
    /// refresh may help.
    pub async fn check(&self, access: &str) -> Result<Claims, AuthError> {
        match jsonwebtoken::decode_header(access) {
            Ok(header) => self.check_jwt(access, header).await,
            Err(_) if access.split('.').count() == 3 => {
                Err(AuthError::Invalid("the access token is not a valid JWT".into()))
            }
            Err(_) => self.check_opaque(access).await,
        }
    }

    async fn check_jwt(&self, token: &str, header: jsonwebtoken::Header) -> Result<Claims, AuthError> {
        if !allowed(header.alg) {
            return Err(AuthError::Invalid(format!(
                "the access token is signed with {:?}, which is not accepted",
                header.alg
            )));
        }
        let cached = self.keys(false).await?;
        let key = match self.find_key(&cached, &header) {
            Some(key) => key,
            None => self.find_key(&*self.keys(true).await?, &header).ok_or_else(|| {
                AuthError::Invalid("the access token is signed with a key the identity provider does not have".into())
            })?,
        };
        let key = DecodingKey::from_jwk(&key)
            .map_err(|e| AuthError::Invalid(format!("the provider's key for the token is unusable: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.cfg.issuer]);
        // A configured audience must be there, not just match when present.
        let required: &[&str] = if self.cfg.audience.is_some() { &["exp", "iss", "aud"] } else { &["exp", "iss"] };
        validation.set_required_spec_claims(required);
        validation.leeway = self.cfg.clock_skew.as_secs();
        validation.validate_nbf = true;
        match &self.cfg.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<JwtClaims>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                AuthError::Invalid("the access token's signature does not verify".into())
            }
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                AuthError::Invalid("the access token is from another issuer".into())
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                AuthError::Invalid("the access token is not meant for this SuperLink (audience)".into())
            }
            other => AuthError::Invalid(format!("the access token is not valid: {other:?}")),
        })?;
        let claims = data.claims.rest;
        if self.cfg.audience.is_none() {
            let issued_to = claims.get("client_id").or_else(|| claims.get("azp")).and_then(|v| v.as_str());
            if issued_to != Some(self.cfg.client_id.as_str()) {
                return Err(AuthError::Invalid("the access token was issued to another client".into()));
            }
        }
        Ok(Claims { all: claims })
    }

    fn find_key(&self, set: &JwkSet, header: &jsonwebtoken::Header) -> Option<Jwk> {
        let usable = |k: &&Jwk| {
            let alg_ok = k.common.key_algorithm.is_none_or(|a| format!("{a:?}") == format!("{:?}", header.alg));
            let use_ok = !matches!(k.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption));
            alg_ok && use_ok
        };
        match &header.kid {
            Some(kid) => set.keys.iter().filter(usable).find(|k| k.common.key_id.as_deref() == Some(kid)).cloned(),
            None => {
                let mut candidates = set.keys.iter().filter(usable);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        }
    }

    async fn check_opaque(&self, token: &str) -> Result<Claims, AuthError> {
        let key = hash(token);
        if let Some((claims, at)) = lock(&self.userinfo).get(&key) {
            if at.elapsed() < self.cfg.token_cache {
                return Ok(claims.clone());
            }
        }
        let endpoint = self.discovery().await?.userinfo_endpoint.clone().ok_or_else(|| {
            AuthError::Invalid(
                "the access token is not a JWT and the identity provider has no userinfo endpoint".into(),
            )
        })?;
        let response = self.send(self.http.get(&endpoint).bearer_auth(token), &endpoint).await?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(AuthError::Expired);
        }
        let body = self.read(response, &endpoint).await?;
        if !status.is_success() {
            return Err(AuthError::Provider(format!("its userinfo endpoint answered {status}")));
        }
        let all: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|e| AuthError::Provider(format!("its userinfo reply is not a JSON object: {e}")))?;
        let claims = Claims { all };
        let mut cache = lock(&self.userinfo);
        cache.retain(|_, (_, at)| at.elapsed() < self.cfg.token_cache);
        if cache.len() >= self.cfg.max_cached_tokens {
            cache.clear();
        }
        cache.insert(key, (claims.clone(), Instant::now()));
        Ok(claims)
    }

    /// Starts a device login.
    pub async fn start_device_login(&self) -> Result<DeviceLogin, AuthError> {
        let d = self.discovery().await?;
        let endpoint = d.device_authorization_endpoint.clone().ok_or_else(|| {
            AuthError::Provider(
                "it does not offer the device authorization flow (no device_authorization_endpoint)".into(),
            )
        })?;
        let scope = self.cfg.scopes.join(" ");
        let body = self
            .post_form(&endpoint, &[("scope", scope.as_str())])
            .await?
            .map_err(|e| AuthError::Provider(format!("it refused to start a device login: {}", describe(&e))))?;
        let r: DeviceReply = serde_json::from_slice(&body)
            .map_err(|e| AuthError::Provider(format!("its device authorization reply is not usable: {e}")))?;
        let verification_uri_complete = r
            .verification_uri_complete
            .unwrap_or_else(|| format!("{} and enter the code {}", r.verification_uri, r.user_code));
        Ok(DeviceLogin {
            device_code: r.device_code,
            verification_uri_complete,
            expires_in: r.expires_in,
            interval: r.interval.filter(|i| *i > 0).unwrap_or(DEFAULT_INTERVAL),
        })
    }

    /// Polls a device login: `None` while the user has not signed in yet.
    pub async fn poll_device_login(&self, device_code: &str) -> Result<Option<Tokens>, AuthError> {
        let endpoint = self.discovery().await?.token_endpoint.clone();
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", device_code)];
        match self.post_form(&endpoint, &form).await? {
            Ok(body) => self.tokens(&body, None).map(Some),
            Err(e) => match e.error.as_str() {
                "authorization_pending" | "slow_down" => Ok(None),
                "access_denied" => Err(AuthError::Denied("the sign-in was declined at the identity provider".into())),
                "expired_token" => {
                    Err(AuthError::Invalid("the login expired before the sign-in; run `flwr login` again".into()))
                }
                _ => Err(AuthError::Invalid(format!("the identity provider refused the login: {}", describe(&e)))),
            },
        }
    }

    /// Exchanges a refresh token for new tokens (the same refresh token within
    /// [`REFRESH_REUSE`] gets the same answer, without asking the provider again).
    pub async fn refresh(&self, refresh: &str) -> Result<Tokens, AuthError> {
        let key = hash(refresh);
        if let Some((tokens, at)) = lock(&self.refreshed).get(&key) {
            if at.elapsed() < REFRESH_REUSE {
                return Ok(tokens.clone());
            }
        }
        let endpoint = self.discovery().await?.token_endpoint.clone();
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let body = self
            .post_form(&endpoint, &form)
            .await?
            .map_err(|e| AuthError::Invalid(format!("the session ended and cannot be renewed ({})", describe(&e))))?;
        let tokens = self.tokens(&body, Some(refresh))?;
        let mut cache = lock(&self.refreshed);
        cache.retain(|_, (_, at)| at.elapsed() < REFRESH_REUSE);
        if cache.len() >= self.cfg.max_cached_tokens {
            cache.clear();
        }
        cache.insert(key, (tokens.clone(), Instant::now()));
        Ok(tokens)
    }

    fn tokens(&self, body: &[u8], old_refresh: Option<&str>) -> Result<Tokens, AuthError> {
        let r: TokenReply = serde_json::from_slice(body)
            .map_err(|e| AuthError::Provider(format!("its token reply is not usable: {e}")))?;
        let refresh = match (r.refresh_token, old_refresh) {
            (Some(new), _) => new,
            (None, Some(old)) => old.to_string(),
            (None, None) => return Err(AuthError::Provider(
                "it issued no refresh token; allow refresh tokens for the client (often the `offline_access` scope)"
                    .into(),
            )),
        };
        Ok(Tokens { access: r.access_token, refresh })
    }
}

fn describe(e: &ErrorReply) -> String {
    match &e.error_description {
        Some(d) => format!("{}: {d}", e.error),
        None => e.error.clone(),
    }
}

#[cfg(test)]
impl Provider {
    /// A provider whose discovery and keys are already in hand (unit tests).
    pub(crate) fn with_keys(cfg: OidcConfig, discovery: Discovery, keys: JwkSet) -> Self {
        let p = Self::new(cfg).unwrap();
        *p.discovery.try_lock().unwrap() = Some(Arc::new(discovery));
        *p.keys.try_lock().unwrap() = Some(Keys { set: Arc::new(keys), fetched: Instant::now() });
        p
    }
}
