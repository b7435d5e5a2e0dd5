//! A real OpenID provider for the user authentication tests: `tests/oidc/server.mjs`, the
//! certified `oidc-provider` package (pinned by `tests/oidc/package-lock.json`, installed
//! with `npm ci --prefix tests/oidc`, which scripts/test.sh runs), on loopback with TLS.
//! It has three users, `alice`, `bob` and `carol` (password: the name and `-pw`), the
//! device flow, short-lived JWT access tokens and rotating refresh tokens.
//!
//! [`login`] drives the real `flwr login` and signs in on the provider's pages as a user
//! would in a browser (`tests/oidc/browse.mjs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::federation::TlsFiles;
use crate::flwr::{strip_ansi, CliOutput, Flwr, FEDERATION};
use crate::{free_port, repo_root, Proc};

/// The SuperLink's client at the provider.
pub const CLIENT_ID: &str = "sepal";
/// Its secret.
pub const CLIENT_SECRET: &str = "sepal-test-secret";

/// Where the provider's files are.
pub fn oidc_dir() -> PathBuf {
    repo_root().join("tests").join("oidc")
}

/// A running provider; stopped when dropped.
pub struct OidcProvider {
    proc: Option<Proc>,
    issuer: String,
    ca: PathBuf,
}

impl OidcProvider {
    /// Starts the provider on a free loopback port with TLS from `tls` (its certificate
    /// must name 127.0.0.1), issuing access tokens valid for `access_ttl` seconds; its log
    /// goes to `<log_dir>/oidc-provider.log`.
    pub fn start(log_dir: &Path, tls: &TlsFiles, access_ttl: u32) -> Result<Self> {
        let dir = oidc_dir();
        if !dir.join("node_modules").join("oidc-provider").is_dir() {
            bail!("the test OpenID provider is not installed: run `npm ci --prefix tests/oidc` (scripts/test.sh does)");
        }
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("TLS_CERT", &tls.cert)
            .env("TLS_KEY", &tls.key)
            .env("ACCESS_TOKEN_TTL", access_ttl.to_string());
        let mut proc = Proc::spawn("oidc-provider", cmd, log_dir)?;
        proc.wait_for_log("listening https://", Duration::from_secs(30))?;
        Ok(Self { proc: Some(proc), issuer: format!("https://127.0.0.1:{port}"), ca: tls.ca.clone() })
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Stops the provider (as if it went down).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(2));
        }
    }

    /// Writes a `--user-auth-config` file for this provider into `dir`, with `admins`,
    /// trusting the test CA; `extra` lines go into the `authentication` section.
    pub fn write_config(&self, dir: &Path, admins: &[&str], extra: &str) -> Result<PathBuf> {
        let path = dir.join("user-auth.yaml");
        let text = format!(
            "authentication:\n  auth_type: oidc\n  issuer: {}\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  \
             ca_file: {}\n  clock_skew_seconds: 1\n{extra}authorization:\n  authz_type: owner\n  admins: [{}]\n",
            self.issuer,
            self.ca.display(),
            admins.join(", ")
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The CA the provider's certificate is signed by.
    pub fn ca(&self) -> &Path {
        &self.ca
    }
}

/// Signs `user` in on the provider's verification pages at `url`, as a browser would.
pub fn sign_in(url: &str, user: &str, ca: &Path) -> Result<()> {
    let out = Command::new("node")
        .arg(oidc_dir().join("browse.mjs"))
        .args([url, user, &format!("{user}-pw")])
        .env("NODE_EXTRA_CA_CERTS", ca)
        .stdin(Stdio::null())
        .output()
        .context("starting node browse.mjs")?;
    if !out.status.success() {
        bail!(
            "signing {user} in at {url} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Where `flwr` keeps the tokens of `flwr`'s federation after a login.
pub fn credentials_path(flwr: &Flwr) -> PathBuf {
    flwr.app_dir().join(".flwr").join(".credentials").join(format!("{FEDERATION}.json"))
}

/// `flwr login`, with `user` signing in on the page it prints (if `sign_in_as` is
/// `Some`); returns what the CLI printed once it exits.
pub fn login(flwr: &Flwr, sign_in_as: Option<&str>, ca: &Path, timeout: Duration) -> Result<CliOutput> {
    login_with(flwr.command("login", &[], &[]), sign_in_as, ca, timeout)
}

/// Runs a login command (`flwr login`, `sepal login`); the first address it prints is
/// where `sign_in_as` signs in.
pub fn login_with(mut cmd: Command, sign_in_as: Option<&str>, ca: &Path, timeout: Duration) -> Result<CliOutput> {
    cmd.env("PYTHONUNBUFFERED", "1").stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting flwr login")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + timeout;
    let mut signed = None;
    if let Some(user) = sign_in_as {
        while Instant::now() < deadline {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let line = strip_ansi(&line);
                    if let Some(url) = line.split_whitespace().find(|w| w.starts_with("https://")) {
                        signed = Some(sign_in(url, user, ca));
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = CliOutput {
        status,
        stdout: strip_ansi(&reader.join().unwrap_or_default()),
        stderr: errors.join().unwrap_or_default(),
    };
    if let Some(Err(e)) = signed {
        bail!("{e:#}\nflwr login printed:\n{}{}", out.stdout, out.stderr);
    }
    Ok(out)
}
