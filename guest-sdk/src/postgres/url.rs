//! Connection URLs: `postgres://user[:password]@host[:port][/dbname][?sslmode=disable]`.

use std::fmt;
use std::net::IpAddr;

use super::PgError;

/// PostgreSQL's default port.
pub const DEFAULT_PORT: u16 = 5432;

/// What a connection URL names. The password is kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// The host: an IP address or a name (brackets of an IPv6 literal removed).
    pub host: String,
    /// The port (5432 unless given).
    pub port: u16,
    /// The role to log in as.
    pub user: String,
    /// The password, if the URL has one.
    pub password: Option<String>,
    /// The database (the user's name unless given, as libpq does).
    pub dbname: String,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("dbname", &self.dbname)
            .finish()
    }
}

impl ConnectParams {
    /// Parses a `postgres://` or `postgresql://` URL. A Wasm app has no login name, so
    /// the user is required; TLS is not offered, so only `sslmode=disable`, `allow` or
    /// `prefer` are accepted.
    pub fn parse(url: &str) -> Result<ConnectParams, PgError> {
        let bad = |reason: &str| PgError::Url { url: redact(url), reason: reason.to_string() };
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| bad("it must start with postgres:// or postgresql://"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority.rsplit_once('@').ok_or_else(|| bad("it names no user (user@host)"))?;
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (decode(u).map_err(|r| bad(&r))?, Some(decode(p).map_err(|r| bad(&r))?)),
            None => (decode(userinfo).map_err(|r| bad(&r))?, None),
        };
        if user.is_empty() {
            return Err(bad("the user name is empty"));
        }
        let (host, port) = split_host_port(hostport).map_err(|r| bad(&r))?;
        let dbname = match decode(path).map_err(|r| bad(&r))? {
            name if name.is_empty() => user.clone(),
            name => name,
        };
        check_query(query).map_err(|r| bad(&r))?;
        Ok(ConnectParams { host, port, user, password, dbname })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The URL with its password (if any) replaced, for error messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_string(),
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an IPv6 host lacks its closing ]")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse().map_err(|_| format!("the port {p:?} is not a number from 0 to 65535"))?,
    };
    Ok((host.to_string(), port))
}

fn check_query(query: &str) -> Result<(), String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", "disable" | "allow" | "prefer")) => {}
            Some(("sslmode", mode)) => {
                return Err(format!("sslmode={mode} needs TLS, which this client does not offer"));
            }
            _ => return Err(format!("the parameter {pair:?} is not supported (only sslmode=disable)")),
        }
    }
    Ok(())
}

/// Percent-decoding (`%40` -> `@`), as URLs need for user names and passwords.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("a % escape is cut short")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("%{hex} is not a percent escape"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a percent escape is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_minimal_urls() {
        let p = ConnectParams::parse("postgresql://fl:s%40cret@10.0.0.7:6543/site_a?sslmode=disable").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.user.as_str()), ("10.0.0.7", 6543, "fl"));
        assert_eq!((p.password.as_deref(), p.dbname.as_str()), (Some("s@cret"), "site_a"));
        assert_eq!(p.addr(), "10.0.0.7:6543");

        let p = ConnectParams::parse("postgres://fl@127.0.0.1").unwrap();
        assert_eq!((p.port, p.password, p.dbname.as_str()), (DEFAULT_PORT, None, "fl"));

        let p = ConnectParams::parse("postgres://fl@[::1]:5433/db").unwrap();
        assert_eq!((p.host.as_str(), p.addr()), ("::1", "[::1]:5433".to_string()));
    }

    #[test]
    fn bad_urls_say_what_is_wrong_and_hide_the_password() {
        let reason = |url: &str| match ConnectParams::parse(url) {
            Err(PgError::Url { reason, url }) => format!("{url}: {reason}"),
            other => panic!("{url}: {other:?}"),
        };
        assert!(reason("mysql://fl@h/db").contains("postgres://"));
        assert!(reason("postgres://127.0.0.1/db").contains("no user"));
        assert!(reason("postgres://fl@h:99999/db").contains("port"));
        assert!(reason("postgres://fl@:5432/db").contains("host is empty"));
        assert!(reason("postgres://fl@h/db?sslmode=require").contains("TLS"));
        assert!(reason("postgres://fl@h/db?connect_timeout=3").contains("not supported"));
        let msg = reason("postgres://fl:topsecret@h:x/db");
        assert!(!msg.contains("topsecret") && msg.contains("fl:***@h:x/db"), "{msg}");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let p = ConnectParams::parse("postgres://fl:topsecret@127.0.0.1/db").unwrap();
        assert!(!format!("{p:?}").contains("topsecret"));
    }
}
