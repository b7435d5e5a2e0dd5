//! A blocking PostgreSQL connection: start-up, authentication, simple queries.
//!
//! The wire codec and the password hashing are `postgres-protocol`'s (sans-IO); this
//! module only moves its messages over a `std::net::TcpStream`, which on `wasm32-wasip2`
//! is a `wasi:sockets` socket that the sandbox lets through only to granted addresses.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::{AuthenticationSaslBody, ErrorResponseBody, Message};
use postgres_protocol::message::frontend;

use super::{ConnectParams, PgError, Row};

const SCRAM: &str = "SCRAM-SHA-256";

/// One connection to a PostgreSQL server.
///
/// ```no_run
/// # #[cfg(feature = "postgres")] {
/// use sepal_sdk::postgres::{parse_f32_array, Client};
///
/// let mut db = Client::connect("postgres://fl@127.0.0.1:5432/site_a")?;
/// for row in db.simple_query("SELECT x, y FROM train")? {
///     let x = parse_f32_array(row.text("x")?)?;
///     let y: i16 = row.parse("y")?;
/// }
/// # }
/// # Ok::<(), sepal_sdk::postgres::PgError>(())
/// ```
pub struct Client {
    stream: TcpStream,
    /// Bytes read but not parsed yet.
    inbox: BytesMut,
    /// `host:port`, for error messages.
    addr: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server a `postgres://` URL names, logs in (trust, password, MD5 or
    /// SCRAM-SHA-256, as the server asks) and waits until it is ready for queries.
    pub fn connect(url: &str) -> Result<Client, PgError> {
        Client::connect_with(&ConnectParams::parse(url)?)
    }

    /// [`Client::connect`] with parsed parameters.
    pub fn connect_with(params: &ConnectParams) -> Result<Client, PgError> {
        let stream = open(params)?;
        let mut client = Client { stream, inbox: BytesMut::new(), addr: params.addr() };
        client.start(params)?;
        Ok(client)
    }

    /// Runs `sql` (one or more statements) with PostgreSQL's simple query protocol and
    /// returns every row, values in text form. A failing statement is a
    /// [`PgError::Server`]; the connection stays usable.
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, PgError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.send(&out)?;
        let mut columns: Arc<[String]> = Arc::from(Vec::new());
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.receive()? {
                Message::RowDescription(body) => {
                    let names: Vec<String> = body
                        .fields()
                        .map(|f| Ok(f.name().to_string()))
                        .collect()
                        .map_err(|e| self.protocol(e.to_string()))?;
                    columns = names.into();
                }
                Message::DataRow(body) => {
                    let buffer = body.buffer();
                    let values: Vec<Option<String>> = body
                        .ranges()
                        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned())))
                        .collect()
                        .map_err(|e| self.protocol(e.to_string()))?;
                    rows.push(Row::new(columns.clone(), values));
                }
                // Read on to ReadyForQuery after an error, so the connection stays in step.
                Message::ErrorResponse(body) => failed = Some(self.server_error(&body)),
                Message::ReadyForQuery(_) => break,
                Message::CommandComplete(_)
                | Message::EmptyQueryResponse
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_) => {}
                _ => return Err(self.protocol("an unexpected message in a query's reply".into())),
            }
        }
        failed.map_or(Ok(rows), Err)
    }

    fn start(&mut self, params: &ConnectParams) -> Result<(), PgError> {
        let mut out = BytesMut::new();
        let startup = [
            ("user", params.user.as_str()),
            ("database", params.dbname.as_str()),
            ("client_encoding", "UTF8"),
            ("application_name", "sepal-app"),
        ];
        frontend::startup_message(startup, &mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.send(&out)?;
        self.authenticate(params)?;
        loop {
            match self.receive()? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => return Err(self.server_error(&body)),
                Message::ParameterStatus(_) | Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                _ => return Err(self.protocol("an unexpected message during start-up".into())),
            }
        }
    }

    fn authenticate(&mut self, params: &ConnectParams) -> Result<(), PgError> {
        loop {
            let mut out = BytesMut::new();
            match self.receive()? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    let password = self.password(params)?;
                    frontend::password_message(password.as_bytes(), &mut out)
                        .map_err(|e| self.protocol(e.to_string()))?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let password = self.password(params)?;
                    let hash = md5_hash(params.user.as_bytes(), password.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut out).map_err(|e| self.protocol(e.to_string()))?;
                }
                Message::AuthenticationSasl(body) => {
                    self.scram(params, &body)?;
                    continue;
                }
                Message::ErrorResponse(body) => return Err(self.server_error(&body)),
                _ => return Err(self.unsupported_auth("a method other than password, md5 or SASL".into())),
            }
            self.send(&out)?;
        }
    }

    /// SCRAM-SHA-256 (PostgreSQL's default since version 14), without channel binding
    /// (there is no TLS to bind to).
    fn scram(&mut self, params: &ConnectParams, offer: &AuthenticationSaslBody) -> Result<(), PgError> {
        let mechanisms: Vec<String> =
            offer.mechanisms().map(|m| Ok(m.to_string())).collect().map_err(|e| self.protocol(e.to_string()))?;
        if !mechanisms.iter().any(|m| m == SCRAM) {
            return Err(self.unsupported_auth(format!("SASL ({})", mechanisms.join(", "))));
        }
        let password = self.password(params)?;
        let mut scram = sasl::ScramSha256::new(password.as_bytes(), sasl::ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(SCRAM, scram.message(), &mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.send(&out)?;
        let scram_failed = |addr: &str, source| PgError::Scram { addr: addr.to_string(), source };
        match self.receive()? {
            Message::AuthenticationSaslContinue(body) => {
                scram.update(body.data()).map_err(|e| scram_failed(&self.addr, e))?;
            }
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            _ => return Err(self.protocol("an unexpected message in SCRAM authentication".into())),
        }
        let mut out = BytesMut::new();
        frontend::sasl_response(scram.message(), &mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.send(&out)?;
        match self.receive()? {
            Message::AuthenticationSaslFinal(body) => {
                scram.finish(body.data()).map_err(|e| scram_failed(&self.addr, e))
            }
            Message::ErrorResponse(body) => Err(self.server_error(&body)),
            _ => Err(self.protocol("an unexpected message in SCRAM authentication".into())),
        }
    }

    fn password<'p>(&self, params: &'p ConnectParams) -> Result<&'p str, PgError> {
        params.password.as_deref().ok_or_else(|| PgError::PasswordRequired { addr: self.addr.clone() })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), PgError> {
        self.stream.write_all(bytes).map_err(|source| PgError::Io { addr: self.addr.clone(), source })
    }

    /// The next whole message from the server.
    fn receive(&mut self) -> Result<Message, PgError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(message) = Message::parse(&mut self.inbox).map_err(|e| self.protocol(e.to_string()))? {
                return Ok(message);
            }
            let n = self.stream.read(&mut chunk).map_err(|source| PgError::Io { addr: self.addr.clone(), source })?;
            if n == 0 {
                return Err(PgError::Closed { addr: self.addr.clone() });
            }
            self.inbox.extend_from_slice(&chunk[..n]);
        }
    }

    fn server_error(&self, body: &ErrorResponseBody) -> PgError {
        let (mut severity, mut code, mut message, mut detail) = (String::new(), String::new(), String::new(), None);
        let mut fields = body.fields();
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'S' => severity = value,
                b'C' => code = value,
                b'M' => message = value,
                b'D' => detail = Some(value),
                _ => {}
            }
        }
        if let Some(detail) = detail {
            message = format!("{message} ({detail})");
        }
        PgError::Server { addr: self.addr.clone(), severity, code, message }
    }

    fn protocol(&self, what: String) -> PgError {
        PgError::Protocol { addr: self.addr.clone(), what }
    }

    fn unsupported_auth(&self, method: String) -> PgError {
        PgError::UnsupportedAuth { addr: self.addr.clone(), method }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Say goodbye so the server logs a clean disconnect; a failure changes nothing.
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out);
    }
}

/// The TCP connection, tried address by address. In the sandbox a connection to an
/// address the operator did not grant fails with `PermissionDenied` before anything is
/// sent; that becomes [`PgError::NotGranted`].
fn open(params: &ConnectParams) -> Result<TcpStream, PgError> {
    let targets: Vec<SocketAddr> = match params.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, params.port)],
        Err(_) => (params.host.as_str(), params.port)
            .to_socket_addrs()
            .map_err(|source| PgError::Resolve { host: params.host.clone(), source })?
            .collect(),
    };
    let mut last = PgError::Resolve {
        host: params.host.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
    };
    for target in targets {
        match TcpStream::connect(target) {
            Ok(stream) => return Ok(stream),
            Err(e) if cfg!(target_os = "wasi") && e.kind() == std::io::ErrorKind::PermissionDenied => {
                last = PgError::NotGranted { addr: target.to_string() };
            }
            Err(source) => last = PgError::Connect { addr: target.to_string(), source },
        }
    }
    Err(last)
}
