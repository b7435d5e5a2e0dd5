//! `sepal login`: log in to a SuperLink that authenticates users (`flwr login`).
//!
//! The SuperLink starts a device login at its identity provider and says where to sign
//! in; this prints that address and asks the SuperLink, every `interval` seconds, whether
//! the sign-in is done. The tokens are saved where `flwr login` saves them, so `flwr` and
//! `sepal` share the login.

use std::time::{Duration, Instant};

use anyhow::bail;
use sepal_proto::pb;

use crate::exec::credentials::{save, Tokens, OIDC};
use crate::exec::{AppFederationArgs, Exec, ExecTarget};
use crate::output::out;

/// Shortest and longest wait between two polls, whatever the SuperLink says.
const POLL_BOUNDS: (u64, u64) = (1, 60);

/// Longest a login is waited for, whatever the SuperLink says.
const MAX_LOGIN: Duration = Duration::from_secs(3600);

/// `flwr login` arguments.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    federation: AppFederationArgs,
}

impl LoginArgs {
    /// Logs in and saves the tokens.
    pub async fn run(self) -> anyhow::Result<()> {
        if self.federation.federation.superlink.is_some() {
            bail!("sepal login needs a federation of the app's pyproject.toml (with enable-user-auth = true), not --superlink");
        }
        let federation = self.federation.federation.resolve(&self.federation.app)?;
        let name = federation.name.clone().unwrap_or_default();
        let Some(path) = federation.address.credentials.clone() else {
            bail!(
                "user authentication is not enabled for the federation `{name}`: \
                 set enable-user-auth = true in its [tool.flwr.federations.{name}] table"
            );
        };
        // The login calls need no tokens.
        let mut exec = Exec::connect(ExecTarget { credentials: None, ..federation.address }).await?;
        let details = exec
            .client
            .get_login_details(pb::GetLoginDetailsRequest {})
            .await
            .map_err(|s| exec.error(&s, "the SuperLink could not start a login"))?
            .into_inner();
        if details.auth_type != OIDC {
            bail!("the SuperLink asks for authentication type {:?}; sepal supports {OIDC:?}", details.auth_type);
        }
        out(&format!("Please log in here: {}\n", details.verification_uri_complete))?;
        let interval =
            Duration::from_secs(u64::try_from(details.interval).unwrap_or(0).clamp(POLL_BOUNDS.0, POLL_BOUNDS.1));
        let expires = Duration::from_secs(u64::try_from(details.expires_in).unwrap_or(0)).min(MAX_LOGIN);
        let deadline = Instant::now() + expires;
        loop {
            tokio::time::sleep(interval).await;
            if Instant::now() > deadline {
                bail!("the login expired before the sign-in was done; run `sepal login` again");
            }
            let reply = exec
                .client
                .get_auth_tokens(pb::GetAuthTokensRequest { device_code: details.device_code.clone() })
                .await
                .map_err(|s| exec.error(&s, "the login failed"))?
                .into_inner();
            if !reply.access_token.is_empty() && !reply.refresh_token.is_empty() {
                save(&path, &Tokens { access: reply.access_token, refresh: reply.refresh_token })?;
                return out(&format!("Login successful. The tokens are in {}\n", path.display()));
            }
        }
    }
}
