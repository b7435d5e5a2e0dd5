//! [`SandboxError`]: why an invocation failed, named by cause, and how wasmtime's errors
//! map onto it.

use std::fmt;
use std::time::Duration;

use wasmtime::component::ResourceTableError;

/// Why an app invocation failed. Every variant names the cause; none of them means the
/// host is in trouble (the store that ran the app is dropped, the engine keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The invocation ran past its deadline ([`Limits::deadline`](crate::Limits::deadline)),
    /// in guest code (epoch interruption) or while waiting in the host.
    #[error("the app did not finish within its deadline of {deadline:?}")]
    DeadlineExceeded {
        /// The deadline that was exceeded.
        deadline: Duration,
    },
    /// The app tried to grow a linear memory (or a table) past its limit.
    #[error("the app exceeded its memory limit of {limit} bytes{}", requested_suffix(*.requested))]
    MemoryLimit {
        /// The limit in force ([`Limits::memory_bytes`](crate::Limits::memory_bytes), or
        /// the table element limit for a table).
        limit: u64,
        /// What the app asked to grow to, when known.
        requested: Option<u64>,
    },
    /// The app held more host resources at once, or copied more data to the host in one
    /// call, than its limit allows (see [`Limits::resources`](crate::Limits::resources)
    /// and [`Limits::memory_bytes`](crate::Limits::memory_bytes)). `flag` names the
    /// `sepal` flag an operator raises it with.
    #[error("the app exceeded its limit of {limit} {what} (set with {flag})")]
    ResourceLimit {
        /// What was limited, e.g. "host resources held at once (sockets, files, streams,
        /// pollables)".
        what: &'static str,
        /// The limit in force.
        limit: u64,
        /// The operator's flag for it, e.g. `--wasm-max-resources`.
        flag: &'static str,
    },
    /// The app exhausted its stack (usually unbounded recursion).
    #[error("the app overflowed its stack (unbounded recursion?)")]
    StackOverflow,
    /// The app trapped. `Unreachable` is what a Rust guest's panic or abort becomes; then
    /// `message` ends with the tail of the captured stderr, which holds the panic message.
    #[error("the app trapped ({kind}): {message}")]
    Trap {
        /// What kind of trap.
        kind: TrapKind,
        /// The trap's description, plus the tail of stderr when there was any.
        message: String,
    },
    /// The app returned an error (its `app-error`).
    #[error("the app returned an error (code {code}): {message}")]
    AppError {
        /// Flower's error code (2: the app raised).
        code: u32,
        /// The app's reason.
        message: String,
    },
    /// The component cannot be used: not a component, does not compile, targets another
    /// world, or imports something the sandbox does not provide.
    #[error("bad component: {0}")]
    BadComponent(String),
    /// What the app returned cannot be used (see [`decode_reply`](crate::decode_reply)).
    #[error("the app returned invalid output: {0}")]
    InvalidOutput(String),
    /// The host ended the run (a [`GridHost`](crate::GridHost) returned
    /// [`GridError::Abort`](crate::GridError::Abort), for example because the run was
    /// stopped).
    #[error("the run was ended by the host: {0}")]
    Aborted(String),
    /// A setting or grant is unusable (a granted directory that does not exist, a TCP
    /// grant that does not resolve, an artifact directory with unsafe permissions).
    #[error("sandbox configuration: {0}")]
    Config(String),
    /// Something failed in the sandbox itself (engine setup, the artifact cache's I/O).
    #[error("internal sandbox error: {0}")]
    Internal(String),
}

impl SandboxError {
    /// A short, stable name of the cause (a metric label): `deadline`, `memory`,
    /// `resources`, `stack`, `trap`, `app_error`, `bad_component`, `invalid_output`,
    /// `aborted`, `config` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            SandboxError::DeadlineExceeded { .. } => "deadline",
            SandboxError::MemoryLimit { .. } => "memory",
            SandboxError::ResourceLimit { .. } => "resources",
            SandboxError::StackOverflow => "stack",
            SandboxError::Trap { .. } => "trap",
            SandboxError::AppError { .. } => "app_error",
            SandboxError::BadComponent(_) => "bad_component",
            SandboxError::InvalidOutput(_) => "invalid_output",
            SandboxError::Aborted(_) => "aborted",
            SandboxError::Config(_) => "config",
            SandboxError::Internal(_) => "internal",
        }
    }
}

fn requested_suffix(requested: Option<u64>) -> String {
    match requested {
        Some(r) => format!(" (asked for {r})"),
        None => String::new(),
    }
}

/// The kind of a [`SandboxError::Trap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapKind {
    /// `unreachable` executed: a Rust guest panicked or aborted.
    Unreachable,
    /// An out-of-bounds memory access.
    MemoryOutOfBounds,
    /// Integer division by zero or overflow, or a bad float-to-int conversion.
    Arithmetic,
    /// A bad indirect call (null, out of bounds, wrong signature).
    IndirectCall,
    /// Another wasmtime trap, by its description.
    Other(String),
    /// A host function or the canonical ABI failed (for example the guest handed back an
    /// out-of-bounds list or invalid UTF-8).
    Host,
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::Unreachable => f.write_str("unreachable: the app panicked or aborted"),
            TrapKind::MemoryOutOfBounds => f.write_str("memory out of bounds"),
            TrapKind::Arithmetic => f.write_str("arithmetic"),
            TrapKind::IndirectCall => f.write_str("bad indirect call"),
            TrapKind::Other(s) => write!(f, "{s}"),
            TrapKind::Host => f.write_str("host"),
        }
    }
}

/// Raised by the store's resource limiter when a memory or table grows past its limit;
/// found again in the error chain to produce [`SandboxError::MemoryLimit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitHit {
    pub(crate) limit: u64,
    pub(crate) requested: u64,
    pub(crate) what: &'static str,
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} limit of {} reached (asked for {})", self.what, self.limit, self.requested)
    }
}

impl std::error::Error for LimitHit {}

/// Raised by a grid host function that wants the run to end
/// ([`GridError::Abort`](crate::GridError::Abort)).
#[derive(Debug, Clone)]
pub(crate) struct HostAbort(pub(crate) String);

impl fmt::Display for HostAbort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aborted by the host: {}", self.0)
    }
}

impl std::error::Error for HostAbort {}

/// What the runner knows besides the error itself when it classifies a failed call.
pub(crate) struct FailureContext<'a> {
    pub(crate) deadline: Duration,
    pub(crate) limit_hit: Option<LimitHit>,
    pub(crate) stderr_tail: &'a str,
    /// The store's resource table capacity ([`Limits::resources`](crate::Limits::resources)).
    pub(crate) resources: usize,
    /// The bytes one copy to the host may take (the hostcall fuel: the memory limit).
    pub(crate) hostcall_fuel: usize,
}

/// What a full resource table is called in errors.
pub(crate) const RESOURCES: &str = "host resources held at once (sockets, files, streams, pollables)";
/// The flag that sets [`Limits::resources`](crate::Limits::resources).
pub(crate) const RESOURCES_FLAG: &str = "--wasm-max-resources";
/// What exhausted hostcall fuel is called in errors.
const COPY: &str = "bytes copied to the host in one call (the app's memory limit)";
/// The flag that sets [`Limits::memory_bytes`](crate::Limits::memory_bytes).
const MEMORY_FLAG: &str = "--wasm-memory-mb";

/// Whether a cause in an error chain is the store's resource table being full (a WASI call
/// that could not store one more handle). wasmtime-wasi turns that into a trap carrying
/// the table's own error.
fn table_full(cause: &(dyn std::error::Error + 'static)) -> bool {
    matches!(cause.downcast_ref::<wasmtime::component::ResourceTableError>(), Some(ResourceTableError::Full))
        || cause.to_string().contains("resource table has no free keys")
}

/// Whether a cause is wasmtime's hostcall fuel running out: the app handed the host more
/// bytes in one call (a list, a string, a result) than the store allows. Its error type is
/// private to wasmtime, so this matches its text.
fn hostcall_fuel_exhausted(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.to_string().contains("fuel allocated for hostcalls has been exhausted")
}

/// Maps a wasmtime error from instantiating or calling a guest to a [`SandboxError`],
/// walking the error chain for a [`wasmtime::Trap`] or one of our own markers.
pub(crate) fn classify(err: &wasmtime::Error, cx: &FailureContext<'_>) -> SandboxError {
    let mut trap = err.downcast_ref::<wasmtime::Trap>().copied();
    let mut limit = err.downcast_ref::<LimitHit>().copied();
    let mut abort = err.downcast_ref::<HostAbort>().cloned();
    for cause in err.chain() {
        if trap.is_none() {
            trap = cause.downcast_ref::<wasmtime::Trap>().copied();
        }
        if limit.is_none() {
            limit = cause.downcast_ref::<LimitHit>().copied();
        }
        if abort.is_none() {
            abort = cause.downcast_ref::<HostAbort>().cloned();
        }
    }
    if let Some(HostAbort(reason)) = abort {
        return SandboxError::Aborted(reason);
    }
    if let Some(hit) = limit.or(cx.limit_hit) {
        return SandboxError::MemoryLimit { limit: hit.limit, requested: Some(hit.requested) };
    }
    if err.chain().any(table_full) {
        return SandboxError::ResourceLimit { what: RESOURCES, limit: cx.resources as u64, flag: RESOURCES_FLAG };
    }
    if err.chain().any(hostcall_fuel_exhausted) {
        return SandboxError::ResourceLimit { what: COPY, limit: cx.hostcall_fuel as u64, flag: MEMORY_FLAG };
    }
    let message = with_stderr_tail(&error_text(err), cx.stderr_tail);
    match trap {
        Some(wasmtime::Trap::Interrupt) => SandboxError::DeadlineExceeded { deadline: cx.deadline },
        Some(wasmtime::Trap::StackOverflow) => SandboxError::StackOverflow,
        Some(wasmtime::Trap::UnreachableCodeReached) => SandboxError::Trap { kind: TrapKind::Unreachable, message },
        Some(wasmtime::Trap::MemoryOutOfBounds) if fault_below_zero(&message) => SandboxError::StackOverflow,
        Some(wasmtime::Trap::MemoryOutOfBounds) | Some(wasmtime::Trap::HeapMisaligned) => {
            SandboxError::Trap { kind: TrapKind::MemoryOutOfBounds, message }
        }
        Some(
            wasmtime::Trap::IntegerDivisionByZero
            | wasmtime::Trap::IntegerOverflow
            | wasmtime::Trap::BadConversionToInteger,
        ) => SandboxError::Trap { kind: TrapKind::Arithmetic, message },
        Some(wasmtime::Trap::IndirectCallToNull | wasmtime::Trap::BadSignature | wasmtime::Trap::TableOutOfBounds) => {
            SandboxError::Trap { kind: TrapKind::IndirectCall, message }
        }
        Some(other) => SandboxError::Trap { kind: TrapKind::Other(other.to_string()), message },
        None => SandboxError::Trap { kind: TrapKind::Host, message },
    }
}

/// Whether a memory fault hit an address a pointer can only reach by going below zero.
///
/// Rust (and C) on wasm32 keep stack frames' buffers on a "shadow stack" at the bottom of
/// linear memory, growing down. Deep recursion runs it past address 0; the pointer wraps
/// and the next store faults just below 4 GiB + offset. With memory64 off and memories
/// capped well below 4 GiB, no ordinary bug faults up there, so this is a stack overflow.
/// wasmtime only says where it faulted in the error text ("memory fault at wasm address
/// 0x…"), so the address is read from there.
fn fault_below_zero(message: &str) -> bool {
    const MARK: &str = "memory fault at wasm address 0x";
    let Some(start) = message.find(MARK).map(|i| i + MARK.len()) else { return false };
    let hex: String = message[start..].chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).is_ok_and(|addr| addr >= 0xFFFF_0000)
}

/// The error and its causes on one line, without wasm backtraces (those go to the debug
/// log only).
pub(crate) fn error_text(err: &wasmtime::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // A `WasmBacktrace` context (it is no `std::error::Error`, so match its text).
        if text.starts_with("error while executing at wasm backtrace") {
            continue;
        }
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn with_stderr_tail(message: &str, tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        message.to_string()
    } else {
        format!("{message}; stderr ends with: {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::fault_below_zero;

    #[test]
    fn a_fault_past_the_bottom_of_memory_is_a_stack_overflow() {
        let wrapped = "the app trapped: memory fault at wasm address 0x100000034 in linear memory of size 0x110000";
        assert!(fault_below_zero(wrapped));
        assert!(fault_below_zero("memory fault at wasm address 0xfffffff0 in linear memory"));
        assert!(!fault_below_zero("memory fault at wasm address 0x20000 in linear memory of size 0x10000"));
        assert!(!fault_below_zero("out of bounds memory access"));
    }
}
