//! Token checks and run ownership against a provider whose discovery and keys are in
//! hand, and whose endpoints cannot be reached (as when it is down). The device flow and
//! refresh against a real provider are in `tests/tests/user_auth.rs`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sepal_proto::pb;
use sepal_proto::pb::exec_server::Exec;
use serde_json::json;
use tonic::{Code, Request};

use super::config::{OidcConfig, UserAuthConfig};
use super::oidc::{Discovery, Provider};
use super::*;
use crate::exec::ExecService;
use crate::link::Link;
use crate::state::memory::MemoryState;
use crate::state::{LinkState, NewRun};

const ISSUER: &str = "https://idp.test/realms/fl";
/// Nothing listens there: every request to the provider fails at once.
const DOWN: &str = "http://127.0.0.1:9";

struct Signer {
    pkcs8: Vec<u8>,
    kid: String,
}

impl Signer {
    fn new(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        Self { pkcs8: Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref().to_vec(), kid: kid.into() }
    }

    fn jwk(&self) -> serde_json::Value {
        let pair = Ed25519KeyPair::from_pkcs8(&self.pkcs8).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"})
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.pkcs8)).unwrap()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(sub: &str) -> serde_json::Value {
    json!({"iss": ISSUER, "sub": sub, "client_id": "sepal", "exp": now() + 300, "iat": now()})
}

fn config() -> UserAuthConfig {
    let text = format!(
        "authentication: {{auth_type: oidc, issuer: '{ISSUER}', client_id: sepal, client_secret: s}}\n\
         authorization: {{authz_type: owner, admins: [alice]}}\n"
    );
    UserAuthConfig::parse(std::path::Path::new("auth.yaml"), &text, true).unwrap()
}

fn users_with(signer: &Signer, oidc: impl FnOnce(&mut OidcConfig)) -> Arc<UserAuth> {
    let mut cfg = config();
    cfg.oidc.http_timeout = Duration::from_secs(2);
    oidc(&mut cfg.oidc);
    let discovery = Discovery {
        issuer: ISSUER.into(),
        jwks_uri: format!("{DOWN}/jwks"),
        token_endpoint: format!("{DOWN}/token"),
        device_authorization_endpoint: Some(format!("{DOWN}/device")),
        userinfo_endpoint: None,
    };
    let keys = serde_json::from_value(json!({"keys": [signer.jwk()]})).unwrap();
    Arc::new(UserAuth { provider: Provider::with_keys(cfg.oidc, discovery, keys), admins: cfg.admins })
}

fn users(signer: &Signer) -> Arc<UserAuth> {
    users_with(signer, |_| {})
}

fn metadata(access: &str, refresh: Option<&str>) -> MetadataMap {
    let mut md = MetadataMap::new();
    md.insert(ACCESS_TOKEN_KEY, access.parse().unwrap());
    if let Some(r) = refresh {
        md.insert(REFRESH_TOKEN_KEY, r.parse().unwrap());
    }
    md
}

async fn status_of(users: &UserAuth, md: &MetadataMap) -> tonic::Status {
    tonic::Status::from(Error::from(users.authenticate(md).await.unwrap_err()))
}

#[tokio::test]
async fn a_valid_token_names_the_user_and_admins_are_known() {
    let signer = Signer::new("k1");
    let users = users(&signer);
    let (alice, renewed) = users.authenticate(&metadata(&signer.sign(&claims("alice")), Some("r"))).await.unwrap();
    assert_eq!(alice, User { id: "alice".into(), admin: true });
    assert!(renewed.is_none());
    let (bob, _) = users.authenticate(&metadata(&signer.sign(&claims("bob")), None)).await.unwrap();
    assert_eq!(bob, User { id: "bob".into(), admin: false });
}

#[tokio::test]
async fn a_call_without_tokens_is_told_to_log_in() {
    let users = users(&Signer::new("k1"));
    let status = status_of(&users, &MetadataMap::new()).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("run `flwr login`"), "{}", status.message());
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused() {
    let signer = Signer::new("k1");
    let users = users(&signer);
    let refused = |token: String| {
        let users = users.clone();
        async move {
            let status = status_of(&users, &metadata(&token, Some("refresh"))).await;
            assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
            status.message().to_string()
        }
    };
    // Signed by another key that claims the provider's key id.
    let forger = Signer::new("k1");
    assert!(refused(forger.sign(&claims("alice"))).await.contains("signature does not verify"));
    // Signed by a key the provider does not have (and its keys cannot be fetched again:
    // the cached ones are kept).
    assert!(refused(Signer::new("k2").sign(&claims("alice")))
        .await
        .contains("key the identity provider does not have"));
    // Another issuer, another client.
    let mut other = claims("alice");
    other["iss"] = json!("https://evil.test");
    assert!(refused(signer.sign(&other)).await.contains("another issuer"));
    let mut other = claims("alice");
    other["client_id"] = json!("someone-else");
    assert!(refused(signer.sign(&other)).await.contains("issued to another client"));
    // A symmetric algorithm, with the public key as the secret.
    let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims("alice"), &EncodingKey::from_secret(b"k"))
        .unwrap();
    assert!(refused(hs).await.contains("not accepted"));
    // Unsigned ("alg": "none"), garbage, and an `exp` that is not a number.
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims("alice").to_string())
    );
    assert!(refused(none).await.contains("not a valid JWT"));
    assert!(refused("a.b.c".into()).await.contains("not a valid JWT"));
    let mut text_exp = claims("alice");
    text_exp["exp"] = json!("9999999999");
    refused(signer.sign(&text_exp)).await;
    // No user claim.
    let mut anonymous = claims("alice");
    anonymous.as_object_mut().unwrap().remove("sub");
    assert!(refused(signer.sign(&anonymous)).await.contains("no `sub` claim"));
}

#[tokio::test]
async fn an_expired_token_without_a_way_to_renew_it_is_refused() {
    let signer = Signer::new("k1");
    let users = users(&signer);
    let mut old = claims("alice");
    old["exp"] = json!(now() - 60);
    let expired = signer.sign(&old);
    // No refresh token: log in again.
    let status = status_of(&users, &metadata(&expired, None)).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
    // A refresh token, but the provider is down: try again later.
    let status = status_of(&users, &metadata(&expired, Some("refresh"))).await;
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("cannot reach"), "{}", status.message());
}

#[tokio::test]
async fn the_configured_audience_is_required() {
    let signer = Signer::new("k1");
    let users = users_with(&signer, |c| c.audience = Some("sepal-exec".into()));
    let mut aud = claims("alice");
    aud["aud"] = json!("sepal-exec");
    aud.as_object_mut().unwrap().remove("client_id");
    assert!(users.authenticate(&metadata(&signer.sign(&aud), None)).await.is_ok());
    let status = status_of(&users, &metadata(&signer.sign(&claims("alice")), None)).await;
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn overlong_tokens_are_refused_before_any_check() {
    let users = users_with(&Signer::new("k1"), |c| c.max_token_bytes = 100);
    let status = status_of(&users, &metadata(&"x".repeat(101), None)).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("max_token_bytes"), "{}", status.message());
}

#[tokio::test]
async fn a_login_with_the_provider_down_fails_with_the_reason() {
    let users = users(&Signer::new("k1"));
    let status = tonic::Status::from(Error::from(users.login_details().await.unwrap_err()));
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("identity provider") && status.message().contains("127.0.0.1:9"));
    let e = users.auth_tokens("").await.unwrap_err();
    assert!(e.to_string().contains("device code must be"), "{e}");
}

fn run(owner: &str) -> NewRun {
    NewRun {
        fab_id: "sepal/test".into(),
        fab_version: "1.0.0".into(),
        fab_hash: "00".repeat(32),
        override_config: Default::default(),
        federation_options: Default::default(),
        flwr_aid: owner.into(),
    }
}

fn request<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    *req.metadata_mut() = metadata(token, Some("refresh"));
    req
}

#[tokio::test]
async fn users_see_and_stop_their_own_runs_and_admins_all() {
    let signer = Signer::new("k1");
    let state: Arc<dyn LinkState> = Arc::new(MemoryState::new());
    let bobs = state.create_run(run("bob")).unwrap();
    let carols = state.create_run(run("carol")).unwrap();
    let unowned = state.create_run(run("")).unwrap();
    let exec = ExecService::with_users(Link::new(state, Default::default()), Some(users(&signer)));
    let (alice, bob) = (signer.sign(&claims("alice")), signer.sign(&claims("bob")));

    let listed = |token: String| {
        let exec = &exec;
        async move {
            let runs = exec.list_runs(request(pb::ListRunsRequest { run_id: None }, &token)).await.unwrap();
            let mut ids: Vec<u64> = runs.into_inner().run_dict.into_keys().collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(listed(bob.clone()).await, vec![bobs]);
    let mut all = vec![bobs, carols, unowned];
    all.sort();
    assert_eq!(listed(alice.clone()).await, all);

    // Another user's run, and a run from before authentication, are refused to bob.
    for other in [carols, unowned] {
        let e = exec.list_runs(request(pb::ListRunsRequest { run_id: Some(other) }, &bob)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().starts_with(NOT_OWNER), "{}", e.message());
        let e = exec.stop_run(request(pb::StopRunRequest { run_id: other }, &bob)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let logs = pb::StreamLogsRequest { run_id: other, after_timestamp: 0.0 };
        let e = exec.stream_logs(request(logs, &bob)).await.err().unwrap();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    // Unknown runs are still NOT_FOUND.
    let e = exec.stop_run(request(pb::StopRunRequest { run_id: 4242 }, &bob)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Bob stops his own; alice (admin) stops carol's.
    assert!(exec.stop_run(request(pb::StopRunRequest { run_id: bobs }, &bob)).await.unwrap().into_inner().success);
    assert!(exec.stop_run(request(pb::StopRunRequest { run_id: carols }, &alice)).await.unwrap().into_inner().success);
    // Without tokens, nothing.
    let e = exec.list_runs(Request::new(pb::ListRunsRequest { run_id: None })).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn with_authentication_off_the_login_calls_are_unimplemented_and_runs_open() {
    let state: Arc<dyn LinkState> = Arc::new(MemoryState::new());
    let id = state.create_run(run("")).unwrap();
    let exec = ExecService::new(Link::new(state, Default::default()));
    let e = exec.get_login_details(Request::new(pb::GetLoginDetailsRequest {})).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let runs = exec.list_runs(Request::new(pb::ListRunsRequest { run_id: None })).await.unwrap().into_inner();
    assert!(runs.run_dict.contains_key(&id));
}
