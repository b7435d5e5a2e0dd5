//! Test support: the test guests (host/sandbox/tests/guests, built once per test run by
//! the `sepal-guests` crate) and one sandbox per test binary.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use sepal_sandbox::{LogBuffer, Sandbox, SandboxConfig};

pub mod http_server;

const GUESTS: &[&str] = &["echo", "hostile", "server", "http"];

/// The bytes of a test guest component (`echo`, `hostile`, `server` or `http`).
pub fn guest(name: &str) -> Vec<u8> {
    assert!(GUESTS.contains(&name), "unknown test guest {name}");
    sepal_guests::component(&format!("sepal-test-guest-{name}"))
}

/// One sandbox (engine, cache, ticker) shared by all tests of a binary, as in a SuperNode.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).expect("sandbox"))
}

/// A fresh log buffer.
pub fn log() -> Arc<LogBuffer> {
    Arc::new(LogBuffer::new())
}
