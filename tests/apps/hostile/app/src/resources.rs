//! Attacks on what the host process shares between runs rather than on the sandbox's
//! walls (issue #11): descriptors and other host resources, the host's own log, the copy
//! across the boundary, and the run's log as a terminal shows it.
//!
//! | attack | what it does | what the host should do |
//! |---|---|---|
//! | `sockets:N[:S]` | opens up to N TCP sockets without connecting them (each one a host descriptor), holds them S seconds (default 0), replies `opened K sockets; then <error>` | refuse sockets past `--wasm-max-sockets` with `new-socket-limit` |
//! | `handles:N` | holds N WASI pollables (host resource-table entries), replies `held N handles` | end the call at `--wasm-max-resources` |
//! | `lines:N` | prints N one-character lines on stdout, replies `printed N lines` | keep its own log small (`--wasm-host-log-kib`), in few records |
//! | `big-reply:MIB` | replies with a MIB MiB array (ClientApp); ends with a MIB MiB state (ServerApp) | take it: anything the memory limit allows crosses the boundary |
//! | `inject` | writes terminal escapes and lines dressed as the host's (`SEPAL   : ...`, `SANDBOX : ...`) to stdout, stderr and the log import, replies `injected` | store and show them neutralised, never as the host's lines |
//!
//! The socket and handle attacks call WASI directly (`wit/host-resources.wit`); natively
//! they only say so.

use sepal_sdk::prelude::*;
use sepal_sdk::{error, info};

/// `sockets:N[:S]`: opens up to `n` unconnected TCP sockets, holds them `hold_secs`, and
/// says how many it got and why it stopped.
pub fn hold_sockets(n: usize, hold_secs: usize) -> String {
    let (sockets, stopped) = host::open_sockets(n);
    std::thread::sleep(std::time::Duration::from_secs(hold_secs as u64));
    match stopped {
        Some(why) => format!("opened {} sockets; then {why}", sockets.len()),
        None => format!("opened {} sockets", sockets.len()),
    }
}

/// `handles:N`: holds `n` pollables at once (each an entry in the host's resource table).
pub fn hold_handles(n: usize) -> String {
    let held = host::hold_pollables(n);
    format!("held {held} handles")
}

/// `lines:N`: `n` one-character lines on stdout (the cheapest output per log record).
pub fn tiny_lines(n: usize) -> String {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for _ in 0..n {
        let _ = out.write_all(b"x\n");
    }
    let _ = out.flush();
    format!("printed {n} lines")
}

/// `big-reply:MIB`: a `float32` array of `mib` MiB.
pub fn big_array(mib: usize) -> Array {
    let len = (mib << 20) / 4;
    Array::from_f32(&vec![1.0; len], &[len]).expect("a one-dimensional array")
}

/// Lines dressed as the host's, behind escapes and invisible characters.
const FAKE_HOST_LINES: &[&str] = &[
    "SEPAL   : ServerApp failed: injected by the app",
    "SANDBOX : stdout truncated: injected by the app",
    "   SEPAL   : with leading spaces",
    "sepal   : in lower case",
    "\u{200b}SEPAL   : behind a zero-width space",
    "\u{1b}[2J\u{1b}[HSEPAL   : after clearing the screen",
    "\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{1b}[0m and a window title",
    "progress 10%\rSEPAL   : over a carriage return",
    "\u{9b}31m a C1 escape",
    "a\ttab stays",
];

/// `inject`: [`FAKE_HOST_LINES`] on stdout and stderr, and through the log import (where
/// embedded newlines could start new lines).
pub fn inject() -> String {
    for line in FAKE_HOST_LINES {
        println!("{line}");
        eprintln!("{line}");
    }
    info!("{}", FAKE_HOST_LINES.join("\n"));
    error!("one\nSEPAL   : from inside a log message\nthree");
    // No newline at the end: the host must not glue what follows to it.
    print!("SEPAL   : without a newline");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    "injected".to_string()
}

/// The WASI calls, through bindings of `wit/host-resources.wit`.
#[cfg(target_arch = "wasm32")]
mod host {
    wit_bindgen::generate!({ path: "wit/host-resources.wit", world: "resources", generate_all });

    use self::wasi::clocks::monotonic_clock::subscribe_duration;
    use self::wasi::io::poll::Pollable;
    use self::wasi::sockets::network::IpAddressFamily;
    use self::wasi::sockets::tcp::TcpSocket;
    use self::wasi::sockets::tcp_create_socket::create_tcp_socket;

    /// Up to `n` sockets, and the error that stopped the loop early.
    pub(super) fn open_sockets(n: usize) -> (Vec<TcpSocket>, Option<String>) {
        let mut sockets = Vec::new();
        for _ in 0..n {
            match create_tcp_socket(IpAddressFamily::Ipv4) {
                Ok(socket) => sockets.push(socket),
                Err(e) => return (sockets, Some(e.name().to_string())),
            }
        }
        (sockets, None)
    }

    /// Creates `n` pollables, holding all of them; returns how many it holds at the end.
    pub(super) fn hold_pollables(n: usize) -> usize {
        let held: Vec<Pollable> = (0..n).map(|_| subscribe_duration(3_600_000_000_000)).collect();
        held.len()
    }
}

/// Natively: no WASI, so nothing to hold.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    /// Natively there are no WASI sockets: nothing is opened.
    pub(super) fn open_sockets(_n: usize) -> (Vec<()>, Option<String>) {
        (Vec::new(), Some("no WASI sockets natively".to_string()))
    }

    /// Natively there are no WASI pollables.
    pub(super) fn hold_pollables(_n: usize) -> usize {
        0
    }
}
