//! User authentication on the client side: the tokens `sepal login` (or `flwr login`)
//! saved, sent with every Exec call, and replaced when the SuperLink hands back renewed
//! ones.
//!
//! The file is `flwr`'s, at the same place and in the same layout
//! (`<app>/.flwr/.credentials/<federation>.json`, keys `auth-type`,
//! `flwr-oidc-access-token`, `flwr-oidc-refresh-token`), so a login with either CLI serves
//! both.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::{bail, Context as _};
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tonic::codegen::Service;
use tonic::transport::Channel;

/// The metadata key of the access token (Flower's).
pub const ACCESS_TOKEN_KEY: &str = "flwr-oidc-access-token";
/// The metadata key of the refresh token (Flower's).
pub const REFRESH_TOKEN_KEY: &str = "flwr-oidc-refresh-token";
/// The JSON key naming the authentication type (Flower's).
const AUTH_TYPE_KEY: &str = "auth-type";
/// The only authentication type.
pub const OIDC: &str = "oidc";

/// A pair of tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

/// Where a federation's tokens are kept: `<app>/.flwr/.credentials/<federation>.json`.
pub fn credentials_path(app_dir: &Path, federation: &str) -> PathBuf {
    app_dir.join(".flwr").join(".credentials").join(format!("{federation}.json"))
}

/// Reads the tokens at `path`.
///
/// # Errors
/// The file is missing or not a login's.
pub fn load(path: &Path) -> anyhow::Result<Tokens> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("not logged in: {} does not exist; run `sepal login` (or `flwr login`) first", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON; run `sepal login` again", path.display()))?;
    let get = |key: &str| json.get(key).and_then(serde_json::Value::as_str).map(str::to_string);
    match (get(AUTH_TYPE_KEY).as_deref(), get(ACCESS_TOKEN_KEY), get(REFRESH_TOKEN_KEY)) {
        (Some(OIDC), Some(access), Some(refresh)) => Ok(Tokens { access, refresh }),
        (Some(other), _, _) if other != OIDC => {
            bail!("{}: authentication type {other:?} is not supported (only {OIDC:?})", path.display())
        }
        _ => bail!("{} holds no tokens; run `sepal login` (or `flwr login`) again", path.display()),
    }
}

/// Writes `tokens` to `path` as `flwr` does, creating `.flwr/.credentials` and a
/// `.flwr/.gitignore` that keeps the tokens out of git.
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, tokens: &Tokens) -> anyhow::Result<()> {
    let dir = path.parent().context("credentials path without a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(flwr_dir) = dir.parent() {
        let gitignore = flwr_dir.join(".gitignore");
        if !gitignore.exists() {
            std::fs::write(&gitignore, ".credentials\n")
                .with_context(|| format!("cannot write {}", gitignore.display()))?;
        }
    }
    let json = serde_json::json!({
        AUTH_TYPE_KEY: OIDC,
        ACCESS_TOKEN_KEY: tokens.access,
        REFRESH_TOKEN_KEY: tokens.refresh,
    });
    let text = serde_json::to_string_pretty(&json).expect("JSON of strings");
    write_private(path, &text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a file only its owner may read (it holds tokens).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

/// A logged-in session: the tokens in use and the file they are kept in.
#[derive(Debug)]
pub struct Session {
    path: PathBuf,
    tokens: Mutex<Tokens>,
}

impl Session {
    /// The session whose tokens are at `path`.
    ///
    /// # Errors
    /// See [`load`].
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let tokens = load(&path)?;
        Ok(Self { path, tokens: Mutex::new(tokens) })
    }

    fn current(&self) -> Tokens {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the tokens a reply carries, if it carries both (the SuperLink renewed them).
    fn renewed(&self, headers: &HeaderMap) {
        let get = |key: &str| headers.get(key).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let (Some(access), Some(refresh)) = (get(ACCESS_TOKEN_KEY), get(REFRESH_TOKEN_KEY)) {
            let tokens = Tokens { access, refresh };
            *self.tokens.lock().unwrap_or_else(|e| e.into_inner()) = tokens.clone();
            if let Err(e) = save(&self.path, &tokens) {
                eprintln!("warning: the SuperLink renewed the login, but the new tokens cannot be saved: {e:#}");
            }
        }
    }
}

/// The channel to the Exec API: sends the session's tokens with every call and keeps
/// renewed ones (without a session, calls go out as they are).
#[derive(Debug, Clone)]
pub struct AuthChannel {
    inner: Channel,
    session: Option<Arc<Session>>,
}

impl AuthChannel {
    /// `inner`, with `session`'s tokens if there is one.
    pub fn new(inner: Channel, session: Option<Arc<Session>>) -> Self {
        Self { inner, session }
    }
}

type Request = http::Request<tonic::body::Body>;
type Response = http::Response<tonic::body::Body>;

impl Service<Request> for AuthChannel {
    type Response = Response;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if let Some(session) = &self.session {
            let tokens = session.current();
            let headers = request.headers_mut();
            // Tokens come from our own file; ones that are not ASCII are left out, and the
            // SuperLink says to log in again.
            if let (Ok(access), Ok(refresh)) =
                (HeaderValue::from_str(&tokens.access), HeaderValue::from_str(&tokens.refresh))
            {
                headers.insert(ACCESS_TOKEN_KEY, access);
                headers.insert(REFRESH_TOKEN_KEY, refresh);
            }
        }
        let call = self.inner.call(request);
        let session = self.session.clone();
        Box::pin(async move {
            let response = call.await?;
            if let Some(session) = session {
                session.renewed(response.headers());
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_in_flwrs_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = credentials_path(dir.path(), "fed");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("not logged in") && e.contains("sepal login"), "{e}");
        let tokens = Tokens { access: "a".into(), refresh: "r".into() };
        save(&path, &tokens).unwrap();
        assert_eq!(load(&path).unwrap(), tokens);
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["auth-type"], "oidc");
        assert_eq!(json["flwr-oidc-access-token"], "a");
        assert_eq!(std::fs::read_to_string(dir.path().join(".flwr/.gitignore")).unwrap(), ".credentials\n");
        std::fs::write(&path, r#"{"auth-type": "oidc"}"#).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("holds no tokens"));
    }

    #[test]
    fn renewed_tokens_replace_the_saved_ones_only_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let path = credentials_path(dir.path(), "fed");
        save(&path, &Tokens { access: "a".into(), refresh: "r".into() }).unwrap();
        let session = Session::open(path.clone()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(ACCESS_TOKEN_KEY, HeaderValue::from_static("a2"));
        session.renewed(&headers);
        assert_eq!(load(&path).unwrap().access, "a");
        headers.insert(REFRESH_TOKEN_KEY, HeaderValue::from_static("r2"));
        session.renewed(&headers);
        assert_eq!(load(&path).unwrap(), Tokens { access: "a2".into(), refresh: "r2".into() });
        assert_eq!(session.current().refresh, "r2");
    }
}
