//! A hostile ClientApp for the sandbox tests. The message bytes are a command (UTF-8):
//!
//! - `loop`: spins forever;  `sleep`: sleeps for an hour (blocked in the host, not in Wasm)
//! - `bomb`: allocates 16 MiB chunks until something stops it
//! - `recurse:N`: recursion N deep
//! - `read:PATH`, `write:PATH`, `list:PATH`: filesystem access; the reply is what was read
//! - `env`: the environment variables and arguments it sees
//! - `tcp:ADDR`: a TCP connection to ADDR
//! - `hold-tcp:N:ADDR`: up to N TCP connections to ADDR, all held; replies how many it got
//!   and the error that stopped it (`held K; then <error>`)
//! - `hold-files:N:PATH`: opens PATH N times, all held; replies `held N`
//! - `big:MIB`: replies with MIB MiB
//! - `flood:N`: N lines on stdout and N on stderr, then a normal reply
//! - `panic`: panics;  `garbage`: replies with bytes that are no protobuf
//! - `log`: one line through each output (log import, stdout, stderr)
//! - `app-error`: returns an app error
//! - anything else: echoes message and context
//!
//! Failed I/O comes back as an app error (code 2) whose message starts with the
//! `std::io::ErrorKind`, e.g. `NotFound: ...`.

wit_bindgen::generate!({
    path: "../../../../../guest-sdk/wit",
    world: "client",
});

use exports::sepal::app::client_app::{AppError, Guest};
use sepal::app::log::{log, Level};
use std::hint::black_box;
use std::io::Write;

struct Hostile;

type Reply = Result<(Vec<u8>, Vec<u8>), AppError>;

fn io_err(what: &str, e: std::io::Error) -> AppError {
    AppError { code: 2, message: format!("{:?}: {what}: {e}", e.kind()) }
}

fn ok(reply: impl Into<Vec<u8>>) -> Reply {
    Ok((reply.into(), Vec::new()))
}

fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    recurse(n - 1).wrapping_mul(3).wrapping_add(n)
}

impl Guest for Hostile {
    fn handle(message: Vec<u8>, context: Vec<u8>) -> Reply {
        let command = String::from_utf8_lossy(&message).into_owned();
        let (verb, arg) = command.split_once(':').unwrap_or((command.as_str(), ""));
        match verb {
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = x.wrapping_add(black_box(1));
                    black_box(x);
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                ok("woke up")
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 16 << 20];
                    chunk[0] = 1;
                    hoard.push(black_box(chunk));
                }
            }
            "recurse" => {
                let depth: u64 = arg.parse().unwrap_or(100_000_000);
                ok(recurse(black_box(depth)).to_string())
            }
            "read" => match std::fs::read(arg) {
                Ok(bytes) => ok(bytes),
                Err(e) => Err(io_err(arg, e)),
            },
            "write" => match std::fs::write(arg, b"written by a guest") {
                Ok(()) => ok("written"),
                Err(e) => Err(io_err(arg, e)),
            },
            "list" => match std::fs::read_dir(arg) {
                Ok(entries) => {
                    let names: Vec<String> =
                        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                    ok(names.join("\n"))
                }
                Err(e) => Err(io_err(arg, e)),
            },
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                let args: Vec<String> = std::env::args().collect();
                ok(format!("vars={}\nargs={}", vars.join(";"), args.join(";")))
            }
            "tcp" => match std::net::TcpStream::connect(arg) {
                Ok(mut stream) => {
                    let _ = stream.write_all(b"hello from the guest");
                    ok("connected")
                }
                Err(e) => Err(io_err(arg, e)),
            },
            "hold-tcp" => {
                let (n, addr) = arg.split_once(':').unwrap_or((arg, ""));
                let mut held = Vec::new();
                for _ in 0..n.parse().unwrap_or(0u64) {
                    match std::net::TcpStream::connect(addr) {
                        Ok(stream) => held.push(stream),
                        Err(e) => return ok(format!("held {}; then {:?}: {e}", held.len(), e.kind())),
                    }
                }
                ok(format!("held {}", held.len()))
            }
            "hold-files" => {
                let (n, path) = arg.split_once(':').unwrap_or((arg, ""));
                let mut held = Vec::new();
                for _ in 0..n.parse().unwrap_or(0u64) {
                    match std::fs::File::open(path) {
                        Ok(file) => held.push(file),
                        Err(e) => return Err(io_err(path, e)),
                    }
                }
                ok(format!("held {}", held.len()))
            }
            "big" => ok(vec![7u8; arg.parse::<usize>().unwrap_or(0) << 20]),
            "flood" => {
                let lines: u64 = arg.parse().unwrap_or(100_000);
                for i in 0..lines {
                    println!("stdout line {i} .........................................");
                    eprintln!("stderr line {i} .........................................");
                }
                ok("flooded")
            }
            "panic" => panic!("sepal-test-panic: the guest gave up"),
            "garbage" => Ok((vec![0xff; 64], vec![0xff; 64])),
            "log" => {
                log(Level::Info, "hello through the log import");
                log(Level::Warn, "a warning");
                println!("hello on stdout");
                eprintln!("hello on stderr");
                ok("logged")
            }
            "app-error" => Err(AppError { code: 7, message: "the app said no".into() }),
            _ => Ok((message, context)),
        }
    }
}

export!(Hostile);
