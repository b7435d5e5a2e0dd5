//! Every Wasm guest of the repository, built once per test run by this crate's build
//! script (`cargo build --profile guest --target wasm32-wasip2`, one invocation for all),
//! and where the tests find them.
//!
//! - Components by crate: [`component`] (`"sepal-test-guest-echo"`, `"quickstart-client"`,
//!   …) from `host/sandbox/tests/guests`, `tests/apps`, `examples` and `bench/guests`.
//! - Apps ready for `sepal run`: [`app_dir`] (`"quickstart"`, `"clinic"`, `"hostile"`, `"dispatch"`,
//!   `"mlflow"`),
//!   each a directory with `pyproject.toml`, `client.wasm` and `server.wasm`.

use std::path::{Path, PathBuf};

/// Where the built components are.
const GUESTS_DIR: &str = env!("SEPAL_GUESTS_DIR");
/// Where the assembled apps are.
const APPS_DIR: &str = env!("SEPAL_GUEST_APPS_DIR");

/// The path of the component built from crate `package` (e.g. `"quickstart-client"`).
pub fn component_path(package: &str) -> PathBuf {
    Path::new(GUESTS_DIR).join(format!("{}.wasm", package.replace('-', "_")))
}

/// The bytes of the component built from crate `package`. Panics if it was not built
/// (an unknown name).
pub fn component(package: &str) -> Vec<u8> {
    let path = component_path(package);
    std::fs::read(&path).unwrap_or_else(|e| panic!("Wasm guest {package} ({}): {e}", path.display()))
}

/// The app directory `name` (`pyproject.toml`, `client.wasm`, `server.wasm`), as
/// `sepal run` takes it. Panics for an unknown app.
pub fn app_dir(name: &str) -> PathBuf {
    let dir = Path::new(APPS_DIR).join(name);
    assert!(dir.join("pyproject.toml").is_file(), "no Wasm app {name} in {APPS_DIR}");
    dir
}

/// A loopback listener that hostile guests aim their connections at: nothing may ever
/// connect to it.
pub struct Tripwire {
    listener: std::net::TcpListener,
    addr: String,
}

impl Tripwire {
    /// Listens on a free loopback port.
    pub fn new() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let addr = listener.local_addr().expect("a bound listener has an address").to_string();
        Tripwire { listener, addr }
    }

    /// Its `HOST:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Takes the connection a grant let through (the listener is non-blocking: the
    /// connection must already be there).
    pub fn accept(&self) -> std::io::Result<std::net::TcpStream> {
        self.listener.accept().map(|(stream, _)| stream)
    }

    /// Panics if anything connected.
    pub fn assert_untouched(&self) {
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("something connected to the tripwire listener {}: {other:?}", self.addr),
        }
    }
}

impl Default for Tripwire {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_app_is_assembled() {
        for name in ["quickstart", "clinic", "hostile", "dispatch", "mlflow"] {
            let dir = app_dir(name);
            for file in ["client.wasm", "server.wasm"] {
                let bytes = std::fs::read(dir.join(file)).unwrap();
                // A component: `\0asm`, version 0x0d, layer 1.
                assert_eq!(&bytes[..4], b"\0asm", "{name}/{file}");
                assert_eq!(&bytes[6..8], &[1, 0], "{name}/{file} is a component");
            }
        }
    }
}
