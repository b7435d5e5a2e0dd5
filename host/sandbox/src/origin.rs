//! [`Origin`]: what an HTTP grant names (`scheme://host[:port]`), and the origin a guest's
//! request goes to, compared the same way.

use std::fmt;

/// An HTTP origin: scheme (`http` or `https`), host (lower case; an IPv6 address in
/// brackets) and port (80 / 443 when not written).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host name or address, lower case.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

impl Origin {
    /// Parses an operator's `scheme://host[:port]`. A path other than `/`, a query, a
    /// fragment or user info is an error: a grant is for a whole origin, nothing less.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let uri: http::Uri = text.parse().map_err(|e| format!("not a URL ({e}); expected scheme://host[:port]"))?;
        if text.contains('#') {
            return Err("a fragment is not part of an origin; expected scheme://host[:port]".into());
        }
        let path = uri.path_and_query().map_or("", |p| p.as_str());
        if !(path.is_empty() || path == "/") {
            return Err(format!("{path:?} is not part of an origin; expected scheme://host[:port]"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("user info is not part of an origin; expected scheme://host[:port]".into());
        }
        Origin::of(&uri).ok_or_else(|| "expected scheme://host[:port] with scheme http or https".into())
    }

    /// The origin a request URI addresses; `None` when it has no http(s) scheme or no host.
    pub fn of(uri: &http::Uri) -> Option<Origin> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = uri.authority()?;
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(Origin { scheme, host, port: authority.port_u16().unwrap_or(default_port) })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Origin {
        Origin::parse(text).unwrap()
    }

    #[test]
    fn origins_parse_with_default_ports_and_case_folded() {
        assert_eq!(origin("http://127.0.0.1:5000").to_string(), "http://127.0.0.1:5000");
        assert_eq!(origin("HTTP://MLflow.Internal/").to_string(), "http://mlflow.internal:80");
        assert_eq!(origin("https://example.org").port, 443);
        assert_eq!(origin("http://[::1]:8080").host, "[::1]");
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        for bad in [
            "127.0.0.1:5000",
            "ftp://host",
            "http://host/api",
            "http://host?x=1",
            "http://user@host",
            "http://host#top",
            "http://",
            "",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_request_matches_its_origin_whatever_its_path() {
        let uri: http::Uri = "http://MLFLOW.internal/api/2.0/mlflow/runs/create?x=1".parse().unwrap();
        assert_eq!(Origin::of(&uri), Some(origin("http://mlflow.internal:80")));
        let uri: http::Uri = "http://127.0.0.1:5001/".parse().unwrap();
        assert_ne!(Origin::of(&uri), Some(origin("http://127.0.0.1:5000")));
    }
}
