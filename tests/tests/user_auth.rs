//! User authentication on the Exec API (`--user-auth-config`) with a real OpenID provider
//! (tests/oidc: `oidc-provider` on loopback, TLS, device flow, access tokens valid for
//! [`ACCESS_TTL`] seconds, rotating refresh tokens, users alice (admin), bob and carol) and
//! the real `flwr` 1.20 CLI: `flwr login` with the user signing in on the provider's pages,
//! then run, ls, log and stop as each user.
//!
//! Needs `cargo build -p sepal-cli`, the venv from scripts/python-env.sh and
//! `npm ci --prefix tests/oidc` (scripts/test.sh does all three).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use sepal_tests::federation::Impl;
use sepal_tests::flwr::CliOutput;
use sepal_tests::flwr::FEDERATION;
use sepal_tests::oidc::{credentials_path, login, login_with, OidcProvider};
use sepal_tests::{sepal_bin, Federation, Flwr, EXAMPLE};

/// Seconds an access token is valid.
const ACCESS_TTL: u32 = 12;

const LOGIN_TIMEOUT: Duration = Duration::from_secs(90);

fn printed(out: &CliOutput) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

fn run_ids(flwr: &Flwr) -> BTreeSet<u64> {
    flwr.ls().unwrap().into_iter().map(|r| r.run_id).collect()
}

fn read_credentials(flwr: &Flwr) -> serde_json::Value {
    let text = std::fs::read_to_string(credentials_path(flwr)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn write_credentials(flwr: &Flwr, access: &str, refresh: &str) {
    let json = serde_json::json!({
        "auth-type": "oidc",
        "flwr-oidc-access-token": access,
        "flwr-oidc-refresh-token": refresh,
    });
    std::fs::write(credentials_path(flwr), json.to_string()).unwrap();
}

fn access_token(flwr: &Flwr) -> String {
    read_credentials(flwr)["flwr-oidc-access-token"].as_str().unwrap().to_string()
}

/// `flwr ls` refused for want of valid tokens.
fn assert_refused(flwr: &Flwr, why: &str) {
    let out = flwr.exec("ls", &[], &[]).unwrap();
    let text = printed(&out);
    assert!(text.contains("Authentication failed") && text.contains("flwr login"), "{why}: flwr ls printed {text}");
}

/// Replaces the payload of a JWT, keeping its header and signature.
fn tampered(token: &str, from: &str, to: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(engine.decode(parts[1]).unwrap()).unwrap();
    assert!(payload.contains(from), "{payload}");
    format!("{}.{}.{}", parts[0], engine.encode(payload.replace(from, to)), parts[2])
}

fn logged_in(flwr: &Flwr, user: &str, ca: &Path) {
    let out = login(flwr, Some(user), ca, LOGIN_TIMEOUT).unwrap();
    assert!(printed(&out).contains("Login successful"), "flwr login as {user}: {}", printed(&out));
    assert!(credentials_path(flwr).is_file(), "no credentials saved for {user}");
}

#[test]
fn flwr_login_then_each_user_runs_sees_and_stops_only_their_own_runs() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let certs = sepal_tests::kit::make_certs(dir.path()).files;
    let mut provider = OidcProvider::start(dir.path(), &certs, ACCESS_TTL).unwrap();
    let config = provider.write_config(dir.path(), &["alice"], "").unwrap();
    let database = dir.path().join("state.db");
    let mut fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernodes(0)
        .tls(certs.clone())
        .superlink_arg("--user-auth-config")
        .superlink_arg(config.display().to_string())
        .superlink_arg("--database")
        .superlink_arg(database.display().to_string())
        .start()
        .unwrap();
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|_| {
        let flwr = fed.flwr(EXAMPLE).unwrap();
        flwr.enable_user_auth().unwrap();
        flwr
    });

    // Before logging in: the CLI has no tokens to send, and the SuperLink refuses a call
    // without them.
    let out = bob.exec("ls", &[], &[]).unwrap();
    assert!(printed(&out).contains("flwr login"), "flwr ls before login: {}", printed(&out));
    let e = sepal_tests::flwr::list_run(fed.exec_addr(), 1, Some(certs.ca.as_path())).unwrap_err();
    assert!(format!("{e:#}").contains("flwr login"), "{e:#}");

    // The three log in at once, each signing in on the provider's pages.
    std::thread::scope(|s| {
        for (flwr, user) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
            let ca = &certs.ca;
            s.spawn(move || logged_in(flwr, user, ca));
        }
    });

    // Each submits a run; each sees their own; the admin sees both.
    let bobs = bob.run(&[]).unwrap();
    let carols = carol.run(&[]).unwrap();
    assert_eq!(run_ids(&bob), BTreeSet::from([bobs]));
    assert_eq!(run_ids(&carol), BTreeSet::from([carols]));
    assert!(run_ids(&alice).is_superset(&BTreeSet::from([bobs, carols])));

    // Bob can neither read, list nor stop carol's run.
    let id = carols.to_string();
    let out = bob.exec("log", &[&id], &["--show"]).unwrap();
    assert!(printed(&out).contains("Run ID does not belong to the user"), "flwr log: {}", printed(&out));
    let e = bob.stop(carols).unwrap_err();
    assert!(format!("{e:#}").contains("does not belong"), "flwr stop: {e:#}");
    let e = bob.run_info(carols).unwrap_err();
    assert!(format!("{e:#}").contains("does not belong"), "flwr ls --run-id: {e:#}");
    // His own he can; the admin stops carol's.
    bob.log_show(bobs).unwrap();
    bob.stop(bobs).unwrap();
    alice.stop(carols).unwrap();

    // Tokens that are not the provider's are refused: a payload changed under the
    // signature, and garbage.
    let good = read_credentials(&bob);
    let refresh = good["flwr-oidc-refresh-token"].as_str().unwrap().to_string();
    write_credentials(&bob, &tampered(&access_token(&bob), "\"sub\":\"bob\"", "\"sub\":\"alice\""), &refresh);
    assert_refused(&bob, "a token whose payload was changed");
    write_credentials(&bob, "not-a-token", "not-a-token");
    assert_refused(&bob, "garbage tokens");
    std::fs::write(credentials_path(&bob), good.to_string()).unwrap();

    // Runs keep their owners across a restart on --database.
    fed.restart_superlink().unwrap();
    assert_eq!(run_ids(&bob), BTreeSet::from([bobs]));
    assert!(run_ids(&alice).is_superset(&BTreeSet::from([bobs, carols])));
    assert_eq!(bob.run_info(bobs).unwrap().status, "finished:stopped");

    // Once the access token has expired, the SuperLink renews it on the way, and the CLI
    // saves the new pair; an expired token without a usable refresh token is refused.
    let before = read_credentials(&bob);
    let expired = before["flwr-oidc-access-token"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(u64::from(ACCESS_TTL) + 2));
    assert_eq!(run_ids(&bob), BTreeSet::from([bobs]));
    let after = read_credentials(&bob);
    assert_ne!(after["flwr-oidc-access-token"], before["flwr-oidc-access-token"], "the access token was not renewed");
    assert_ne!(after["flwr-oidc-refresh-token"], before["flwr-oidc-refresh-token"], "the refresh token did not rotate");

    write_credentials(&bob, &expired, "not-a-refresh-token");
    assert_refused(&bob, "an expired access token without a usable refresh token");
    std::fs::write(credentials_path(&bob), after.to_string()).unwrap();

    // The provider goes down: calls with valid tokens go on (its keys are cached), a new
    // login fails.
    provider.stop();
    assert_eq!(run_ids(&bob), BTreeSet::from([bobs]));
    let out = login(&carol, None, &certs.ca, LOGIN_TIMEOUT).unwrap();
    assert!(!printed(&out).contains("Login successful"), "login with the provider down: {}", printed(&out));
    assert!(!out.status.success(), "flwr login succeeded with the provider down: {}", printed(&out));
    let log = sepal_tests::flwr::strip_ansi(&fed.superlink_proc().unwrap().log());
    assert!(log.contains("cannot use its identity provider"), "the SuperLink did not log why the login failed");
    // Every call is in the audit log with its user.
    assert!(
        log.contains("sepal::audit") && log.contains("user=bob") && log.contains("call=\"ListRuns\""),
        "no audit lines"
    );
    eprintln!("user authentication with flwr: {:?}", started.elapsed());
}

/// `sepal login` writes the file `flwr` reads, and `sepal ls/stop` use the tokens `flwr`
/// renewed: one login serves both CLIs.
#[test]
fn sepal_login_and_flwr_share_one_login() {
    let dir = tempfile::tempdir().unwrap();
    let certs = sepal_tests::kit::make_certs(dir.path()).files;
    let provider = OidcProvider::start(dir.path(), &certs, ACCESS_TTL).unwrap();
    let config = provider.write_config(dir.path(), &[], "").unwrap();
    let fed = Federation::builder()
        .superlink(Impl::Sepal)
        .supernodes(0)
        .tls(certs.clone())
        .superlink_arg("--user-auth-config")
        .superlink_arg(config.display().to_string())
        .start()
        .unwrap();
    let flwr = fed.flwr(EXAMPLE).unwrap();
    flwr.enable_user_auth().unwrap();
    let sepal = |args: &[&str]| {
        let mut cmd = std::process::Command::new(sepal_bin());
        cmd.args(args).arg(flwr.app_dir()).arg(FEDERATION);
        cmd
    };

    // Not logged in yet: sepal says how to.
    let out = sepal(&["ls"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("sepal login"), "sepal ls before login: {text}");

    let out = login_with(sepal(&["login"]), Some("carol"), &certs.ca, LOGIN_TIMEOUT).unwrap();
    assert!(out.status.success() && out.stdout.contains("Login successful"), "sepal login: {}", printed(&out));
    // flwr uses sepal's login.
    let run_id = flwr.run(&[]).unwrap();
    // sepal sees and stops carol's run, after the access token expired (renewed on the way).
    std::thread::sleep(Duration::from_secs(u64::from(ACCESS_TTL) + 2));
    let before = read_credentials(&flwr);
    let out = sepal(&["ls", "--format", "json"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&format!("\"run-id\": {run_id}")), "sepal ls: {text}");
    assert_ne!(read_credentials(&flwr), before, "sepal did not save the renewed tokens");
    let id = run_id.to_string();
    let mut stop = std::process::Command::new(sepal_bin());
    stop.args(["stop", &id]).arg(flwr.app_dir()).arg(FEDERATION);
    let out = stop.output().unwrap();
    assert!(out.status.success(), "sepal stop: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(flwr.run_info(run_id).unwrap().status, "finished:stopped");
}
