//! Both ends of the wire: what Sepal's servers (SuperLink, SuperNode) and clients
//! (SuperNode, CLI, app processes) share about talking gRPC, so that neither side imports
//! the other.
//!
//! # Layout
//!
//! - [`codec`]: the gRPC codec of every service and client (prost, with malformed requests
//!   answered INVALID_ARGUMENT); the generated code in `sepal-proto` names it.
//! - [`tls`]: TLS files for servers ([`ServerTls`], Flower's `--ssl-*` flags) and clients
//!   ([`ClientTls`], `--insecure` / `--root-certificates`), with one error type.
//! - [`keys`]: OpenSSH EC key files (`ssh-keygen -t ecdsa`), as SuperNodes and allow-lists
//!   name them.
//! - [`auth`]: Flower's signed Fleet requests: [`auth::Signer`] on the SuperNode,
//!   [`auth::verify`] / [`auth::FleetAuth`] and the node [`auth::Allowlist`] on the SuperLink.
//! - [`net`]: the connections a server accepts ([`net::incoming`]: TCP_NODELAY on each).
//! - [`time`]: Flower's ISO-8601 timestamps.
//! - This page: limits and metadata both ends agree on, and [`dial_address`].

pub mod auth;
pub mod codec;
pub mod keys;
pub mod net;
pub mod time;
pub mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use tls::{ClientTls, ServerTls, TlsFileError};

/// The largest gRPC message Flower accepts in either direction (2 GiB - 1).
pub const MAX_GRPC_MESSAGE: usize = 2_147_483_647;

/// Request metadata by which Sepal's own clients ask a Sepal server to hold an empty poll
/// (Fleet PullMessages, ClientAppIo GetRunIdsWithPendingMessages) until there is work or
/// this many milliseconds pass. Flower's clients never send it; Flower's servers ignore it.
pub const WAIT_HEADER: &str = "sepal-wait-ms";

/// Response metadata by which a Sepal SuperLink says that a held PullMessages (one that
/// asked to wait with [`WAIT_HEADER`]) counted as the node's heartbeat at
/// [`PULL_HEARTBEAT_INTERVAL`], so a Sepal SuperNode that keeps pulling need not also
/// heartbeat. Flower's SuperLinks never send it: SuperNodes connected to one heartbeat as
/// Flower's do.
pub const PULL_IS_HEARTBEAT_HEADER: &str = "sepal-pull-is-heartbeat";

/// The heartbeat interval a held pull stands for, in seconds (Flower's default).
pub const PULL_HEARTBEAT_INTERVAL: f64 = 30.0;

/// Metadata by which a Sepal SuperNode asks a Sepal SuperLink to carry an instruction's
/// objects in the PullMessages response (`sepal_objects`), and by which the SuperLink's
/// response says it takes a reply's objects in PushMessages the same way. Flower's
/// components never send it, so they never see the extension.
pub const INLINE_OBJECTS_HEADER: &str = "sepal-inline-objects";

/// The most object bytes carried inline in one PullMessages or PushMessages; the rest go
/// by PullObject / PushObject as in Flower.
pub const INLINE_OBJECTS_MAX_BYTES: usize = 8 << 20;

/// Metadata by which a Sepal SuperNode that runs several messages at once, one per run,
/// says so in a PullMessages, naming the runs it has a message of in hand now
/// (comma-separated run ids, possibly none). A Sepal SuperLink then offers it no second
/// message of those runs until it replies, and the pull can wait for another run's work.
/// Flower's components never send it.
pub const BUSY_RUNS_HEADER: &str = "sepal-busy-runs";

/// The most run ids [`BUSY_RUNS_HEADER`] may carry.
pub const MAX_BUSY_RUNS: usize = 256;

/// The runs a request names with [`BUSY_RUNS_HEADER`]; `None` without the header. A
/// malformed or too long list is an error that says what was wrong.
pub fn busy_runs(metadata: &tonic::metadata::MetadataMap) -> Result<Option<Vec<u64>>, String> {
    let Some(value) = metadata.get(BUSY_RUNS_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| format!("{BUSY_RUNS_HEADER} is not ASCII"))?;
    let ids = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim().parse::<u64>().map_err(|_| {
                format!("{BUSY_RUNS_HEADER}: {:?} is not a run id", s.chars().take(24).collect::<String>())
            })
        })
        .collect::<Result<Vec<u64>, String>>()?;
    if ids.len() > MAX_BUSY_RUNS {
        return Err(format!("{BUSY_RUNS_HEADER} names {} runs; at most {MAX_BUSY_RUNS} are accepted", ids.len()));
    }
    Ok(Some(ids))
}

/// Says that the caller runs one message per run at once and names the runs it has a
/// message of in hand (see [`BUSY_RUNS_HEADER`]).
pub fn name_busy_runs<T>(req: &mut tonic::Request<T>, runs: &[u64]) {
    let text = runs.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    if let Ok(value) = text.parse() {
        req.metadata_mut().insert(BUSY_RUNS_HEADER, value);
    }
}

/// The wait a request asks for with [`WAIT_HEADER`], at most `max`; zero without one.
pub fn requested_wait(metadata: &tonic::metadata::MetadataMap, max: Duration) -> Duration {
    let ms = metadata.get(WAIT_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    ms.map_or(Duration::ZERO, Duration::from_millis).min(max)
}

/// Asks a Sepal server to hold this request for up to `wait` (see [`WAIT_HEADER`]).
pub fn ask_to_wait<T>(req: &mut tonic::Request<T>, wait: Duration) {
    req.metadata_mut().insert(WAIT_HEADER, tonic::metadata::MetadataValue::from(wait.as_millis() as u64));
}

/// The address a local process should dial for a listener bound to `addr`: a wildcard
/// bind (`0.0.0.0`, `[::]`) is reached over loopback.
pub fn dial_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_what_was_asked_capped() {
        let mut req = tonic::Request::new(());
        assert_eq!(requested_wait(req.metadata(), Duration::from_secs(5)), Duration::ZERO);
        ask_to_wait(&mut req, Duration::from_millis(1500));
        assert_eq!(requested_wait(req.metadata(), Duration::from_secs(5)), Duration::from_millis(1500));
        assert_eq!(requested_wait(req.metadata(), Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn busy_runs_round_trip_and_bad_lists_are_refused() {
        let mut req = tonic::Request::new(());
        assert_eq!(busy_runs(req.metadata()), Ok(None));
        name_busy_runs(&mut req, &[]);
        assert_eq!(busy_runs(req.metadata()), Ok(Some(vec![])));
        name_busy_runs(&mut req, &[7, u64::MAX]);
        assert_eq!(busy_runs(req.metadata()), Ok(Some(vec![7, u64::MAX])));
        req.metadata_mut().insert(BUSY_RUNS_HEADER, "7,seven".parse().unwrap());
        assert!(busy_runs(req.metadata()).unwrap_err().contains("\"seven\" is not a run id"));
        let many = (0..=MAX_BUSY_RUNS).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        req.metadata_mut().insert(BUSY_RUNS_HEADER, many.parse().unwrap());
        assert!(busy_runs(req.metadata()).unwrap_err().contains("at most 256"));
    }

    #[test]
    fn wildcard_binds_are_dialled_on_loopback() {
        assert_eq!(dial_address("0.0.0.0:9091".parse().unwrap()), "127.0.0.1:9091".parse().unwrap());
        assert_eq!(dial_address("[::]:9094".parse().unwrap()), "127.0.0.1:9094".parse().unwrap());
        assert_eq!(dial_address("10.0.0.2:9092".parse().unwrap()), "10.0.0.2:9092".parse().unwrap());
    }
}
