//! Who may use the Exec API: user authentication with an OpenID provider
//! (`--user-auth-config`), and run ownership.
//!
//! With it on, every Exec call but the two login calls carries the user's tokens in the
//! metadata keys [`ACCESS_TOKEN_KEY`] and [`REFRESH_TOKEN_KEY`] (as the `flwr` CLI sends
//! them). The access token is checked; when it has expired, the SuperLink renews it with
//! the refresh token and hands both new tokens back as initial metadata of the reply,
//! which is where the CLI looks for them. A run belongs to the user who submitted it;
//! admins see and stop every run.
//!
//! Only the SuperLink talks to the provider; SuperNodes and apps never see user tokens.
//!
//! # Layout
//! - [`config`]: the YAML file, read and checked at start.
//! - [`oidc`]: the provider client: discovery, keys, device login, refresh, token checks.

pub mod config;
pub mod oidc;

use std::collections::BTreeSet;

use sepal_proto::pb;
use tonic::metadata::MetadataMap;

use crate::error::Error;
pub use config::{ConfigError, UserAuthConfig};
pub use oidc::{Provider, Tokens};

/// The metadata key of the access token (Flower's).
pub const ACCESS_TOKEN_KEY: &str = "flwr-oidc-access-token";
/// The metadata key of the refresh token (Flower's).
pub const REFRESH_TOKEN_KEY: &str = "flwr-oidc-refresh-token";

/// Flower's words for a run that is not the caller's; its CLI shows them.
pub const NOT_OWNER: &str = "Run ID does not belong to the user";

/// Why a user could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The call carries no tokens.
    #[error("the call carries no login tokens")]
    Missing,
    /// A token is not valid, and renewing it did not help (or was not possible).
    #[error("{0}")]
    Invalid(String),
    /// The access token has expired (a refresh may help).
    #[error("the access token has expired")]
    Expired,
    /// The identity provider could not be reached or gave an unusable answer.
    #[error("{0}")]
    Provider(String),
    /// The user declined the sign-in.
    #[error("{0}")]
    Denied(String),
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid(_) | AuthError::Expired => {
                Error::Unauthenticated(format!("{e}; run `flwr login` to sign in"))
            }
            AuthError::Provider(reason) => {
                Error::Unavailable(format!("the SuperLink cannot use its identity provider: {reason}"))
            }
            AuthError::Denied(reason) => Error::PermissionDenied(reason),
        }
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The value of the configured user claim (`sub` by default): what runs are owned by.
    pub id: String,
    /// Whether the user sees and stops every run.
    pub admin: bool,
}

/// User authentication and authorization, as configured.
#[derive(Debug)]
pub struct UserAuth {
    provider: Provider,
    admins: BTreeSet<String>,
}

impl UserAuth {
    /// Sets up the provider client for `cfg` (nothing is fetched yet).
    ///
    /// # Errors
    /// The HTTP client cannot be built from the configured CA certificates.
    pub fn new(cfg: UserAuthConfig) -> Result<Self, String> {
        Ok(Self { provider: Provider::new(cfg.oidc)?, admins: cfg.admins })
    }

    /// The provider client.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Authenticates the caller from its metadata. When the access token had expired and
    /// was renewed, the new tokens come back too; they must reach the client.
    ///
    /// # Errors
    /// [`AuthError`]: no tokens, invalid ones, or the provider needed and not reachable.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<(User, Option<Tokens>), AuthError> {
        let max = self.provider.config().max_token_bytes;
        let read = |key: &str| -> Result<Option<String>, AuthError> {
            match metadata.get(key) {
                None => Ok(None),
                Some(v) => {
                    let v = v.to_str().map_err(|_| AuthError::Invalid(format!("{key} is not text")))?;
                    if v.len() > max {
                        return Err(AuthError::Invalid(format!(
                            "{key} is {} bytes; the limit is {max} (max_token_bytes)",
                            v.len()
                        )));
                    }
                    Ok(Some(v.to_string()).filter(|v| !v.is_empty()))
                }
            }
        };
        let access = read(ACCESS_TOKEN_KEY)?.ok_or(AuthError::Missing)?;
        let refresh = read(REFRESH_TOKEN_KEY)?;
        match self.provider.check(&access).await {
            Ok(claims) => Ok((self.user(&claims)?, None)),
            Err(AuthError::Expired) => {
                let refresh = refresh.ok_or(AuthError::Expired)?;
                let tokens = self.provider.refresh(&refresh).await?;
                let claims = match self.provider.check(&tokens.access).await {
                    Err(AuthError::Expired) => {
                        return Err(AuthError::Invalid("the renewed access token has already expired".into()))
                    }
                    other => other?,
                };
                let user = self.user(&claims)?;
                tracing::info!(user = %user.id, "access token renewed");
                Ok((user, Some(tokens)))
            }
            Err(e) => Err(e),
        }
    }

    fn user(&self, claims: &oidc::Claims) -> Result<User, AuthError> {
        let claim = &self.provider.config().user_claim;
        let id = match claims.all.get(claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(AuthError::Invalid(format!("the access token has no `{claim}` claim to name the user"))),
        };
        Ok(User { admin: self.admins.contains(&id), id })
    }

    /// Starts a device login at the provider (GetLoginDetails).
    ///
    /// # Errors
    /// [`AuthError::Provider`] when the provider cannot start one.
    pub async fn login_details(&self) -> Result<pb::GetLoginDetailsResponse, AuthError> {
        let login = self.provider.start_device_login().await?;
        Ok(pb::GetLoginDetailsResponse {
            auth_type: config::OIDC.into(),
            device_code: login.device_code,
            verification_uri_complete: login.verification_uri_complete,
            expires_in: login.expires_in,
            interval: login.interval,
        })
    }

    /// Polls a device login (GetAuthTokens): empty tokens while the user has not signed
    /// in yet. Tokens are checked before they are handed out, so a provider set up in a
    /// way this SuperLink will not accept fails the login, not every later call.
    ///
    /// # Errors
    /// [`AuthError`]: the login was declined, expired, or the tokens are not accepted.
    pub async fn auth_tokens(&self, device_code: &str) -> Result<pb::GetAuthTokensResponse, AuthError> {
        let max = self.provider.config().max_token_bytes;
        if device_code.is_empty() || device_code.len() > max {
            return Err(AuthError::Invalid(format!(
                "the device code must be 1 to {max} bytes long, not {}",
                device_code.len()
            )));
        }
        match self.provider.poll_device_login(device_code).await? {
            None => Ok(pb::GetAuthTokensResponse::default()),
            Some(tokens) => {
                let claims = self.provider.check(&tokens.access).await?;
                let user = self.user(&claims)?;
                tracing::info!(target: "sepal::audit", user = %user.id, admin = user.admin, "user logged in");
                Ok(pb::GetAuthTokensResponse { access_token: tokens.access, refresh_token: tokens.refresh })
            }
        }
    }
}

impl User {
    /// Whether this user may see, follow and stop `run`.
    ///
    /// # Errors
    /// PERMISSION_DENIED with Flower's words when the run is someone else's.
    pub fn may_use(&self, run: &pb::Run) -> Result<(), Error> {
        if self.admin || (!run.flwr_aid.is_empty() && run.flwr_aid == self.id) {
            return Ok(());
        }
        if run.flwr_aid.is_empty() {
            return Err(Error::PermissionDenied(format!(
                "{NOT_OWNER}: run {} has no owner (it was submitted while user authentication was off); only admins may use it",
                run.run_id
            )));
        }
        Err(Error::PermissionDenied(NOT_OWNER.into()))
    }
}

#[cfg(test)]
mod tests;
