//! [`Url`]: the parts of an `http(s)` URL that `wasi:http` takes separately.

use super::HttpError;

/// An `http` or `https` URL split as `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// The path and query, starting with `/` (`/` when the URL has none).
    pub path_with_query: String,
}

impl Url {
    /// Splits `url`; only `http` and `https` are accepted, and no user info (`user@`) or
    /// fragment.
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let invalid = |reason: &str| HttpError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("expected http://host[:port]/path"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(invalid("only http and https are supported"));
        }
        if rest.contains('#') {
            return Err(invalid("a fragment is not sent to a server; remove it"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') || authority.chars().any(char::is_whitespace) {
            return Err(invalid("expected a host[:port] without user info"));
        }
        let path_with_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Url { scheme, authority: authority.to_string(), path_with_query })
    }

    /// `scheme://authority`, as an operator grants it.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// `text` percent-encoded for a query value (RFC 3986 unreserved characters stay).
pub(crate) fn encode_query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let url = Url::parse("HTTP://127.0.0.1:5000/api/2.0/x?name=a").unwrap();
        assert_eq!((url.scheme.as_str(), url.authority.as_str()), ("http", "127.0.0.1:5000"));
        assert_eq!(url.path_with_query, "/api/2.0/x?name=a");
        assert_eq!(url.origin(), "http://127.0.0.1:5000");
        assert_eq!(Url::parse("https://example.org").unwrap().path_with_query, "/");
        assert_eq!(Url::parse("http://h?x=1").unwrap().path_with_query, "/?x=1");
    }

    #[test]
    fn anything_else_is_an_invalid_url() {
        for bad in ["127.0.0.1:5000", "ftp://h/", "http:///x", "http://u@h/", "http://h/#f", "http://a b/"] {
            assert!(matches!(Url::parse(bad), Err(HttpError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("clinic run/1 é"), "clinic%20run%2F1%20%C3%A9");
    }
}
