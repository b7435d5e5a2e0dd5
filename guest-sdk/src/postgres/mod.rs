//! A small PostgreSQL client for apps (cargo feature `postgres`).
//!
//! Enough for an app to read its data from a database at its site: [`Client::connect`]
//! with a `postgres://user[:password]@host[:port]/dbname` URL (trust, password, MD5 and
//! SCRAM-SHA-256 logins), [`Client::simple_query`] returning [`Row`]s of text values,
//! and [`parse_f32_array`] for `real[]` columns. No TLS, no prepared statements, rows are
//! collected in memory: select what fits in the app's memory limit.
//!
//! It is blocking and runs over `std::net::TcpStream`, so it works natively (for an app's
//! own tests) and in a `wasm32-wasip2` component, where the sandbox lets a connection
//! through only to an address the operator granted (`--wasm-allow-connect HOST:PORT`).
//! Wasm apps cannot look names up: the URL names the granted IP address. A connection
//! the sandbox refuses is [`PgError::NotGranted`], which says so.

mod array;
mod client;
mod url;

use std::str::FromStr;
use std::sync::Arc;

pub use array::parse_f32_array;
pub use client::Client;
pub use url::{ConnectParams, DEFAULT_PORT};

use crate::AppError;

/// Said after a name-lookup failure inside the sandbox, where there is no resolver.
const LOOKUP_HINT: &str = if cfg!(target_os = "wasi") {
    " (Wasm apps cannot look up host names: use the IP address the operator granted with --wasm-allow-connect)"
} else {
    ""
};

/// Why a PostgreSQL call failed; each message names the server or input concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The connection URL is malformed (the password, if any, is hidden).
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    Url {
        /// The URL, password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The sandbox refused the connection: the operator has not granted this address.
    #[error(
        "connection to {addr} refused by the sandbox: not granted with --wasm-allow-connect \
         (the operator grants it with --wasm-allow-connect {addr})"
    )]
    NotGranted {
        /// The address the app tried.
        addr: String,
    },
    /// The host name did not resolve.
    #[error("cannot resolve the PostgreSQL host {host:?}: {source}{hint}", hint = LOOKUP_HINT)]
    Resolve {
        /// The host from the URL.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The TCP connection failed (refused by the server's machine, unreachable, ...).
    #[error("connecting to PostgreSQL at {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("talking to PostgreSQL at {addr}: {source}")]
    Io {
        /// The server.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The server closed the connection.
    #[error("PostgreSQL at {addr} closed the connection")]
    Closed {
        /// The server.
        addr: String,
    },
    /// The server wants a password and the URL has none.
    #[error("PostgreSQL at {addr} asks for a password and the URL has none (postgres://user:password@...)")]
    PasswordRequired {
        /// The server.
        addr: String,
    },
    /// The server asks for a login method this client does not speak.
    #[error(
        "PostgreSQL at {addr} asks for authentication by {method}, which this client does not support \
         (it supports trust, password, md5 and SCRAM-SHA-256)"
    )]
    UnsupportedAuth {
        /// The server.
        addr: String,
        /// The method the server asked for.
        method: String,
    },
    /// SCRAM-SHA-256 failed on the client's side (for example, the server's proof is wrong).
    #[error("SCRAM-SHA-256 authentication with PostgreSQL at {addr} failed: {source}")]
    Scram {
        /// The server.
        addr: String,
        /// What `postgres-protocol` found.
        source: std::io::Error,
    },
    /// The server answered with an error (wrong password, no such database or table, ...).
    #[error("PostgreSQL at {addr}: {severity} {code}: {message}")]
    Server {
        /// The server.
        addr: String,
        /// `ERROR`, `FATAL`, ...
        severity: String,
        /// The SQLSTATE code (`3D000`: no such database, `42P01`: no such table, ...).
        code: String,
        /// The server's message (with its detail, if any).
        message: String,
    },
    /// The server sent something this client did not expect.
    #[error("unexpected reply from PostgreSQL at {addr}: {what}")]
    Protocol {
        /// The server.
        addr: String,
        /// What was wrong.
        what: String,
    },
    /// A row has no such column, or its value is NULL or does not parse.
    #[error("column {column:?}: {reason}")]
    Column {
        /// The column asked for.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is not a one-dimensional array of numbers.
    #[error("array {text}: {reason}")]
    Array {
        /// The text (shortened).
        text: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<PgError> for AppError {
    fn from(e: PgError) -> Self {
        AppError::new(e.to_string())
    }
}

/// One row of a query's result, every value in PostgreSQL's text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Option<String>>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Option<String>>) -> Row {
        Row { columns, values }
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The value of column `index` (`None` for NULL or no such column).
    pub fn get(&self, index: usize) -> Option<&str> {
        self.values.get(index).and_then(Option::as_deref)
    }

    /// The value of the column named `column`; an error if there is no such column or
    /// the value is NULL.
    pub fn text(&self, column: &str) -> Result<&str, PgError> {
        let bad = |reason: &str| PgError::Column { column: column.to_string(), reason: reason.to_string() };
        let index = self.columns.iter().position(|c| c == column).ok_or_else(|| bad("no such column in the result"))?;
        self.values.get(index).and_then(Option::as_deref).ok_or_else(|| bad("the value is NULL"))
    }

    /// The value of the column named `column`, parsed (`row.parse::<i16>("y")`).
    pub fn parse<T: FromStr>(&self, column: &str) -> Result<T, PgError>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.text(column)?;
        text.parse().map_err(|e| PgError::Column { column: column.to_string(), reason: format!("{text:?}: {e}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let columns: Arc<[String]> = vec!["x".to_string(), "y".to_string(), "z".to_string()].into();
        Row::new(columns, vec![Some("{1,2}".into()), Some("1".into()), None])
    }

    #[test]
    fn row_values_by_index_and_name() {
        let row = row();
        assert_eq!(row.columns(), ["x", "y", "z"]);
        assert_eq!((row.get(0), row.get(2), row.get(9)), (Some("{1,2}"), None, None));
        assert_eq!(row.text("x").unwrap(), "{1,2}");
        assert_eq!(row.parse::<i16>("y").unwrap(), 1);
    }

    #[test]
    fn row_errors_name_the_column() {
        let row = row();
        assert!(row.text("w").unwrap_err().to_string().contains("\"w\": no such column"));
        assert!(row.text("z").unwrap_err().to_string().contains("\"z\": the value is NULL"));
        assert!(row.parse::<i16>("x").unwrap_err().to_string().contains("\"x\": \"{1,2}\""));
    }

    #[test]
    fn a_refused_grant_says_which_address_and_which_flag() {
        let e = PgError::NotGranted { addr: "127.0.0.1:5432".into() };
        assert!(e.to_string().starts_with("connection to 127.0.0.1:5432 refused by the sandbox"), "{e}");
        assert!(AppError::from(e).message.contains("--wasm-allow-connect 127.0.0.1:5432"));
    }

    #[test]
    fn nothing_listening_is_a_connect_error_naming_the_address() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = Client::connect(&format!("postgres://fl@127.0.0.1:{port}/db")).unwrap_err();
        assert!(matches!(err, PgError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }
}
