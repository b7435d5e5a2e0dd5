//! A tiny HTTP/1.1 server on a free loopback port, for the `wasi:http` tests: one thread
//! per connection, `Connection: close`, and a record of every connection and request.
//!
//! Paths: `/hello` answers `hello from the server`; `/echo` answers the request body;
//! `/big` answers 64 KiB; `/stream` the same without a `content-length` (the body ends
//! when the connection closes); `/stall` answers nothing for a minute.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server; it stops accepting when the test process ends.
pub struct HttpServer {
    origin: String,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<String>,
}

impl HttpServer {
    /// Starts listening on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let origin = format!("http://{}", listener.local_addr().expect("an address"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                shared.lock().unwrap().connections += 1;
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        HttpServer { origin, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    /// The requests received, each as `METHOD PATH` plus ` content-type` if it had one.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().requests.clone()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Seen>) {
    let mut reader = BufReader::new(stream.try_clone().expect("a clone of the stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let (mut length, mut content_type) = (0usize, String::new());
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header.as_str(), ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "content-type" => content_type = format!(" {}", value.trim()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    seen.lock().unwrap().requests.push(format!("{method} {path}{content_type}"));
    let reply = match path.as_str() {
        "/hello" => b"hello from the server".to_vec(),
        "/echo" => body,
        "/big" => vec![b'x'; 64 * 1024],
        "/stream" => {
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(&vec![b'x'; 64 * 1024]);
            return;
        }
        "/stall" => {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        _ => b"not found".to_vec(),
    };
    let mut stream = stream;
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", reply.len());
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&reply));
}
